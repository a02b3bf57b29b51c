"""Attention with dropout on the CPU, without torch's math path.

SDPA has fused CPU kernels only without dropout: with `dropout_p > 0` it computes attention op by op
and draws the dropout mask with `bernoulli_`, a serial generator that costs more than the softmax it
masks (bench/README.md, issue 29). Here, in training on the CPU:

    scores = q @ k^T                                  (bmm, in q's dtype)
    probs, dropped = softmax_dropout(scores)          (one compiled kernel: scale, key mask,
                                                       softmax, the keep test, the 1/(1-p) factor)
    out = dropped @ v                                 (bmm)

and the backward needs neither the mask nor a second draw: with P the probabilities and D the
dropped ones (D = P * keep / (1-p)), the softmax gradient P * (dP - rowsum(P * dP)) equals
D * dD - P * rowsum(D * dD), since P * dP = D * dD wherever the mask keeps and both are 0 where it
drops. That is one more compiled kernel.

The keep test is a counter-based hash (two rounds of the `lowbias32` integer hash, C. Wellons' hash
prospector) of each element's index, keyed by two 32-bit words drawn from torch's CPU generator per
call: so `torch.manual_seed` and a checkpoint's saved generator state reproduce the masks, every
call draws new ones, and each probability is dropped with probability p to within 2^-24 (the
resolution of torch's own float uniform draw). It is a different random stream from `bernoulli_`'s
(a change of seed, DEVIATIONS.md); `--attn_implementation torch_sdpa` keeps torch's.

The kernels are built by `torch.compile` (a C++ compiler is needed, as for `--torch_compile`) the
first time they run, for any shape, and serve calls of at least MIN_SCORES attention scores (a
smaller call, which could not pay for the build, keeps SDPA: which path a call takes depends on its
shape only, so a seed still reproduces a run). Where building fails, attention goes back to SDPA after one
warning: slower, never wrong.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

import torch

logger = logging.getLogger(__name__)

ATTENTION_NAME = "linkbert_sdpa"
#: keep an element when the hash's low 24 bits are at or above p * 2^24
_HASH_BITS = 24
#: Calls with fewer attention scores (batch x heads x queries x keys) keep torch's SDPA: building
#: the kernels costs each process ~6 s (torch.compile's import and tracing, with its on-disk cache
#: warm; ~25 s cold), which only work of this size pays back. MiniLM on one RE batch has 1.4M
#: scores, one QA window batch 21M; the tests' tiny models stay below unless they ask for it.
MIN_SCORES = 1 << 18
MAX_SCORES = (1 << 31) - 1  # the hash numbers the elements of a call in int32
#: Scores per kernel call: MiniLM's 12 heads of a 384-token window (1.8M) ran attention forward and
#: backward 2.0x (fp32) and 1.6x (bf16) as fast in such chunks as in one call over 12 windows,
#: and faster than in chunks of 4 heads or of 36 (one CPU thread, 2 MiB L2).
CHUNK_SCORES = 1 << 21
_KERNELS: dict[str, Callable] = {}
_BUILT: list[bool] = []  # [True] once both kernels ran, [False] if building them failed


def _lowbias32(x: torch.Tensor) -> torch.Tensor:
    """An invertible int32 -> int32 mix (wrapping multiplies; `>>` made logical by the masks)."""
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * 0x7FEB352D
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * -2073254261  # 0x846CA68B as int32
    return x ^ ((x >> 16) & 0xFFFF)


def drop_threshold(p: float) -> int:
    """Elements whose hash (24 bits) is below this are dropped: p * 2^24, rounded."""
    return int(round(p * (1 << _HASH_BITS)))


def keep_mask(shape: tuple[int, ...], keys: torch.Tensor, threshold: torch.Tensor | int) -> torch.Tensor:
    """The keep test of `softmax_dropout`: True where an element survives. `keys`: two int32
    words; `threshold`: `drop_threshold(p)`. Elements are numbered in row-major order of `shape`."""
    count = torch.arange(int(torch.Size(shape).numel()), dtype=torch.int32).view(shape)
    bits = _lowbias32(_lowbias32(count ^ keys[0]) + keys[1])
    return (bits & ((1 << _HASH_BITS) - 1)) >= threshold


def _softmax_dropout(scores: torch.Tensor, key_bias: torch.Tensor, keys: torch.Tensor, constants: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    # The numbers arrive as tensors (`kernel_constants`): a Python float would be specialised by
    # torch.compile, and the drop threshold computed from it went wrong once it was recompiled.
    threshold, factor, scale = constants[0].to(torch.int32), constants[1], constants[2]
    dtype = scores.dtype
    probs = torch.softmax(scores.float() * scale + key_bias, -1)
    dropped = torch.where(keep_mask(tuple(scores.shape), keys, threshold), probs * factor, 0.0)
    return probs.to(dtype), dropped.to(dtype)


def _softmax_dropout_backward(probs: torch.Tensor, dropped: torch.Tensor, grad_dropped: torch.Tensor,
                              constants: torch.Tensor) -> torch.Tensor:
    product = dropped.float() * grad_dropped.float()
    return ((product - probs.float() * product.sum(-1, keepdim=True)) * constants[2]).to(probs.dtype)


def kernel_constants(p: float, scale: float = 1.0) -> torch.Tensor:
    """The kernels' numbers: drop threshold, 1/(1-p), softmax scale (float64: the threshold is exact).
    cpu_dropout's kernel reads the first two."""
    return torch.tensor([drop_threshold(p), 1.0 / (1.0 - p), scale], dtype=torch.float64)


def kernel_input(x: torch.Tensor) -> torch.Tensor:
    """x (detached, contiguous) as a tensor that is not a view, sharing x's memory where x is
    contiguous. torch.compile guards a view input on its base's sizes: views of other bases, and
    non-views, would each get a graph of their own, and past 8 graphs the kernel runs as eager ops."""
    x = x.detach().contiguous()
    return torch.empty(0, dtype=x.dtype).set_(x.untyped_storage(), x.storage_offset(), x.shape, x.stride())


def _kernel(name: str) -> Callable:
    if name not in _KERNELS:
        plain = _softmax_dropout if name == "forward" else _softmax_dropout_backward
        _KERNELS[name] = torch.compile(plain, dynamic=True)
    return _KERNELS[name]


def draw_keys() -> torch.Tensor:
    """Two int32 words from torch's CPU generator: what a seed and a checkpoint reproduce."""
    return torch.randint(-2 ** 31, 2 ** 31 - 1, (2,), dtype=torch.int32)


class _DropoutAttention(torch.autograd.Function):
    """[pairs, L, d] attention with dropout, `rows` (batch, head) pairs per kernel call, one autograd
    node for the whole call: each chunk writes its part of the output and of the gradients into one
    buffer (a node per chunk, on slices, made the backward fill and add a whole-size zero gradient
    per chunk: 7% of a QA update). A chunk's scores, probabilities and dropped probabilities stay
    [rows, L, keys]: the kernel numbers its elements in that order."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_bias: torch.Tensor,
                p: float, scale: float, rows: int) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):  # q/k/v arrive in the autocast dtype already
            constants = kernel_constants(p, scale)
            out = q.new_empty(q.shape[0], q.shape[1], v.shape[-1])
            kept = []
            for i in range(0, q.shape[0], rows):
                part = slice(i, i + rows)
                keys = draw_keys()
                scores = torch.bmm(q[part], k[part].transpose(1, 2))
                probs, dropped = _kernel("forward")(scores, kernel_input(key_bias[part]), keys, constants)
                torch.bmm(dropped, v[part], out=out[part])
                kept.append((probs, dropped))
            ctx.save_for_backward(q, k, v, constants)
            ctx.kept, ctx.rows = kept, rows  # intermediates, not inputs or outputs: kept on ctx
            return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor):
        q, k, v, constants = ctx.saved_tensors
        grad_out = grad_out.to(q.dtype)
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        for n, (probs, dropped) in enumerate(ctx.kept):
            part = slice(n * ctx.rows, (n + 1) * ctx.rows)
            torch.bmm(dropped.transpose(1, 2), grad_out[part], out=grad_v[part])
            grad_dropped = torch.bmm(grad_out[part], v[part].transpose(1, 2))
            grad_scores = _kernel("backward")(probs, dropped, grad_dropped, constants)
            torch.bmm(grad_scores, k[part], out=grad_q[part])
            torch.bmm(grad_scores.transpose(1, 2), q[part], out=grad_k[part])
        ctx.kept = None
        return grad_q, grad_k, grad_v, None, None, None, None


def build_once(state: list[bool], trial: Callable[[], object], log: logging.Logger, what: str, instead: str
               ) -> bool:
    """Run `trial` (which builds a kernel by running it on a small input) the first time, and
    remember in `state` whether it worked; where it fails (no C++ compiler, ...) say so once on
    `log`, with `what` the kernel serves and `instead` the way back."""
    if not state:
        start = time.perf_counter()
        try:
            with torch.no_grad():  # as the autograd functions call the kernels: grad mode is a guard of a graph
                trial()
            state.append(True)
            # The first update of a CPU run waits for this: say why it is slow.
            log.info("%s: kernel built by torch.compile in %.1f s (once per process)", what,
                     time.perf_counter() - start)
        except Exception as e:  # noqa: BLE001 - whatever stops the build, torch's own op is the way back
            state.append(False)
            log.warning("%s: torch.compile could not build its kernel (%s: %s); %s", what, type(e).__name__,
                        (str(e).splitlines() or [""])[0], instead)
    return state[0]


def _trial() -> None:
    scores = kernel_input(torch.linspace(-1.0, 1.0, 36).view(2, 6, 3))  # not random: the run's stream stays
    probs, dropped = _kernel("forward")(scores, torch.zeros(2, 1, 3), torch.zeros(2, dtype=torch.int32),
                                        kernel_constants(0.5))
    _kernel("backward")(probs, dropped, torch.ones_like(dropped), kernel_constants(0.5))


def built() -> bool:
    """Whether the kernels work here: built (by torch.compile) and run once on a small input the
    first time this is asked; False, after one warning, where that fails (no C++ compiler, ...)."""
    return build_once(_BUILT, _trial, logger, "CPU attention dropout",
                      "attention dropout uses SDPA's math path instead (slower, the same semantics)")


def usable(device: torch.device, dropout: float, mask: Optional[torch.Tensor], scores: int) -> bool:
    """Whether an attention call takes the kernel: on the CPU, with dropout, a boolean key mask or
    none, MIN_SCORES to MAX_SCORES scores, and the kernels built (built on the first such call)."""
    return (dropout > 0 and device.type == "cpu" and (mask is None or mask.dtype == torch.bool)
            and MIN_SCORES <= scores <= MAX_SCORES and built())


def _key_bias(mask: Optional[torch.Tensor], batch: int, heads: int, keys: int) -> Optional[torch.Tensor]:
    """A bool mask (True = attend, broadcastable to [B, H, L, keys]) -> the kernel's additive key
    bias [B * H, 1, keys] (0 or -inf); None where query rows mask different keys, which a key bias
    cannot say (padding and length buckets mask the same keys in every row: transformers hands the
    padded encoder a [B, 1, L, keys] mask whose rows are equal)."""
    bias = torch.zeros(batch, heads, 1, keys)
    if mask is not None:
        first_row = mask[..., :1, :]
        if mask.shape[-2] != 1 and not torch.equal(mask, first_row.expand_as(mask)):
            return None
        bias.masked_fill_(~first_row.expand(batch, heads, 1, keys), float("-inf"))
    return bias.view(batch * heads, 1, keys)


def dropout_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
                      dropout: float, scale: Optional[float]) -> torch.Tensor:
    """[B, H, L, d] -> [B, H, L, d], as SDPA with `attn_mask=mask` (bool, broadcastable to the
    scores, True = attend) and `dropout_p=dropout`; only where `usable`. The (batch, head) pairs
    go through the kernel in chunks of about CHUNK_SCORES scores, whose score matrices stay in the
    CPU's cache between the matmul and the kernel (each chunk draws its own keys)."""
    batch, heads, length, dim = q.shape
    scale = dim ** -0.5 if scale is None else scale
    key_bias = _key_bias(mask, batch, heads, k.shape[2])
    if key_bias is None:  # query rows that mask different keys (no BERT encoder's mask): torch's SDPA
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout,
                                                                scale=scale)
    q, k, v = (x.reshape(batch * heads, x.shape[2], x.shape[3]) for x in (q, k, v))
    rows = max(1, CHUNK_SCORES // (length * k.shape[1]))
    return _DropoutAttention.apply(q, k, v, key_bias, dropout, scale, rows).view(batch, heads, length, -1)


def attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: Optional[torch.Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
              **kwargs) -> tuple[torch.Tensor, None]:
    """HF attention interface (`--attn_implementation sdpa`): SDPA, except CPU training with
    attention dropout, which takes `dropout_attention`. Returns [B, L, heads, d]."""
    batch, heads, length, _ = query.shape
    if usable(query.device, dropout, attention_mask, batch * heads * length * key.shape[-2]):
        out = dropout_attention(query, key, value, attention_mask, dropout, scaling)
        return out.transpose(1, 2).contiguous(), None
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  **kwargs)


def register() -> str:
    """Register `attention` with transformers under ATTENTION_NAME (with SDPA's mask); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME
