"""Process set-up: one process (CPU or one GPU), or `torchrun` with DDP.

`DistState` is the engine's only view of how many processes there are and how the model is
wrapped, so the loop reads the same for every set-up:

    torchrun --nproc_per_node 4 -m linkbert.seqcls.run_seqcls ...   # DDP over 4 GPUs
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .args import TrainingArguments

logger = logging.getLogger("linkbert")


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
            if args.tf32:
                torch.backends.cuda.matmul.allow_tf32 = True
                torch.backends.cudnn.allow_tf32 = True
        else:
            self.device = torch.device("cpu")
        if self.world_size > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
        self.reporter = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def print0(self, message: str) -> None:
        if self.is_main:
            logger.info(message)

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    # -- data -------------------------------------------------------------------------------
    def shard(self, order: list[int], batch_size: int) -> list[int]:
        """This rank's part of an epoch order: rank r takes positions r, r+W, r+2W... so that
        micro-batch i of every rank together is micro-batch i of a one-process run with a
        W-times larger batch. The order is padded by wrapping around, as DistributedSampler."""
        if self.world_size == 1:
            return order
        total = -(-len(order) // self.world_size) * self.world_size
        padded = order + order[: total - len(order)]
        return padded[self.rank::self.world_size]

    def shard_eval(self, order: list[int]) -> list[int]:
        """Evaluation: every feature exactly once over all ranks (no padding duplicates)."""
        return order if self.world_size == 1 else order[self.rank::self.world_size]

    def gather_outputs(self, outputs: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        if self.world_size == 1:
            return outputs
        parts: list = [None] * self.world_size
        torch.distributed.all_gather_object(parts, outputs)
        merged: dict[int, np.ndarray] = {}
        for part in parts:
            merged.update(part)
        return merged

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return value
        value = value.detach().clone()
        torch.distributed.all_reduce(value)
        return value / self.world_size

    # -- model and optimizer ----------------------------------------------------------------
    def make_optimizer(self, groups: list[dict], **kwargs) -> torch.optim.Optimizer:
        # The fused kernel where this torch build has it for the device (CUDA, and CPU in
        # recent releases): same update rule, fewer kernel launches.
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.AdamW(groups, **kwargs)

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        self.wrapped = model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.wrapped = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return self.wrapped

    def wrap_scaler(self, scaler):
        return scaler

    def no_sync(self, model: torch.nn.Module, enabled: bool):
        """Skip the gradient all-reduce on micro-batches that do not end an update."""
        if enabled and self.world_size > 1 and hasattr(model, "no_sync"):
            return model.no_sync()
        return contextlib.nullcontext()

    def clip_grad_norm(self, model: torch.nn.Module, optimizer, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)

    def optimizer_state(self, optimizer) -> dict:
        return optimizer.state_dict()

    def load_optimizer_state(self, optimizer, state: dict) -> None:
        optimizer.load_state_dict(state)

    def load_model_state(self, model: torch.nn.Module, state: dict) -> None:
        model.load_state_dict(state, strict=False)

    def save_pretrained(self, model: torch.nn.Module, path: str | Path) -> None:
        if self.is_main:
            model.save_pretrained(path, safe_serialization=True)
        self.barrier()

    # -- reporting --------------------------------------------------------------------------
    def setup_reporting(self, args: TrainingArguments, config: dict) -> None:
        if not self.is_main or args.report_to == "none":
            return
        if args.report_to == "wandb":
            import wandb  # WANDB_MODE=offline keeps everything on this machine

            wandb.init(project=os.environ.get("WANDB_PROJECT", "linkbert"), name=args.run_name,
                       dir=args.output_dir, config=config)
            self.reporter = ("wandb", wandb)
        elif args.report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.reporter = ("tensorboard", SummaryWriter(args.logging_dir or os.path.join(args.output_dir, "runs")))

    def report(self, entry: dict, step: int) -> None:
        if self.reporter is None:
            return
        kind, handle = self.reporter
        numbers = {k: v for k, v in entry.items() if isinstance(v, (int, float)) and k != "step"}
        if kind == "wandb":
            handle.log(numbers, step=step)
        else:
            for key, value in numbers.items():
                handle.add_scalar(key, value, step)

    def close(self) -> None:
        if self.reporter is not None:
            kind, handle = self.reporter
            handle.finish() if kind == "wandb" else handle.close()
            self.reporter = None
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
