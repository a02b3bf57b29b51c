"""`--optim adamw_hf` is transformers 4.9.1's AdamW: checked against hand-computed updates and
against a per-parameter transcription of its loop; it must differ from torch's AdamW where the
two algorithms differ (epsilon inside the bias correction, weight decay after the update)."""

import math

import pytest
import torch

from linkbert.core.optim import AdamWHF, optimizer_class


def _one_step(optim_cls, weight: float, grad: float, **kwargs) -> float:
    p = torch.nn.Parameter(torch.tensor([weight], dtype=torch.float64))
    opt = optim_cls([p], **kwargs)
    p.grad = torch.tensor([grad], dtype=torch.float64)
    opt.step()
    return p.item()


def test_first_step_epsilon_enters_before_the_bias_correction():
    # Step 1: update = lr * g / (|g| + eps / sqrt(1 - beta2)); with g = eps that is lr / (1 + 31.62).
    lr, eps = 0.1, 1e-8
    hf = _one_step(AdamWHF, 0.0, eps, lr=lr, eps=eps)
    assert hf == pytest.approx(-lr / (1 + 1 / math.sqrt(1 - 0.999)), rel=1e-9)
    torch_ = _one_step(torch.optim.AdamW, 0.0, eps, lr=lr, eps=eps, weight_decay=0.0)
    assert torch_ == pytest.approx(-lr / 2, rel=1e-6)  # torch: lr * g / (|g| + eps)


def test_weight_decay_is_applied_after_the_update():
    lr, wd, g = 0.1, 0.5, 1.0
    update = lr * g / (g + 1e-8 / math.sqrt(1 - 0.999))
    hf = _one_step(AdamWHF, 1.0, g, lr=lr, weight_decay=wd, eps=1e-8)
    assert hf == pytest.approx((1.0 - update) * (1 - lr * wd), rel=1e-12)
    torch_ = _one_step(torch.optim.AdamW, 1.0, g, lr=lr, weight_decay=wd, eps=1e-8)
    assert torch_ == pytest.approx(1.0 * (1 - lr * wd) - lr * g / (g + 1e-8), rel=1e-9)
    assert abs(hf - torch_) > 1e-3


def _reference_adamw_491(params, grads_per_step, lr, betas, eps, wd):
    """transformers 4.9.1 `AdamW.step`, one parameter at a time, as written there."""
    state = [dict(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p)) for p in params]
    for grads in grads_per_step:
        for p, g, s in zip(params, grads, state):
            s["step"] += 1
            s["m"].mul_(betas[0]).add_(g, alpha=1 - betas[0])
            s["v"].mul_(betas[1]).addcmul_(g, g, value=1 - betas[1])
            denom = s["v"].sqrt().add_(eps)
            step_size = lr * math.sqrt(1 - betas[1] ** s["step"]) / (1 - betas[0] ** s["step"])
            p.addcdiv_(s["m"], denom, value=-step_size)
            p.add_(p, alpha=-lr * wd)


@pytest.mark.parametrize("fused", [False, True])
def test_implementation_matches_the_per_parameter_loop(fused):
    torch.manual_seed(0)
    shapes = [(3, 4), (4,), (2, 2, 2)]
    start = [torch.randn(s, dtype=torch.float64) for s in shapes]
    grads = [[torch.randn(s, dtype=torch.float64) for s in shapes] for _ in range(5)]
    reference = [p.clone() for p in start]
    _reference_adamw_491(reference, grads, lr=1e-2, betas=(0.9, 0.98), eps=1e-6, wd=0.01)
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = AdamWHF([{"params": params[:2], "weight_decay": 0.01}, {"params": params[2:], "weight_decay": 0.01}],
                  lr=1e-2, betas=(0.9, 0.98), eps=1e-6, fused=fused)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
    for p, r in zip(params, reference):
        torch.testing.assert_close(p.detach(), r, rtol=1e-12, atol=1e-14)
    # The state survives a save/load round trip (checkpoints load with weights_only=True).
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    loaded = AdamWHF([{"params": copies[:2]}, {"params": copies[2:]}], lr=1e-2)
    loaded.load_state_dict(opt.state_dict())
    assert [g["hf_step"] for g in loaded.param_groups] == [5, 5]
    assert loaded.param_groups[0]["lr"] == 1e-2 and loaded.param_groups[0]["eps"] == 1e-6  # settings restored


def test_optim_names_resolve():
    cpu = torch.device("cpu")
    assert optimizer_class("adamw_hf", cpu)[0] is AdamWHF
    assert optimizer_class("adamw_torch", cpu) == (torch.optim.AdamW, {})
    assert optimizer_class("adamw_torch_fused", cpu)[0] is torch.optim.AdamW
