"""The training engine: one explicit loop, faithful to the transformers 4.9.1 `Trainer` that
produced the paper's numbers (the rules are in `schedule.py`; docs/training_semantics.md has
their sources):

- each micro-batch loss is divided by the accumulation count; the optimizer steps every
  `accumulation` micro-batches (see `schedule.is_update_step`); left-over micro-batches of a
  longer epoch carry their gradients into the next update;
- fp16: autocast + GradScaler, and a step the scaler skips does not advance the schedule;
- evaluation never touches the training RNG (dropout masks stay the same with or without it).

The GPU never waits for the host at an update: the losses stay on the device and are read at
logging, saving and evaluation boundaries; what the host must know for the next update (an fp16
step skipped, a stop vote of another rank) is copied without blocking and read one update later.
Under --fp16 that copy is needed: whether update k was skipped decides update k+1's learning
rate and AdamW step count. The scaler's scale is read only when a step was skipped (to say so).
torch's GradScaler itself reads its inf check on the host at every step unless the optimizer
is fused (`adamw_hf` and `adamw_torch_fused` are, where the build has the kernel: then the
kernel skips the update on the device).

    engine = Engine(model, task, ctx, args, dist, reporter, folder)   # ctx: what the core resolved
    metrics = engine.train(features, seed, evaluate, resume)  # resume: a LoadedCheckpoint, read by the core
    outputs = engine.predict(features)        # one array per feature, in its computed dtype

The engine holds the loop and what the loop needs; its parts are small named pieces elsewhere:
batches and prediction (`Feeder`, batching.py), epoch orders (schedule.py), the optimizer
(optim.py), checkpoint content (checkpoint.py), fp16 skips and stop votes (steps.py), the best
model (best_model.py), and the folder it writes into (`RunFolder`, rundir.py).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, cast

import numpy as np
import torch
from tqdm.auto import tqdm

from . import padding_free
from .args import Precision, TrainingArguments
from .batching import Feeder
from .best_model import BestModel
from .checkpoint import LoadedCheckpoint, TrainState, pending_gradients, restore, write_checkpoint_files
from .distributed import DistState
from .errors import UserError
from .optim import build_optimizer
from .report import Reporter
from .rundir import BEST_MODEL_DIR, RunFolder
from .schedule import EpochBatches, epoch_orders, is_update_step, num_epochs_to_run, total_updates, warmup_updates
from .steps import Fp16Skips, StopOnSignal, StopVotes, TrainingInterrupted
from .task import Task, TaskContext
from .throughput import Throughput

logger = logging.getLogger("linkbert")

__all__ = ["Engine", "StopOnSignal", "TrainPlan", "TrainingInterrupted"]


class OneUpdateLate:
    """A few numbers of one update, copied to the host without blocking (pinned memory on CUDA)
    and read just before the next update's step, by when the GPU has long computed them."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._pending: Optional[tuple[torch.Tensor, Any, int]] = None

    def put(self, values: torch.Tensor, update: int) -> None:
        event = None
        if self.device.type == "cuda":
            host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            host.copy_(values, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host = values
        self._pending = (host, event, update)

    def take(self) -> Optional[tuple[list[float], int]]:
        if self._pending is None:
            return None
        host, event, update = self._pending
        self._pending = None
        if event is not None:
            event.synchronize()
        return host.tolist(), update


@dataclass
class TrainPlan:
    """The run's batch and step arithmetic, derived from the arguments (never from a checkpoint)."""

    examples: int
    per_rank_batch: int
    world_size: int
    accumulation: int
    max_steps: int
    num_epochs: int
    warmup: int = 0
    steps_cut: bool = False  # --max_steps ends the training before its epochs do

    @classmethod
    def for_run(cls, examples: int, args: TrainingArguments, world_size: int) -> "TrainPlan":
        accumulation = args.gradient_accumulation_steps
        num_batches = math.ceil(examples / (args.per_device_train_batch_size * world_size))
        max_steps = total_updates(num_batches, accumulation, args.num_train_epochs, args.max_steps)
        return cls(examples, args.per_device_train_batch_size, world_size, accumulation, max_steps,
                   num_epochs_to_run(num_batches, accumulation, args.num_train_epochs, args.max_steps),
                   warmup_updates(max_steps, args.warmup_steps, args.warmup_ratio),
                   max_steps < total_updates(num_batches, accumulation, args.num_train_epochs))

    def metrics(self, runtime: float, state: TrainState, total_loss: float) -> dict:
        """train_results.json's figures."""
        return {"train_runtime": round(runtime, 4), "train_samples": self.examples,
                "train_samples_per_second": round(self.examples * self.num_epochs / runtime, 3) if runtime > 0 else None,
                "train_loss": total_loss / max(state.global_step, 1), "epoch": round(state.epoch, 2)}

    def banner(self, precision: str, device: torch.device, noun: str = "examples") -> str:
        """`noun`: what the task's features are (QA's are windows of its questions)."""
        global_micro = self.per_rank_batch * self.world_size
        text = (f"***** Running training *****\n"
                f"  Num {noun} = {self.examples}\n  Num epochs = {self.num_epochs}\n"
                f"  Micro-batch per device = {self.per_rank_batch}, processes = {self.world_size}, "
                f"accumulation = {self.accumulation}\n"
                f"  Global batch = {self.per_rank_batch} x {self.world_size} x {self.accumulation} = "
                f"{global_micro * self.accumulation}\n"
                f"  Optimization steps = {self.max_steps}, warm-up steps = {self.warmup}\n"
                f"  Precision = {precision}, device = {device}")
        if self.world_size > 1:
            text += (f"\n  Note: {self.world_size} processes multiply the paper's one-GPU global batch; divide "
                     f"--per_device_train_batch_size or --gradient_accumulation_steps by {self.world_size} to keep it.")
        return text


class Engine:
    def __init__(self, model: torch.nn.Module, task: Task, ctx: TaskContext, args: TrainingArguments,
                 dist: DistState, reporter: Optional[Reporter] = None, folder: Optional[RunFolder] = None) -> None:
        self.task, self.ctx, self.args, self.dist, self.reporter = task, ctx, args, dist, reporter
        self.folder = folder  # where checkpoints and the best model go (None: nowhere)
        self.wrapping, self.device = dist.wrapping, dist.device  # the model's wrapping over the ranks; its device
        self.model = model.to(self.device)
        self.state = TrainState()
        self.autocast_dtype = args.precision.autocast_dtype
        self.throughput = Throughput(self.model, self.device, args.precision.value)  # tokens/s and MFU in the log
        # run.py decides an unset --padding_free (padding_free.default_for); an engine runs on a bool.
        assert args.padding_free is not None, "resolve --padding_free (run.resolve_padding_free) first"
        if args.padding_free:  # the model computes on real tokens only; batches arrive packed
            padding_free.enable(self.model)
        self.feeder = Feeder(task, ctx, args.padding_free, args.dataloader_num_workers, self.device)
        self.run_identity: Optional[dict] = None  # written into every checkpoint (see rundir.py)
        # What the loop holds; `train` makes the optimizer, schedule and wrapped model (after sharding).
        self.plan: Optional[TrainPlan] = None
        self.evaluate: Optional[Callable[[], dict]] = None
        self.optimizer: torch.optim.Optimizer = cast(torch.optim.Optimizer, None)
        self.scheduler: Any = None
        self.skips = Fp16Skips(self.wrapping, self.device, args.precision is Precision.FP16)
        self.scaler = self.skips.scaler
        self.train_model = self.model
        # On the device until a boundary reads them: the loss of the micro-batches since the last update
        # (left-overs of an epoch carry over, like their gradients), and the sum of update losses (float64:
        # the sum must not depend on where a resumed run's boundaries fell).
        self.micro_loss = torch.zeros((), device=self.device)
        self.unread_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self.late = OneUpdateLate(self.device)
        self.votes = StopVotes(self.device, dist.world_size)
        self.best = BestModel(args.metric_for_best_model, args.greater_is_better, task.main_metric)
        self.bar = tqdm(disable=True)

    def autocast(self, enabled: bool = True):
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=enabled and self.autocast_dtype is not None)

    # -- training ---------------------------------------------------------------------------
    def train(self, features, seed: int, evaluate: Optional[Callable[[], dict]] = None,
              resume: Optional[LoadedCheckpoint] = None) -> dict:
        args, dist = self.args, self.dist
        self.plan = plan = TrainPlan.for_run(len(features), args, dist.world_size)
        self.evaluate = evaluate
        if args.gradient_checkpointing:
            enable_activation_checkpointing(self.model)
        # A sharded wrapping turns the parameters into shards: before the optimizer is built on them.
        self.model = self.wrapping.shard_model(self.model)
        self.optimizer, self.scheduler = build_optimizer(self.model, args, self.wrapping, plan.max_steps, plan.warmup)
        self.skips = Fp16Skips(self.wrapping, self.device, args.precision is Precision.FP16)  # a fresh scale per training
        self.scaler = self.skips.scaler
        self.train_model = self.wrapping.wrap_model(self.model, self.optimizer)
        if args.torch_compile:
            self.train_model = cast(torch.nn.Module, torch.compile(self.train_model))  # an OptimizedModule
        lengths = self.feeder.lengths(features) if args.group_by_length else None
        orders = epoch_orders(len(features), seed, lengths, args.per_device_train_batch_size * dist.world_size)
        if resume is not None:
            self.state = restore(resume, self.model, self.optimizer, self.scheduler, self.scaler, self.wrapping)
            del resume  # the loaded contents are not held through the loop
        # Derived from this run's arguments, whatever the checkpoint said.
        self.state.max_steps, self.state.num_train_epochs = plan.max_steps, plan.num_epochs
        dist.print0(plan.banner(args.precision.value, self.device, self.task.feature_noun))
        state = self.state
        self.micro_loss = torch.full((), state.pending_loss, device=self.device)
        self.train_model.train()
        start = time.time()
        self.bar = tqdm(total=plan.max_steps, initial=state.global_step, desc="train",
                        disable=args.disable_tqdm or not dist.is_main, dynamic_ncols=True)
        with self.votes.signals, self.bar:  # the bar closes however the loop ends
            for epoch in range(plan.num_epochs):
                order = next(orders)  # drawn for every epoch, also those a resumed run has done
                if epoch < state.epochs_done:
                    continue
                if state.global_step >= plan.max_steps or not self._train_epoch(features, order, epoch):
                    break
                self._end_epoch(epoch)
            self._settle()
        # As the original, the reported training loss also counts left-over micro-batches.
        metrics = plan.metrics(time.time() - start, state, state.loss_sum + dist.mean(self.micro_loss).item())
        metrics.update(self.throughput.summary())
        self.log(dict(metrics))
        if args.load_best_model_at_end:
            self.load_best_model()
        return metrics

    def _train_epoch(self, features, order: np.ndarray, epoch: int) -> bool:
        """The rest of one epoch; False when --max_steps ended it early."""
        plan = cast(TrainPlan, self.plan)
        skip = self.state.steps_in_epoch_done
        batches = EpochBatches(self.dist.shard(order, plan.per_rank_batch), plan.per_rank_batch, skip)
        if self.feeder.set_collator_epoch is not None:  # before the loader: its workers copy the collator
            self.feeder.set_collator_epoch(epoch)
        for step, batch in enumerate(self.feeder.loader(features, batches), start=skip):
            update = is_update_step(step, batches.in_epoch, plan.accumulation)
            self.throughput.count(batch)
            with self.wrapping.no_sync(self.train_model, enabled=not update):
                with self.autocast():
                    loss = self.train_model(**self.feeder.to_device(batch)).loss
                loss = loss / plan.accumulation
                self.scaler.scale(loss).backward()
            self.micro_loss += loss.detach()
            self.state.steps_in_epoch_done = step + 1
            if update:
                self.optimizer_step()
                # Counted in the whole epoch's micro-batches: the same figure after a resume.
                self._after_update(epoch + (step + 1) / batches.in_epoch)
                if self.state.global_step >= plan.max_steps:
                    return False
        return True

    def optimizer_step(self) -> None:
        """Clip, step (or, under fp16, let the scaler skip the step), advance the schedule."""
        self._settle_late()  # the previous update's skip decides its schedule step, before this one's
        if self.args.max_grad_norm and self.args.max_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            self.wrapping.clip_grad_norm(self.train_model, self.optimizer, self.args.max_grad_norm)
        # The scale lives on the device: compared there, read by the host only with the late values.
        scale_before = self.skips.scale_before_step()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.unread_loss += self.micro_loss
        self.micro_loss = torch.zeros((), device=self.device)
        if scale_before is None and self.dist.world_size == 1:
            self.scheduler.step()  # nothing the host must wait for
            return
        self.votes.mark()
        skipped = self.skips.skipped(scale_before, self.device)
        self.late.put(torch.stack([skipped, self.dist.sum(self.votes.mine)]), self.state.global_step + 1)

    def _settle_late(self) -> None:
        """Act on the last update's skip flag and stop votes (read one update late)."""
        taken = self.late.take()
        if taken is not None:
            (skipped, votes), update = taken
            self.votes.count(votes)
            self.skips.settle(bool(skipped), update, self.optimizer, self.scheduler, self.state)

    def _settle(self) -> None:
        """At a boundary (log, save, evaluation, end): read what the device holds. A NaN/inf loss stops the
        run before a checkpoint saves spoiled weights (under fp16 the scaler skips and lowers the scale)."""
        self._settle_late()
        value = self.dist.mean(self.unread_loss).item()
        self.unread_loss.zero_()
        self.state.loss_sum += value
        if not self.scaler.is_enabled() and not math.isfinite(value):
            raise UserError("non_finite_loss", f"the training loss is {value} in the updates up to "
                            f"{self.state.global_step}; lower --learning_rate, check the data, or use fp32 instead "
                            "of --bf16. Checkpoints already written are kept.")

    def _after_update(self, epoch: float) -> None:
        args, state = self.args, self.state
        state.global_step += 1
        state.epoch = epoch
        self.bar.update(1)
        step = state.global_step
        if step == 1 and args.logging_first_step or step % args.logging_steps == 0:
            self._log_loss()
        if args.eval_strategy == "steps" and step % (args.eval_steps or args.logging_steps) == 0:
            self._evaluate_during_training()
        saved = self.save_checkpoint() if args.save_strategy == "steps" and step % args.save_steps == 0 \
            and self.folder else None
        if self.votes.asked():
            self._interrupt(saved)

    def _end_epoch(self, epoch: int) -> None:
        state = self.state
        state.epochs_done, state.steps_in_epoch_done, state.epoch = epoch + 1, 0, float(epoch + 1)
        if self.args.eval_strategy == "epoch":
            self._evaluate_during_training()
        saved = self.save_checkpoint() if self.args.save_strategy == "epoch" and self.folder else None
        if self.votes.asked():
            self._interrupt(saved)

    def _interrupt(self, saved: Optional[Path]) -> None:
        # A stop between the checkpoints --save_strategy asks for writes one only to resume from.
        saved = saved or (self.save_checkpoint(resume_only=True) if self.folder else None)
        raise TrainingInterrupted(self.votes.signals.name or "SIGTERM (on another rank)", self.state.global_step, saved)

    def _log_loss(self) -> None:
        self._settle()
        state = self.state
        mean_loss = (state.loss_sum - state.logged_loss_sum) / max(state.global_step - state.last_logged_step, 1)
        entry = {"loss": round(mean_loss, 4), "learning_rate": self.scheduler.get_last_lr()[0],
                 "epoch": round(state.epoch, 2)}
        if state.skipped_updates:
            entry["skipped_updates"] = state.skipped_updates
        self.log({**entry, **self.throughput.report()})
        self.bar.set_postfix(loss=f"{mean_loss:.4f}")
        state.logged_loss_sum, state.last_logged_step = state.loss_sum, state.global_step

    def _evaluate_during_training(self) -> None:
        if self.evaluate is None:
            return
        metrics = self.evaluate()
        self.log({**metrics, "epoch": round(self.state.epoch, 2)})
        if self.args.load_best_model_at_end and self.folder and self.best.improves(metrics, self.state.best_metric):
            self.state.best_metric = metrics[self.best.key]
            self.state.best_checkpoint = str(self.save_model_into(self.folder, "the best model", BEST_MODEL_DIR))
        self.train_model.train()

    def load_best_model(self) -> None:
        self.best.load(self.state, self.folder, lambda weights: self.wrapping.load_model_state(self.model, weights))

    def log(self, entry: dict) -> None:
        entry = {**entry, "step": self.state.global_step}
        self.state.log_history.append(entry)
        if self.dist.is_main:
            logger.info("%s", entry)
            if self.reporter is not None:
                self.reporter.log(entry, self.state.global_step)

    def predict(self, features, desc: str = "predict") -> list[np.ndarray]:
        """Model outputs per feature, in feature order (`Feeder.predict`); `desc` labels the bar (dev, test)."""
        return self.feeder.predict(self.model, features, self.feeder.loader, self.dist, self.args.per_device_eval_batch_size,
                                   self.autocast, not self.args.disable_tqdm and self.dist.is_main, desc)

    # -- checkpoints ------------------------------------------------------------------------
    def save_model(self, path: str | Path, tokenizer=None) -> None:
        """A full, ordinary `save_pretrained` folder (float32 safetensors + tokenizer)."""
        self.wrapping.save_pretrained(self.model, path)
        if tokenizer is not None and self.dist.is_main:
            tokenizer.save_pretrained(path)

    def save_model_into(self, folder: RunFolder, what: str, into: str = "") -> Path:
        """The model (and tokenizer) saved into the run folder, or its subfolder `into`."""
        need = sum(p.numel() * 4 for p in self.model.parameters()) >> 20
        return folder.write_model(lambda path: self.save_model(path, self.ctx.tokenizer), what, need, into)

    def save_checkpoint(self, resume_only: bool = False) -> Path:
        """checkpoint-N (see checkpoint.py), after reading the loss totals: a NaN loss stops the run before
        its weights are saved. Written through `RunFolder.write_checkpoint` (a full disk: one error);
        `resume_only`: a signal's stop wrote it, not --save_strategy (removed once the run finished)."""
        assert self.folder is not None, "a checkpoint needs a run folder"
        self._settle()
        self.state.pending_loss = self.dist.mean(self.micro_loss).item()
        optimizer_state = self.wrapping.optimizer_state(self.optimizer)
        pending = pending_gradients(self.model, self.wrapping, self.dist, self.state.pending_loss)

        def write(tmp: Path) -> None:
            self.save_model(tmp, self.ctx.tokenizer)
            if self.dist.is_main:
                write_checkpoint_files(tmp, optimizer_state, self.scheduler, self.scaler, self.state, pending,
                                       self.run_identity)

        need = sum(p.numel() * 4 * 3 for p in self.model.parameters()) >> 20  # weights + two Adam moments
        folder = self.folder.write_checkpoint(self.state.global_step, write, self.dist.broadcast_object, need,
                                              self.args.save_total_limit, self.state.best_checkpoint,
                                              self.run_identity, resume_only)
        self.dist.barrier()
        logger.info("Saved checkpoint %s", folder)
        return folder


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    # transformers 5 renamed it (the old name warns, and goes in v6); older releases lack the new one.
    enable = getattr(model, "activation_checkpointing_enable", None) or getattr(model, "gradient_checkpointing_enable")
    enable()
