"""core/cpu_dropout.py: the hidden-state dropout of CPU training through one compiled hash kernel.

What must hold: the output and the gradient equal dropout's formula with the kernel's own keep
mask, which is cpu_attention's hash; each element is dropped with probability p; the run's seed
reproduces the masks, every call draws new ones, and gradient checkpointing's recomputation draws
the same ones; without dropout, in evaluation, below the size rule or where the kernel cannot be
built, it is `F.dropout` exactly; models built with `--attn_implementation sdpa` get it, `eager`
and `torch_sdpa` ones keep `nn.Dropout`.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import sample_dir

from linkbert.core import cpu_attention, cpu_dropout
from linkbert.core.args import parse_args
from linkbert.core.run import load_model, resolve_context
from linkbert.seqcls.run_seqcls import SeqClsTask

CHEMPROT = sample_dir("chemprot_hf")


@pytest.fixture
def kernel_for_all_sizes(monkeypatch):
    """The tests' tensors are below the kernel's size rule; lift it."""
    monkeypatch.setattr(cpu_dropout, "MIN_ELEMENTS", 1)


def _keys_after_seed(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randint(-2 ** 31, 2 ** 31 - 1, (2,), dtype=torch.int32)  # as _HashDropout draws them


def _x(shape=(5, 7, 11), dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype).requires_grad_()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("inplace", [False, True])
def test_output_and_gradient_equal_the_formula_with_the_kernels_mask(dtype, inplace, kernel_for_all_sizes):
    p = 0.2
    x = _x(dtype=dtype)
    torch.manual_seed(7)
    source = x * 1 if inplace else x  # in-place dropout needs a non-leaf, as nn.Dropout's
    out = cpu_dropout.HashDropout(p, inplace=inplace).train()(source)
    assert out.dtype == dtype and (out is source) == inplace
    grad = torch.randn_like(out)
    out.backward(grad)
    keep = cpu_attention.keep_mask((x.numel(),), _keys_after_seed(7), cpu_attention.drop_threshold(p)).view(x.shape)
    assert 0 < keep.sum() < keep.numel()  # the mask drops some, not all
    torch.testing.assert_close(out, torch.where(keep, x.detach().float() / (1 - p), 0.0).to(dtype))
    torch.testing.assert_close(x.grad, torch.where(keep, grad.float() / (1 - p), 0.0).to(dtype))


def test_the_compiled_keep_test_is_cpu_attentions_keep_mask():
    keys = torch.tensor([123456789, -987654321], dtype=torch.int32)
    p = 0.3
    dropped = cpu_dropout._kernel()(torch.ones(2000), keys, cpu_attention.kernel_constants(p))
    keep = cpu_attention.keep_mask((2000,), keys, cpu_attention.drop_threshold(p))
    assert torch.equal(dropped != 0, keep)
    assert 0 < keep.sum() < 2000


def test_each_element_is_dropped_with_probability_p_and_kept_ones_are_scaled():
    p, n = 0.1, 1_000_000
    dropped = cpu_dropout._kernel()(torch.ones(n), _keys_after_seed(0), cpu_attention.kernel_constants(p))
    share = float((dropped == 0).float().mean())
    assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n)  # 4 standard deviations
    kept = dropped[dropped != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))


def test_the_seed_reproduces_the_masks_and_each_call_draws_new_ones(kernel_for_all_sizes):
    dropout, x = cpu_dropout.HashDropout(0.1).train(), torch.ones(64, 32)
    torch.manual_seed(11)
    first, second = dropout(x), dropout(x)
    torch.manual_seed(11)
    again = dropout(x)
    assert torch.equal(first, again)
    assert not torch.equal(first, second)


def test_without_dropout_in_evaluation_or_below_the_size_rule_it_is_f_dropout():
    x = _x().detach()
    below = cpu_dropout.HashDropout(0.1).train()
    assert x.numel() < cpu_dropout.MIN_ELEMENTS
    torch.manual_seed(3)
    ours = below(x)
    torch.manual_seed(3)
    assert torch.equal(ours, F.dropout(x, 0.1, True))
    assert not torch.equal(ours, x)  # it did drop
    assert torch.equal(cpu_dropout.HashDropout(0.0).train()(x), x)
    assert torch.equal(cpu_dropout.HashDropout(0.1).eval()(x), x)
    big = torch.zeros(cpu_dropout.MIN_ELEMENTS)
    assert cpu_dropout.usable(big, 0.1, True)
    assert not cpu_dropout.usable(big[1:], 0.1, True)  # too small to pay for the build
    assert not cpu_dropout.usable(torch.zeros(1).expand(2 ** 31), 0.1, True)  # beyond the hash's int32 numbering
    assert not cpu_dropout.usable(big.to("meta"), 0.1, True)  # not the CPU
    assert not cpu_dropout.usable(big, 0.1, False) and not cpu_dropout.usable(big, 0.0, True)


def test_where_the_kernel_cannot_be_built_dropout_falls_back_to_f_dropout_with_one_warning(monkeypatch, caplog):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nlong details")

    monkeypatch.setattr(cpu_dropout, "_KERNELS", [])
    monkeypatch.setattr(cpu_dropout, "_BUILT", [])
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: no_compiler)
    monkeypatch.setattr(cpu_dropout, "MIN_ELEMENTS", 1)
    x, dropout = _x().detach(), cpu_dropout.HashDropout(0.1).train()
    with caplog.at_level(logging.WARNING, logger=cpu_dropout.__name__):
        torch.manual_seed(0)
        ours = [dropout(x), dropout(x)]
    warnings = [r.getMessage() for r in caplog.records if r.name == cpu_dropout.__name__]
    assert len(warnings) == 1 and "no C++ compiler found" in warnings[0] and "long details" not in warnings[0]
    torch.manual_seed(0)
    assert all(torch.equal(a, F.dropout(x, 0.1, True)) for a in ours)


def _model(tiny_model, tmp_path, attention: str):
    argv = ["--model_name_or_path", tiny_model([CHEMPROT / "train.json"]), "--train_file", CHEMPROT / "train.json",
            "--do_train", "--output_dir", tmp_path / attention, "--attn_implementation", attention]
    model_args, data_args, args, task_args = parse_args(SeqClsTask.arguments, [str(a) for a in argv])
    task = SeqClsTask(model_args, data_args, args, task_args)
    _, checked = task.load_examples(["train"])
    _, config = resolve_context(task, checked)
    return load_model(task, config)


def test_models_built_with_sdpa_get_hash_dropout_and_eager_or_torch_sdpa_ones_keep_nn_dropout(tiny_model, tmp_path):
    models = {a: _model(tiny_model, tmp_path, a) for a in ("sdpa", "torch_sdpa", "eager")}
    kinds = {a: [type(m) for m in model.modules() if isinstance(m, torch.nn.Dropout)] for a, model in models.items()}
    # embeddings, classifier, 2 layers x 3 (attention's own, whose p the attention function reads)
    assert len(kinds["sdpa"]) == 2 + 2 * 3 == len(kinds["eager"])
    assert set(kinds["sdpa"]) == {cpu_dropout.HashDropout}
    assert set(kinds["eager"]) == set(kinds["torch_sdpa"]) == {torch.nn.Dropout}
    assert [m.p for m in models["sdpa"].modules() if isinstance(m, torch.nn.Dropout)] == \
        [m.p for m in models["eager"].modules() if isinstance(m, torch.nn.Dropout)]
    assert models["sdpa"].state_dict().keys() == models["eager"].state_dict().keys()  # nothing saved changes


def test_gradient_checkpointing_recomputes_the_same_masks(tiny_model, tmp_path, kernel_for_all_sizes, monkeypatch):
    calls = []
    apply = cpu_dropout._HashDropout.apply
    monkeypatch.setattr(cpu_dropout._HashDropout, "apply", lambda *a: calls.append(1) or apply(*a))
    model = _model(tiny_model, tmp_path, "sdpa").train()
    ids = torch.randint(5, model.config.vocab_size, (4, 24), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, 15:] = 0

    def gradients(seed: int) -> dict:
        model.zero_grad()
        calls.clear()
        torch.manual_seed(seed)
        model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 2, 1])).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, other_seed = gradients(5), gradients(6)
    assert len(calls) == 1 + 2 * 2 + 1  # embeddings, 2 layers x 2, classifier
    model.gradient_checkpointing_enable()
    checkpointed = gradients(5)
    assert len(calls) == 1 + 2 * 2 * 2 + 1  # each layer's two dropouts ran again in the backward
    assert checkpointed.keys() == plain.keys() and len(plain) == len(list(model.parameters()))
    for name, g in plain.items():
        torch.testing.assert_close(checkpointed[name], g, rtol=1e-5, atol=1e-7, msg=name)
    assert not torch.equal(other_seed["bert.embeddings.word_embeddings.weight"],
                           plain["bert.embeddings.word_embeddings.weight"])  # the masks matter
