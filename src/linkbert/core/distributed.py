"""Process set-up: one process (CPU or one GPU), or `torchrun` with DDP, fairscale or PyTorch FSDP.

`DistState` is the engine's only view of how many processes there are and how the model is
wrapped, so the loop reads the same for every set-up:

    python -m linkbert.seqcls.run_seqcls ...                                  # one process
    torchrun --nproc_per_node 4 -m linkbert.seqcls.run_seqcls ...             # DDP over 4 GPUs
    torchrun --nproc_per_node 4 -m linkbert.seqcls.run_seqcls ... --sharded_ddp simple     # fairscale OSS
    torchrun --nproc_per_node 4 -m linkbert.seqcls.run_seqcls ... --fsdp full_shard        # PyTorch FSDP2
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 \
        --nproc_per_node 8 -m linkbert.seqcls.run_seqcls ...                  # two nodes (run on each)

Every mode trains the same model as one process with the same global batch: rank r takes
positions r, r+W, ... of the one seeded order, gradients are averaged over ranks, and saved
models and checkpoints are full, ordinary files (gathered to rank 0).

The engine calls, in order: `shard_model` (FSDP: parameters become shards, before the
optimizer is built on them), `make_optimizer`, `wrap_model` (DDP / ShardedDDP, which needs the
optimizer), `wrap_scaler`; then per micro-batch `no_sync`, per update `clip_grad_norm`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .args import TrainingArguments
from .optim import optimizer_class

logger = logging.getLogger("linkbert")

FSDP2 = ("full_shard", "shard_grad_op")              # --fsdp: PyTorch's fully_shard
FAIRSCALE_FSDP = ("zero_dp_2", "zero_dp_3", "offload")  # --sharded_ddp: fairscale, CUDA only


class DistState:
    def __init__(self, args: TrainingArguments) -> None:
        self.args = args
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", str(max(args.local_rank, 0))))
        use_cuda = torch.cuda.is_available() and not args.use_cpu
        if use_cuda:
            self.device = torch.device("cuda", self.local_rank if self.world_size > 1 else torch.cuda.current_device())
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world_size > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
        if not self.is_main:
            _quiet_logging()
        # "" = DDP (or one process); "simple" = fairscale OSS + ShardedDDP; zero_dp_2/zero_dp_3/
        # offload = fairscale FSDP; full_shard/shard_grad_op = PyTorch FSDP2.
        self.mode = args.fsdp or args.sharded_ddp or ""
        if self.mode and self.world_size == 1:
            logger.info("--%s %s has nothing to shard in one process: training without it (start with torchrun "
                        "to use several)", "fsdp" if args.fsdp else "sharded_ddp", self.mode)
            self.mode = ""
        self.sharded_model: Optional[torch.nn.Module] = None  # FSDP2: needed to name optimizer state

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def print0(self, message: str) -> None:
        if self.is_main:
            logger.info(message)

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    @contextlib.contextmanager
    def main_process_first(self):
        """Rank 0 runs the block first (e.g. tokenising into the `datasets` cache), then the
        other ranks run it (reading the cache instead of redoing the work)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's value on every rank (e.g. the checkpoint rank 0 decided to resume from)."""
        if self.world_size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    # -- data -------------------------------------------------------------------------------
    def shard(self, order: list[int], batch_size: int) -> list[int]:
        """This rank's part of an epoch order: rank r takes positions r, r+W, r+2W... so that
        micro-batch i of every rank together is micro-batch i of a one-process run with a
        W-times larger batch. The order is padded by wrapping around, as DistributedSampler,
        so every rank runs the same number of micro-batches."""
        if self.world_size == 1:
            return order
        total = -(-len(order) // self.world_size) * self.world_size
        padded = order + order[: total - len(order)]
        return padded[self.rank::self.world_size]

    def shard_eval(self, order: list[int]) -> list[int]:
        """Evaluation: rank r takes positions r, r+W, ... Ranks left one short repeat order[0]
        (rank 0's feature) so every rank runs the same number of batches, which FSDP needs
        (each forward is a collective); `gather_outputs` keeps rank 0's copy of it."""
        if self.world_size == 1:
            return order
        mine = order[self.rank::self.world_size]
        per_rank = -(-len(order) // self.world_size)
        return mine + order[:1] * (per_rank - len(mine))

    def gather_outputs(self, outputs: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Every rank's outputs, keyed by feature index; the first rank's copy of a repeat wins."""
        if self.world_size == 1:
            return outputs
        parts: list = [None] * self.world_size
        torch.distributed.all_gather_object(parts, outputs)
        merged: dict[int, np.ndarray] = {}
        for part in parts:
            for index, value in part.items():
                merged.setdefault(index, value)
        return merged

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return value
        value = value.detach().clone()
        torch.distributed.all_reduce(value)
        return value

    @property
    def can_save_pending_gradients(self) -> bool:
        """FSDP2 keeps gradients inside its shards (a checkpoint cannot hold left-over ones)."""
        return not (self.world_size > 1 and self.mode in FSDP2)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return value
        value = value.detach().clone()
        torch.distributed.all_reduce(value)
        return value / self.world_size

    # -- model and optimizer ----------------------------------------------------------------
    def shard_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """FSDP only: split the parameters over ranks (each transformer block is one unit, so
        only one block's full weights exist at a time). Must run before the optimizer is built."""
        if self.mode in FSDP2:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            mesh = init_device_mesh(self.device.type, (self.world_size,))
            # shard_grad_op keeps the gathered weights from forward to backward (ZeRO-2).
            reshard = self.mode == "full_shard"
            for blocks, i in _transformer_blocks(model):
                fully_shard(blocks[i], mesh=mesh, reshard_after_forward=reshard)
            fully_shard(model, mesh=mesh, reshard_after_forward=reshard)  # in place: same object
            self.sharded_model = model
            return model
        if self.mode in FAIRSCALE_FSDP:
            from fairscale.nn.data_parallel import FullyShardedDataParallel

            offload = self.mode == "offload"
            # flatten_parameters=False keeps one tensor per parameter, so biases and LayerNorm
            # weights stay out of weight decay (4.9.1 flattened them and decayed everything).
            options = dict(reshard_after_forward=self.mode != "zero_dp_2", move_params_to_cpu=offload,
                           mixed_precision=self.args.fp16, flatten_parameters=False)
            if offload:
                model = model.cpu()  # fairscale keeps the shards on the CPU and computes on the GPU
            for blocks, i in _transformer_blocks(model):
                blocks[i] = FullyShardedDataParallel(blocks[i], **options)
            return FullyShardedDataParallel(model, **options)
        return model

    def make_optimizer(self, groups: list[dict], **kwargs) -> torch.optim.Optimizer:
        optim, extra = optimizer_class(self.args.optim, self.device)
        if self.mode == "simple":
            from fairscale.optim import OSS

            # Each rank keeps the AdamW state of its share of the parameters (ZeRO-1).
            return OSS(groups, optim=optim, **extra, **kwargs)
        return optim(groups, **extra, **kwargs)

    def wrap_model(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> torch.nn.Module:
        """The module the training loop calls (`model` itself stays the plain, saveable one)."""
        if self.world_size == 1 or self.mode in FSDP2 + FAIRSCALE_FSDP:
            return model  # one process, or already sharded by shard_model
        if self.mode == "simple":
            from fairscale.nn.data_parallel import ShardedDataParallel

            # reduce_buffer_size=0: with its default buckets ShardedDDP gave silently wrong
            # gradients on gloo (test_distributed fails with them); without, it is exact.
            return ShardedDataParallel(model, optimizer, reduce_buffer_size=0)
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def wrap_scaler(self, scaler: torch.amp.GradScaler) -> torch.amp.GradScaler:
        """fp16 with sharded gradients: every rank must agree on skipping a step (each sees only
        its shard's inf/NaN). DDP's gradients are already equal on every rank; FSDP2's DTensor
        gradients make the scaler's inf check a collective by themselves."""
        if not scaler.is_enabled() or self.mode not in ("simple",) + FAIRSCALE_FSDP:
            return scaler
        if self.device.type == "cuda":
            from fairscale.optim.grad_scaler import ShardedGradScaler

            return ShardedGradScaler()
        return _RankSyncedGradScaler("cpu")  # fairscale's scaler is CUDA-only (a no-op on CPU)

    def no_sync(self, model: torch.nn.Module, enabled: bool):
        """Skip the gradient reduction on micro-batches that do not end an update."""
        if not enabled or self.world_size == 1:
            return contextlib.nullcontext()
        if self.mode in FSDP2:
            return _fsdp2_no_sync(model)
        return model.no_sync() if hasattr(model, "no_sync") else contextlib.nullcontext()

    def clip_grad_norm(self, model: torch.nn.Module, optimizer, max_norm: float) -> None:
        """The norm over all gradients of all ranks, as one process would compute it."""
        if self.mode == "simple":
            optimizer.clip_grad_norm(max_norm)  # each rank holds only its shard's gradients
        elif self.mode in FAIRSCALE_FSDP:
            model.clip_grad_norm_(max_norm)
        else:  # one process, DDP, and FSDP2 (DTensor gradients reduce the norm themselves)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)

    # -- state: full on rank 0 when saving, whatever the wrapping ---------------------------
    def optimizer_state(self, optimizer) -> Optional[dict]:
        """The full optimizer state (call on every rank; meaningful on rank 0). One process,
        DDP and `simple` give torch's ordinary format; FSDP2 keys it by parameter name."""
        if self.mode == "simple":
            optimizer.consolidate_state_dict(recipient_rank=0)
            return optimizer.state_dict() if self.is_main else None
        if self.mode in FSDP2:
            from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

            _reshard(self.sharded_model)
            return get_optimizer_state_dict(self.sharded_model, optimizer, options=_full_state_options())
        if self.mode in FAIRSCALE_FSDP:
            return self._fairscale_optimizer_state(optimizer, gather=True)
        return optimizer.state_dict()

    def load_optimizer_state(self, optimizer, state: dict) -> None:
        """Load a full state (every rank read the same file) and keep this rank's part."""
        if self.mode in FSDP2:
            from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

            _reshard(self.sharded_model)
            set_optimizer_state_dict(self.sharded_model, optimizer, state, options=_full_state_options(load=True))
        elif self.mode in FAIRSCALE_FSDP:
            optimizer.load_state_dict(self._fairscale_optimizer_state(optimizer, gather=False, full=state))
        else:  # OSS.load_state_dict keeps this rank's partition of a full state by itself
            optimizer.load_state_dict(state)

    def load_model_state(self, model: torch.nn.Module, state: dict) -> None:
        """Load full weights (a saved model's safetensors) into the model, sharded or not."""
        if self.mode in FSDP2:
            from torch.distributed.checkpoint.state_dict import set_model_state_dict

            _reshard(model)
            set_model_state_dict(model, state, options=_full_state_options(load=True, strict=False))
        else:  # one process, DDP, simple; fairscale FSDP's load_state_dict shards a full state itself
            # Not strict: wrapped models name their tensors differently. The core checks a
            # checkpoint's tensors against the model's before loading (rundir.check_weights).
            model.load_state_dict(state, strict=False)

    def save_pretrained(self, model: torch.nn.Module, path: str | Path) -> None:
        """An ordinary `save_pretrained` folder from rank 0 (float32 safetensors), whatever
        the wrapping: sharded weights are gathered first (every rank takes part)."""
        state = None
        if self.mode in FSDP2:
            from torch.distributed.checkpoint.state_dict import get_model_state_dict

            _reshard(model)
            state = get_model_state_dict(model, options=_full_state_options())
        elif self.mode in FAIRSCALE_FSDP:
            state = {k: v.cpu() for k, v in model.state_dict().items()}  # full on every rank
        if self.is_main:
            _unwrap(model).save_pretrained(path, state_dict=state, safe_serialization=True)
        self.barrier()

    def _fairscale_optimizer_state(self, optimizer, gather: bool, full: Optional[dict] = None) -> Optional[dict]:
        """fairscale FSDP without flattening: each parameter holds a padded 1-D chunk of its
        flattened weight (torch.chunk over ranks), and so do AdamW's moments. `gather` joins
        the chunks into full tensors (rank 0 returns them); otherwise `full` is cut back to
        this rank's chunks."""
        state = optimizer.state_dict() if gather else full
        params = [p for group in optimizer.param_groups for p in group["params"]]
        comm = self.device if self.device.type == "cuda" else torch.device("cpu")
        for index, p in enumerate(params):
            if not getattr(p, "_is_sharded", False) or index not in state["state"]:
                continue
            entry = dict(state["state"][index])  # a copy: state_dict() shares the live per-param dicts
            for key, value in list(entry.items()):
                if key == "step" or not torch.is_tensor(value) or value.dim() == 0:
                    continue
                if gather:
                    parts = [torch.empty_like(value, device=comm) for _ in range(self.world_size)]
                    torch.distributed.all_gather(parts, value.to(comm))
                    entry[key] = torch.cat(parts)[: p._orig_size.numel()].view(p._orig_size).cpu()
                else:
                    chunk = value.flatten().chunk(self.world_size)
                    mine = chunk[self.rank] if self.rank < len(chunk) else value.new_empty(0)
                    entry[key] = torch.nn.functional.pad(mine, [0, chunk[0].numel() - mine.numel()]).to(p.device)
            state["state"][index] = entry
        return state if (self.is_main or not gather) else None

    def close(self) -> None:
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class _RankSyncedGradScaler(torch.amp.GradScaler):
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


@contextlib.contextmanager
def _fsdp2_no_sync(model: torch.nn.Module):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _reshard(model: torch.nn.Module) -> None:
    """FSDP2: put the shards back in place. shard_grad_op keeps the gathered weights after an
    evaluation forward (no backward follows to free them), and state-dict functions and the
    optimizer expect the sharded parameters."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def _transformer_blocks(model: torch.nn.Module) -> list[tuple[torch.nn.ModuleList, int]]:
    """(list, index) of every block in the outermost ModuleLists (BERT: encoder.layer)."""
    found: list[tuple[torch.nn.ModuleList, int]] = []
    inside: set[int] = set()
    for module in model.modules():  # pre-order: an outer list comes before anything it holds
        if isinstance(module, torch.nn.ModuleList) and id(module) not in inside:
            inside.update(id(m) for m in module.modules())
            found += [(module, i) for i in range(len(module))]
    return found


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside DDP / ShardedDDP / fairscale FSDP wrappers."""
    while not hasattr(type(model), "save_pretrained") and hasattr(model, "module"):
        model = model.module
    return model


def _full_state_options(load: bool = False, strict: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Saving: gathered to rank 0, in CPU memory. Loading: every rank read the full file.
    return StateDictOptions(full_state_dict=True, cpu_offload=not load, strict=strict)


def _quiet_logging() -> None:
    """Ranks other than 0 log only warnings and errors, and show no progress bars."""
    logger.setLevel(logging.WARNING)
    try:
        import datasets
        import transformers

        transformers.utils.logging.set_verbosity_error()
        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:
        pass
