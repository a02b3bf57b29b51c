"""core/cpu_attention.py: CPU attention with dropout through one compiled softmax-dropout kernel.

What must hold: the output and the gradients equal the attention formula with the kernel's own
keep mask; that mask is the documented hash (checked against plain Python integers, so a
miscompiled or overflowing kernel shows); each element is dropped with probability p; the run's
seed reproduces the masks and every call draws new ones; without dropout, and for
`--attn_implementation torch_sdpa`, attention is torch's SDPA exactly; a machine where the kernel
cannot be built falls back to SDPA with one warning.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch

from linkbert.core import cpu_attention


def _qkv(shape=(2, 3, 17, 8), dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator).to(dtype).requires_grad_() for _ in range(3)]


def _keys_after_seed(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randint(-2 ** 31, 2 ** 31 - 1, (2,), dtype=torch.int32)  # as _DropoutAttention draws them


def _reference(q, k, v, mask, keep, p):
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, -1) * keep / (1 - p)) @ v


@pytest.mark.parametrize("with_mask", [True, False])
def test_output_and_gradients_equal_the_formula_with_the_kernels_mask(with_mask):
    q, k, v = _qkv()
    mask = None
    if with_mask:  # the second sequence's keys stop at 12, as a padded batch's or a length bucket's
        mask = torch.ones(2, 1, 1, 17, dtype=torch.bool)
        mask[1, ..., 12:] = False
    p = 0.2
    torch.manual_seed(7)
    out = cpu_attention.dropout_attention(q, k, v, mask, p, None)
    grad = torch.randn_like(out)
    out.backward(grad)
    keep = cpu_attention.keep_mask((2, 3, 17, 17), _keys_after_seed(7), cpu_attention.drop_threshold(p))
    assert 0 < keep.sum() < keep.numel()  # the mask drops some, not all
    q2, k2, v2 = (x.detach().clone().requires_grad_() for x in (q, k, v))
    want = _reference(q2, k2, v2, mask, keep, p)
    want.backward(grad)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-5)
    for got, ref in ((q, q2), (k, k2), (v, v2)):
        torch.testing.assert_close(got.grad, ref.grad, atol=1e-6, rtol=1e-5)


def test_a_padded_encoders_full_mask_is_applied_as_its_key_mask_and_other_masks_go_to_sdpa():
    # transformers hands the padded encoder a [B, 1, L, keys] mask whose rows are equal: the kernel
    # applies it as a key bias, with the same result as the formula with the mask filled in.
    q, k, v = _qkv()
    key_mask = torch.ones(2, 1, 1, 17, dtype=torch.bool)
    key_mask[1, ..., 10:] = False
    full = key_mask.expand(2, 1, 17, 17).clone()
    torch.manual_seed(2)
    out = cpu_attention.dropout_attention(q, k, v, full, 0.2, None)
    keep = cpu_attention.keep_mask((2, 3, 17, 17), _keys_after_seed(2), cpu_attention.drop_threshold(0.2))
    torch.testing.assert_close(out, _reference(q, k, v, full, keep, 0.2), atol=1e-6, rtol=1e-5)
    # Rows that mask different keys (a causal mask) cannot be a key bias: torch's SDPA, same law.
    causal = torch.ones(17, 17, dtype=torch.bool).tril()
    with torch.no_grad():
        torch.manual_seed(2)
        ours = cpu_attention.dropout_attention(q, k, v, causal, 0.2, None)
        torch.manual_seed(2)
        torchs = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=causal, dropout_p=0.2)
    assert torch.equal(ours, torchs)


def test_chunks_of_heads_each_draw_their_own_keys_and_match_the_formula(monkeypatch):
    # 2 x 3 (batch, head) pairs in chunks of 2 pairs: three kernel calls, three key draws in order.
    monkeypatch.setattr(cpu_attention, "CHUNK_SCORES", 2 * 17 * 17)
    q, k, v = _qkv()
    mask = torch.ones(2, 1, 1, 17, dtype=torch.bool)
    mask[0, ..., 5:] = False
    torch.manual_seed(4)
    out = cpu_attention.dropout_attention(q, k, v, mask, 0.3, None)
    grad = torch.randn_like(out)
    out.backward(grad)
    torch.manual_seed(4)
    threshold = cpu_attention.drop_threshold(0.3)
    keep = torch.cat([cpu_attention.keep_mask((2, 17, 17), torch.randint(-2 ** 31, 2 ** 31 - 1, (2,),
                                                                         dtype=torch.int32), threshold)
                      for _ in range(3)]).view(2, 3, 17, 17)
    q2, k2, v2 = (x.detach().clone().requires_grad_() for x in (q, k, v))
    want = _reference(q2, k2, v2, mask, keep, 0.3)
    want.backward(grad)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-5)
    for got, ref in ((q, q2), (k, k2), (v, v2)):
        torch.testing.assert_close(got.grad, ref.grad, atol=1e-6, rtol=1e-5)


def test_bf16_follows_the_fp32_formula_within_bf16_rounding():
    q, k, v = _qkv(dtype=torch.bfloat16)
    torch.manual_seed(3)
    out = cpu_attention.dropout_attention(q, k, v, None, 0.1, None)
    assert out.dtype == torch.bfloat16
    keep = cpu_attention.keep_mask((2, 3, 17, 17), _keys_after_seed(3), cpu_attention.drop_threshold(0.1))
    want = _reference(*(x.detach().float() for x in (q, k, v)), None, keep, 0.1)
    torch.testing.assert_close(out.float(), want, atol=3e-2, rtol=3e-2)


def _lowbias32(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_the_compiled_keep_test_is_the_documented_hash():
    keys = torch.tensor([123456789, -987654321], dtype=torch.int32)
    p = 0.3
    scores = torch.zeros(2, 20, 50)  # equal probabilities: an element is 0 after the kernel iff dropped
    _, dropped = cpu_attention._kernel("forward")(scores, torch.zeros(2, 1, 50), keys, cpu_attention.kernel_constants(p, 1.0))
    k0, k1 = (int(w) & 0xFFFFFFFF for w in keys)
    threshold = round(p * 2 ** 24)
    python = [(_lowbias32((_lowbias32(i ^ k0) + k1) & 0xFFFFFFFF) & 0xFFFFFF) >= threshold for i in range(2000)]
    assert (dropped != 0).flatten().tolist() == python
    assert cpu_attention.keep_mask((40, 50), keys, threshold).flatten().tolist() == python


def test_each_element_is_dropped_with_probability_p_and_kept_ones_are_scaled():
    p, n = 0.1, 1_000_000
    _, dropped = cpu_attention._kernel("forward")(torch.zeros(4, 250, 1000), torch.zeros(4, 1, 1000),
                                                  _keys_after_seed(0), cpu_attention.kernel_constants(p, 1.0))
    share = float((dropped == 0).float().mean())
    assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n)  # 4 standard deviations
    kept = dropped[dropped != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1e-3 / (1 - p)))  # softmax of 1000 equal scores


def test_the_seed_reproduces_the_masks_and_each_call_draws_new_ones():
    q, k, v = _qkv()
    with torch.no_grad():
        torch.manual_seed(11)
        first, second = (cpu_attention.dropout_attention(q, k, v, None, 0.1, None) for _ in range(2))
        torch.manual_seed(11)
        again = cpu_attention.dropout_attention(q, k, v, None, 0.1, None)
    assert torch.equal(first, again)
    assert not torch.equal(first, second)


def test_a_new_dropout_after_a_recompile_keeps_its_own_threshold():
    # A float argument was specialised by torch.compile: after a recompile for a new shape the
    # drop threshold came from the wrong p. The numbers now travel as tensors.
    for shape, p in (((1, 2, 5, 4), 0.5), ((3, 4, 33, 8), 0.1), ((2, 2, 9, 4), 0.25)):
        q, k, v = _qkv(shape)
        torch.manual_seed(5)
        with torch.no_grad():
            out = cpu_attention.dropout_attention(q, k, v, None, p, None)
        keep = cpu_attention.keep_mask((*shape[:3], shape[2]), _keys_after_seed(5), cpu_attention.drop_threshold(p))
        torch.testing.assert_close(out, _reference(q, k, v, None, keep, p).detach(), atol=1e-6, rtol=1e-5)


class _Module(torch.nn.Module):
    is_causal = False


def test_without_dropout_or_off_the_cpu_kernel_attention_is_torchs_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q, k, v = _qkv()
    mask = torch.ones(2, 1, 1, 17, dtype=torch.bool)
    mask[0, ..., 9:] = False
    with torch.no_grad():
        ours, _ = cpu_attention.attention(_Module(), q, k, v, mask, dropout=0.0)
        torchs, _ = sdpa_attention_forward(_Module(), q, k, v, mask, dropout=0.0)
    assert torch.equal(ours, torchs)
    cpu, big = torch.device("cpu"), cpu_attention.MIN_SCORES
    assert cpu_attention.usable(cpu, 0.1, mask, big)
    assert not cpu_attention.usable(cpu, 0.1, torch.zeros(2, 1, 1, 17), big)  # an additive mask: SDPA's
    assert not cpu_attention.usable(cpu, 0.1, mask, big - 1)  # too small to pay for the build: SDPA
    assert not cpu_attention.usable(cpu, 0.1, mask, 2 ** 31)  # beyond the hash's int32 numbering
    assert not cpu_attention.usable(torch.device("meta"), 0.1, mask, big)  # not the CPU


def test_where_the_kernel_cannot_be_built_attention_falls_back_to_sdpa_with_one_warning(monkeypatch, caplog):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nlong details")

    monkeypatch.setattr(cpu_attention, "_KERNELS", {})
    monkeypatch.setattr(cpu_attention, "_BUILT", [])
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: no_compiler)
    monkeypatch.setattr(cpu_attention, "MIN_SCORES", 1)
    q, k, v = _qkv()
    with caplog.at_level(logging.WARNING, logger=cpu_attention.__name__):
        torch.manual_seed(0)
        out, _ = cpu_attention.attention(_Module(), q, k, v, None, dropout=0.1)
        cpu_attention.attention(_Module(), q, k, v, None, dropout=0.1)
    warnings = [r.getMessage() for r in caplog.records if r.name == cpu_attention.__name__]
    assert len(warnings) == 1 and "no C++ compiler found" in warnings[0] and "long details" not in warnings[0]
    out.sum().backward()  # SDPA's own dropout: a working result
    assert out.shape == (2, 17, 3, 8) and torch.isfinite(q.grad).all()


def test_the_first_build_says_once_why_the_first_update_waits(monkeypatch, caplog):
    # The build costs a process seconds before its first update: the log says so, once.
    monkeypatch.setattr(cpu_attention, "_KERNELS", {})
    monkeypatch.setattr(cpu_attention, "_BUILT", [])
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)  # the eager kernel: the same code path, fast
    with caplog.at_level(logging.INFO, logger=cpu_attention.__name__):
        assert cpu_attention.built() and cpu_attention.built()
    lines = [r.getMessage() for r in caplog.records if r.name == cpu_attention.__name__]
    assert len(lines) == 1 and lines[0].startswith("CPU attention dropout: kernel built by torch.compile in ")


def test_each_kernel_builds_one_graph_per_dtype_whatever_the_calls(monkeypatch):
    # torch.compile guards its inputs' grad mode, requires_grad, view bases and strides: the hidden
    # dropout's forward input and backward gradient differ in all of them, and past 8 graphs a
    # kernel silently runs as eager Python ops (seen in a benchmark).
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from linkbert.core import cpu_dropout

    monkeypatch.setattr(cpu_dropout, "MIN_ELEMENTS", 1)
    torch._dynamo.reset()
    dropout = cpu_dropout.HashDropout(0.1).train()
    for dtype in (torch.float32, torch.bfloat16):
        for batch, length in ((2, 40), (5, 30), (1, 60), (7, 9)):
            x = torch.randn(batch * length, 24, dtype=dtype, requires_grad=True)
            dropout(x * 1).sum().backward()          # a gradient expanded from a sum: stride 0
            dropout(x.t() * 1).float().pow(2).sum().backward()  # a transposed view, a full gradient
            q, k, v = _qkv((batch, 3, length, 8), dtype)
            mask = (torch.arange(length)[None] < torch.randint(1, length + 1, (batch,))[:, None])[:, None, None]
            for m in (mask, mask.expand(batch, 1, length, length).clone(), None):
                cpu_attention.dropout_attention(q, k, v, m, 0.1, None).float().sum().backward()
    graphs = {f.__name__: len(_debug_get_cache_entry_list(f.__code__)) for f in
              (cpu_dropout._dropout, cpu_attention._softmax_dropout, cpu_attention._softmax_dropout_backward)}
    assert graphs == {"_dropout": 2, "_softmax_dropout": 2, "_softmax_dropout_backward": 2}
