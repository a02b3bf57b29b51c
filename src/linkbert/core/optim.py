"""The optimizers behind `--optim` (HF's own names):

- `adamw_hf`: the AdamW of transformers 4.9.1 (`transformers.optimization.AdamW`, which the
  paper's runs used), written with `torch._foreach_*` multi-tensor ops. It differs from
  `torch.optim.AdamW` in two places: epsilon is added to sqrt(v) before the bias correction,
  which is folded into the step size (lr * sqrt(1 - beta2^t) / (1 - beta1^t)), so the effective
  epsilon is eps / sqrt(1 - beta2^t) (31.6x eps at step 1 with beta2 0.999); and the decoupled
  weight decay is applied after the Adam update, to the updated weights (torch: before).
- `adamw_torch`: `torch.optim.AdamW` (its foreach implementation).
- `adamw_torch_fused`: `torch.optim.AdamW(fused=True)` where the build has the kernel for the
  device, else the foreach one.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch

OPTIMIZERS = ("adamw_hf", "adamw_torch", "adamw_torch_fused")


class AdamWHF(torch.optim.Optimizer):
    """transformers 4.9.1's AdamW (correct_bias=True), multi-tensor. Its per-parameter loop was:

        m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
        p -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)
        p -= lr * weight_decay * p
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0) -> None:
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid AdamW settings lr={lr} betas={betas} eps={eps}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("AdamW does not support sparse gradients")
            beta1, beta2 = group["betas"]
            grads, exp_avgs, exp_avg_sqs, step_sizes = [], [], [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                # Bias correction folded into the step size (host arithmetic: no device sync).
                step_sizes.append(-group["lr"] * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t))
            torch._foreach_mul_(exp_avgs, beta1)
            torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
            denoms = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_add_(denoms, group["eps"])
            torch._foreach_addcdiv_(params, exp_avgs, denoms, step_sizes)
            if group["weight_decay"] > 0.0:  # after the Adam update, on the updated weights
                torch._foreach_mul_(params, 1.0 - group["lr"] * group["weight_decay"])
        return loss


def optimizer_class(name: str, device: torch.device) -> tuple[type[torch.optim.Optimizer], dict]:
    """The optimizer class for `--optim` and the extra keyword arguments it takes."""
    if name == "adamw_hf":
        return AdamWHF, {}
    if name == "adamw_torch_fused" and fused_adamw_works(device):
        return torch.optim.AdamW, {"fused": True}
    return torch.optim.AdamW, {}


def fused_adamw_works(device: torch.device) -> bool:
    try:
        torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1, device=device))], fused=True)
        return True
    except (RuntimeError, TypeError, ValueError):
        return False
