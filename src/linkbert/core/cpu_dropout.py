"""Hidden-state dropout on the CPU without `bernoulli_`.

`nn.Dropout` on the CPU draws its mask with `bernoulli_` (a serial generator), multiplies, and keeps
the mask for the backward: 4-6% of a MiniLM update (issue 29). `HashDropout` computes, in training
on the CPU, `where(keep, x / (1-p), 0)` in one compiled kernel whose keep test is cpu_attention's
counter-based hash of each element's index, keyed by two 32-bit words drawn from torch's CPU
generator per call; the backward recomputes the same test from the two words, so nothing else is
saved. `torch.manual_seed`, a checkpoint's saved generator state and gradient checkpointing's
recomputation (which restores the generator first) reproduce the masks; each element is dropped
with probability p to within 2^-24. It is a different random stream from `bernoulli_`'s (a change
of seed, DEVIATIONS.md); models built with `--attn_implementation torch_sdpa` or `eager` keep
`nn.Dropout`.

Calls of MIN_ELEMENTS to MAX_ELEMENTS elements take the kernel (a smaller call, which could not
pay for the build, keeps `F.dropout`: which path a call takes depends on its shape only, so a seed
still reproduces a run). Elsewhere (not the CPU, evaluation, p = 0, a kernel that could not be
built) it is `nn.Dropout` exactly.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch

from .cpu_attention import ATTENTION_NAME, build_once, draw_keys, keep_mask, kernel_constants, kernel_input

logger = logging.getLogger(__name__)

#: Smaller calls keep F.dropout: the tests' tiny models stay below unless they ask for it; one
#: MiniLM layer's hidden states on a packed RE batch (~1250 tokens x 384) are 480k elements.
MIN_ELEMENTS = 1 << 18
MAX_ELEMENTS = (1 << 31) - 1  # the hash numbers the elements of a call in int32
_KERNELS: list[Callable] = []
_BUILT: list[bool] = []  # [True] once the kernel ran, [False] if building it failed


def _dropout(x: torch.Tensor, keys: torch.Tensor, constants: torch.Tensor) -> torch.Tensor:
    """1-D x -> where(keep, x * 1/(1-p), 0), in x's dtype (the product in float32). The numbers
    (`kernel_constants`) arrive as tensors, as in cpu_attention (a Python float would be specialised
    by torch.compile)."""
    keep = keep_mask(tuple(x.shape), keys, constants[0].to(torch.int32))
    return torch.where(keep, x.float() * constants[1], 0.0).to(x.dtype)


def _kernel() -> Callable:
    if not _KERNELS:
        _KERNELS.append(torch.compile(_dropout, dynamic=True))
    return _KERNELS[0]


def _apply_kernel(x: torch.Tensor, keys: torch.Tensor, constants: torch.Tensor) -> torch.Tensor:
    # One compiled graph per dtype, whatever the call: 1-D (torch.compile would specialise a size-1
    # dimension), no grad mode and a detached input that is not a view (`kernel_input`): each is a
    # guard, the forward's input and the backward's gradient differ in them, and 8 graphs sent the
    # kernel back to eager Python ops.
    with torch.autocast("cpu", enabled=False), torch.no_grad():
        return _kernel()(kernel_input(x.reshape(-1)), keys, constants).view(x.shape)


class _HashDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float, inplace: bool) -> torch.Tensor:
        keys = draw_keys()
        constants = kernel_constants(p)
        ctx.save_for_backward(keys, constants)
        out = _apply_kernel(x, keys, constants)
        if inplace:
            ctx.mark_dirty(x)
            return x.copy_(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        keys, constants = ctx.saved_tensors
        return _apply_kernel(grad, keys, constants), None, None


def built() -> bool:
    """Whether the kernel works here: built (by torch.compile) and run once on a small input the
    first time this is asked; False, after one warning, where that fails (no C++ compiler, ...)."""
    return build_once(_BUILT, lambda: _apply_kernel(torch.linspace(-1.0, 1.0, 18), torch.zeros(2, dtype=torch.int32),
                                                    kernel_constants(0.5)),  # not random: the run's stream stays
                      logger, "CPU hidden dropout", "dropout uses torch's bernoulli_ instead (slower, the same semantics)")


def usable(x: torch.Tensor, p: float, training: bool) -> bool:
    """Whether a dropout call takes the kernel: in training on the CPU, with p > 0, MIN_ELEMENTS
    to MAX_ELEMENTS elements, and the kernel built (built on the first such call)."""
    return (training and p > 0 and x.device.type == "cpu"
            and MIN_ELEMENTS <= x.numel() <= MAX_ELEMENTS and built())


class HashDropout(torch.nn.Dropout):
    """`nn.Dropout` whose CPU training calls of MIN_ELEMENTS or more elements take the hash kernel."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if usable(input, self.p, self.training):
            return _HashDropout.apply(input, self.p, self.inplace)
        return super().forward(input)


def use_hash_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Make every plain `nn.Dropout` of a model built with cpu_attention's attention (`--attn_implementation
    sdpa`) a HashDropout of the same p (no parameters: the state_dict is unchanged). Returns `model`."""
    if getattr(getattr(model, "config", None), "_attn_implementation", None) != ATTENTION_NAME:
        return model
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is torch.nn.Dropout:
                setattr(module, name, HashDropout(child.p, child.inplace))
    return model
