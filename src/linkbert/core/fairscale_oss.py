"""`--sharded_ddp simple`: fairscale's OSS optimizer with ShardedDataParallel (ZeRO-1/2).

Each rank keeps the AdamW state of its share of the parameters and receives only the gradients
of that share; the weights stay whole on every rank. Works on CPU (gloo) and CUDA.
"""

from __future__ import annotations

from typing import Optional

import torch

from .distributed import Wrapping
from .optim import optimizer_class


class OSSShardedDDP(Wrapping):
    def make_optimizer(self, groups: list[dict], **kwargs) -> torch.optim.Optimizer:
        from fairscale.optim import OSS

        optim, extra = optimizer_class(self.dist.args.optim, self.dist.device)
        return OSS(groups, optim=optim, **extra, **kwargs)

    def wrap_model(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> torch.nn.Module:
        from fairscale.nn.data_parallel import ShardedDataParallel

        # reduce_buffer_size=0: with its default buckets ShardedDDP gave silently wrong
        # gradients on gloo (test_distributed fails with them); without, it is exact.
        return ShardedDataParallel(model, optimizer, reduce_buffer_size=0)

    def wrap_scaler(self, scaler: torch.amp.GradScaler) -> torch.amp.GradScaler:
        return rank_synced_scaler(scaler, self.dist.device)

    def clip_grad_norm(self, model: torch.nn.Module, optimizer, max_norm: float) -> None:
        optimizer.clip_grad_norm(max_norm)  # each rank holds only its shard's gradients

    def optimizer_state(self, optimizer) -> Optional[dict]:
        optimizer.consolidate_state_dict(recipient_rank=0)
        return optimizer.state_dict() if self.dist.is_main else None

    # load_optimizer_state: OSS.load_state_dict keeps this rank's partition of a full state itself.


def rank_synced_scaler(scaler: torch.amp.GradScaler, device: torch.device) -> torch.amp.GradScaler:
    """fp16 with sharded gradients: every rank must agree on skipping a step (each sees only its
    shard's inf/NaN). fairscale's ShardedGradScaler does this on CUDA; on CPU it is a no-op."""
    if not scaler.is_enabled():
        return scaler
    if device.type == "cuda":
        from fairscale.optim.grad_scaler import ShardedGradScaler

        return ShardedGradScaler()
    return RankSyncedGradScaler("cpu")


class RankSyncedGradScaler(torch.amp.GradScaler):
    """GradScaler whose inf/NaN finding is summed over ranks before the step, so all ranks
    skip together (what fairscale's ShardedGradScaler does, for the CPU)."""

    def unscale_(self, optimizer) -> None:
        super().unscale_(optimizer)
        found = self._per_optimizer_states[id(optimizer)]["found_inf_per_device"]
        flag = torch.zeros(())
        for value in found.values():
            flag += value.cpu()
        torch.distributed.all_reduce(flag)
        for value in found.values():
            value.copy_(flag.to(value.device))
