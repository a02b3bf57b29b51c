"""`--fsdp full_shard|shard_grad_op`: PyTorch's FSDP2 (`fully_shard`), the maintained way to shard.

Each transformer block is one unit, so only one block's full weights exist at a time.
`shard_grad_op` keeps the gathered weights from forward to backward (ZeRO-2), `full_shard` frees
them after the forward (ZeRO-3). Parameters and gradients are DTensors: gradient clipping and the
fp16 scaler's inf check reduce over ranks by themselves, so those stay as for DDP.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch

from .distributed import DistState, Wrapping, transformer_blocks


class FSDP2(Wrapping):
    # Gradients live inside the shards: a checkpoint cannot hold left-over micro-batch ones.
    can_save_pending_gradients = False

    def __init__(self, dist: DistState, flag: str = "") -> None:
        super().__init__(dist, flag)
        self.sharded_model: Optional[torch.nn.Module] = None  # names the optimizer's state

    def shard_model(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(self.dist.device.type, (self.dist.world_size,))
        reshard = self.dist.args.fsdp == "full_shard"
        for blocks, i in transformer_blocks(model):
            fully_shard(blocks[i], mesh=mesh, reshard_after_forward=reshard)
        fully_shard(model, mesh=mesh, reshard_after_forward=reshard)  # in place: same object
        self.sharded_model = model
        return model

    def wrap_model(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> torch.nn.Module:
        return model  # already sharded by shard_model

    def no_sync(self, model: torch.nn.Module, enabled: bool) -> contextlib.AbstractContextManager:
        return _no_gradient_sync(model) if enabled else contextlib.nullcontext()

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> Optional[dict]:
        """Full, on rank 0's CPU, keyed by parameter name (FSDP2's own format)."""
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        model = _reshard(self.sharded_model)
        return get_optimizer_state_dict(model, optimizer, options=_full_state_options())

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        model = _reshard(self.sharded_model)
        set_optimizer_state_dict(model, optimizer, state, options=_full_state_options(load=True))

    def load_model_state(self, model: torch.nn.Module, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        _reshard(model)
        set_model_state_dict(model, state, options=_full_state_options(load=True, strict=False))

    def full_model_state(self, model: torch.nn.Module) -> Optional[dict]:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        _reshard(model)
        return get_model_state_dict(model, options=_full_state_options())


@contextlib.contextmanager
def _no_gradient_sync(model: torch.nn.Module) -> Iterator[None]:
    from torch.distributed.fsdp import FSDPModule

    assert isinstance(model, FSDPModule), "fully_shard wraps the model first"
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _reshard(model: Optional[torch.nn.Module]) -> torch.nn.Module:
    """Put the shards back in place. shard_grad_op keeps the gathered weights after an
    evaluation forward (no backward follows to free them), and state-dict functions and the
    optimizer expect the sharded parameters."""
    from torch.distributed.fsdp import FSDPModule

    assert model is not None, "shard_model runs first"
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
    return model


def _full_state_options(load: bool = False, strict: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Saving: gathered to rank 0, in CPU memory. Loading: every rank read the full file.
    return StateDictOptions(full_state_dict=True, cpu_offload=not load, strict=strict)
