"""The training engine: one explicit loop, faithful to the transformers 4.9.1 `Trainer` that
produced the paper's numbers (see `training_semantics.md` in the project notes):

- updates per epoch = len(dataloader) // accumulation (at least 1); total = ceil(epochs x that),
  or --max_steps; warm-up = warmup_steps, else ceil(warmup_ratio x total);
- each micro-batch loss is divided by the accumulation count; the optimizer steps every
  `accumulation` micro-batches, or at the end of an epoch no longer than `accumulation`;
  left-over micro-batches of a longer epoch carry their gradients into the next update;
- the training order comes from a generator seeded with the first int64 drawn after
  `torch.manual_seed(seed)`, iterated as torch's RandomSampler iterates it;
- fp16: autocast + GradScaler, and a step the scaler skips does not advance the schedule;
- evaluation never touches the training RNG (dropout masks stay the same with or without it).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .args import TrainingArguments
from .distributed import DistState
from .errors import UserError
from .results import read_json, write_json
from .task import MODEL_INPUTS, Task

logger = logging.getLogger("linkbert")

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
BEST_MODEL_DIR = "best_model"
# fp16: after this many skipped steps in a row the loss scale has fallen by 2^N: give up.
MAX_CONSECUTIVE_SKIPS = 25


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT arrived: the current update was finished and a checkpoint written."""

    def __init__(self, signal_name: str, step: int, checkpoint: Optional[Path]) -> None:
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        where = f"checkpoint {checkpoint} written" if checkpoint else "no output folder to checkpoint into"
        super().__init__(f"{signal_name} received: stopped after update {step}, {where}. Run the same command "
                         "again (without --overwrite_output_dir, or with --resume_from_checkpoint) to continue.")


class StopOnSignal:
    """While training, SIGTERM (cluster pre-emption) and SIGINT (Ctrl-C) only set a flag: the
    loop finishes its current update, writes a checkpoint and stops. A second signal stops at once."""

    def __init__(self) -> None:
        self.received: bool = False
        self.name = ""
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.received:  # asked twice: do not wait any longer
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.received, self.name = True, signal.Signals(signum).name
        logger.warning("%s received: finishing the current update, then writing a checkpoint and stopping "
                       "(send it again to stop at once)", self.name)

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# -- step arithmetic (the original's rules; tested on the worked examples) ---------------------
def updates_per_epoch(num_batches: int, accumulation: int) -> int:
    return max(num_batches // accumulation, 1)


def total_updates(num_batches: int, accumulation: int, epochs: float, max_steps: int = -1) -> int:
    if max_steps > 0:
        return max_steps
    return math.ceil(epochs * updates_per_epoch(num_batches, accumulation))


def num_epochs_to_run(num_batches: int, accumulation: int, epochs: float, max_steps: int = -1) -> int:
    per_epoch = updates_per_epoch(num_batches, accumulation)
    if max_steps > 0:
        return max_steps // per_epoch + int(max_steps % per_epoch > 0)
    return math.ceil(epochs)


def warmup_updates(total: int, warmup_steps: int, warmup_ratio: float) -> int:
    return warmup_steps if warmup_steps > 0 else math.ceil(warmup_ratio * total)


def is_update_step(step: int, steps_in_epoch: int, accumulation: int) -> bool:
    """Whether micro-batch `step` (0-based) of an epoch ends with an optimizer update."""
    return (step + 1) % accumulation == 0 or (steps_in_epoch <= accumulation and step + 1 == steps_in_epoch)


# -- data order -----------------------------------------------------------------------------
def sampler_seed(seed: int) -> int:
    """The original seeded its sampler's generator with the first int64 drawn after seeding."""
    torch.manual_seed(seed)
    return int(torch.empty((), dtype=torch.int64).random_().item())


def epoch_permutations(n: int, seed: int, epochs: int) -> list[list[int]]:
    """The order of every epoch, exactly as torch's RandomSampler with this generator gives it
    (it draws one extra permutation at the end of each pass, which shifts later epochs)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    sampler = torch.utils.data.RandomSampler(range(n), generator=generator)
    return [list(sampler) for _ in range(epochs)]


def length_grouped(order: list[int], lengths: list[int], batch_size: int, generator: torch.Generator) -> list[int]:
    """Opt-in --group_by_length: within seeded mega-batches of 50 batches, sort by length so a
    batch holds similar lengths; batches are then shuffled with the same generator."""
    mega = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start:start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [i for b in shuffled for i in batches[b]]


@dataclass
class TrainState:
    global_step: int = 0
    epoch: float = 0.0
    epochs_done: int = 0          # complete epochs
    steps_in_epoch_done: int = 0  # micro-batches of the current epoch already consumed
    total_flos: float = 0.0
    log_history: list = field(default_factory=list)
    best_metric: Optional[float] = None
    best_checkpoint: Optional[str] = None
    max_steps: int = 0
    num_train_epochs: int = 0
    loss_sum: float = 0.0          # sum of update losses so far (for the logged means)
    logged_loss_sum: float = 0.0
    last_logged_step: int = 0
    pending_loss: float = 0.0      # loss of left-over micro-batches carried into the next epoch
    skipped_updates: int = 0       # fp16 steps the scaler skipped
    consecutive_skips: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)


class Engine:
    def __init__(self, model: torch.nn.Module, task: Task, args: TrainingArguments, dist: DistState) -> None:
        self.task, self.args, self.dist = task, args, dist
        self.device = dist.device
        self.model = model.to(self.device)
        self.state = TrainState()
        self.autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision)
        pad_multiple = 8 if args.mixed_precision else None
        self.collate = _ModelInputCollator(task.collator(pad_multiple))
        self._length_cache: dict = {}

    # -- helpers ----------------------------------------------------------------------------
    def autocast(self, enabled: bool = True):
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=enabled and self.autocast_dtype is not None)

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _loader(self, features, batches: list[list[int]]) -> DataLoader:
        inputs = features.select_columns([c for c in MODEL_INPUTS if c in features.column_names])
        # Its own generator: creating an iterator then draws no number from the global RNG,
        # so dropout masks do not depend on how often data was loaded (exact resume).
        return DataLoader(inputs, batch_sampler=batches, collate_fn=self.collate,
                          num_workers=self.args.dataloader_num_workers,
                          pin_memory=self.device.type == "cuda", generator=torch.Generator())

    def _lengths(self, features) -> list[int]:
        """Feature lengths, computed once per feature set (a dev set is evaluated many times)."""
        key = getattr(features, "_fingerprint", None) or id(features)
        if key not in self._length_cache:
            lengths: list[int] = []
            for chunk in features.select_columns(["input_ids"]).iter(batch_size=2048):
                lengths += [self.task.feature_length(ids) for ids in chunk["input_ids"]]
            self._length_cache[key] = lengths
        return self._length_cache[key]

    def build_optimizer(self, num_training_steps: int):
        from transformers import get_scheduler

        args = self.args
        no_decay = _no_decay_parameter_names(self.model)
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in params if n not in no_decay], "weight_decay": args.weight_decay},
            {"params": [p for n, p in params if n in no_decay], "weight_decay": 0.0},
        ]
        optimizer = self.dist.make_optimizer(
            groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
        warmup = warmup_updates(num_training_steps, args.warmup_steps, args.warmup_ratio)
        scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=warmup,
                                  num_training_steps=num_training_steps)
        return optimizer, scheduler, warmup

    # -- training ---------------------------------------------------------------------------
    def train(self, features, seed: int, evaluate: Optional[Callable[[], dict]] = None,
              resume_from: Optional[str] = None, output_dir: Optional[str] = None) -> dict:
        args, dist = self.args, self.dist
        n = len(features)
        per_rank_batch = args.per_device_train_batch_size
        global_micro = per_rank_batch * dist.world_size
        num_batches = math.ceil(n / global_micro)
        accumulation = args.gradient_accumulation_steps
        max_steps = total_updates(num_batches, accumulation, args.num_train_epochs, args.max_steps)
        num_epochs = num_epochs_to_run(num_batches, accumulation, args.num_train_epochs, args.max_steps)
        if args.gradient_checkpointing:
            # transformers 5 renamed it (the old name warns, and goes in v6); older releases lack the new one.
            enable = getattr(self.model, "activation_checkpointing_enable", None) or \
                self.model.gradient_checkpointing_enable
            enable()
        # FSDP turns the parameters into shards: before the optimizer is built on them.
        self.model = dist.shard_model(self.model)
        optimizer, scheduler, warmup = self.build_optimizer(max_steps)
        scaler = torch.amp.GradScaler(self.device.type, enabled=args.fp16)
        scaler = dist.wrap_scaler(scaler)
        self.state.max_steps, self.state.num_train_epochs = max_steps, num_epochs

        model = dist.wrap_model(self.model, optimizer)
        if args.torch_compile:
            model = torch.compile(model)

        data_seed = sampler_seed(seed)
        orders = epoch_permutations(n, data_seed, num_epochs)
        if args.group_by_length:
            lengths = self._lengths(features)
            generator = torch.Generator().manual_seed(data_seed)
            orders = [length_grouped(o, lengths, global_micro, generator) for o in orders]

        if resume_from:
            self._load_checkpoint(resume_from, optimizer, scheduler, scaler)
            logger.info("Resumed from %s at update %d (epoch %d, micro-batch %d)", resume_from,
                        self.state.global_step, self.state.epochs_done, self.state.steps_in_epoch_done)

        dist.print0(
            f"***** Running training *****\n"
            f"  Num examples = {n}\n  Num epochs = {num_epochs}\n"
            f"  Micro-batch per device = {per_rank_batch}, processes = {dist.world_size}, "
            f"accumulation = {accumulation}\n"
            f"  Global batch = {per_rank_batch} x {dist.world_size} x {accumulation} = "
            f"{global_micro * accumulation}\n"
            f"  Optimization steps = {max_steps}, warm-up steps = {warmup}\n"
            f"  Precision = {args.mixed_precision or 'fp32'}, device = {self.device}")
        if dist.world_size > 1:
            dist.print0(f"  Note: {dist.world_size} processes multiply the paper's one-GPU global batch; "
                        f"divide --per_device_train_batch_size or --gradient_accumulation_steps by "
                        f"{dist.world_size} to keep it.")

        model.train()
        state = self.state
        bar = tqdm(total=max_steps, initial=state.global_step, desc="train",
                   disable=args.disable_tqdm or not dist.is_main, dynamic_ncols=True)
        start = time.time()
        stop = state.global_step >= max_steps
        # Loss of the micro-batches since the last update (left-overs of an epoch carry over,
        # like their gradients).
        update_loss = torch.full((), state.pending_loss, device=self.device)
        unread: Optional[tuple] = None  # (reduced [loss, stop flag], update number) not yet read

        def settle() -> bool:
            """Read the last update's loss and stop vote: add the loss to the totals, stop on a
            non-finite one; return whether any rank was asked to stop."""
            nonlocal unread
            if unread is None:
                return False
            (loss_value, stop_vote), update_number = unread[0].tolist(), unread[1]
            unread = None
            state.loss_sum += loss_value
            self._check_update_loss(loss_value, update_number, fp16=scaler.is_enabled())
            return stop_vote > 0

        with StopOnSignal() as signals, bar:  # the bar closes however the loop ends
            for epoch in range(state.epochs_done, num_epochs):
                if stop:
                    break
                rank_order = dist.shard(orders[epoch], per_rank_batch)
                batches = [rank_order[i:i + per_rank_batch] for i in range(0, len(rank_order), per_rank_batch)]
                steps_in_epoch = len(batches)
                skip = state.steps_in_epoch_done
                for step, batch in enumerate(self._loader(features, batches[skip:]), start=skip):
                    batch = self._to_device(batch)
                    update = is_update_step(step, steps_in_epoch, accumulation)
                    with dist.no_sync(model, enabled=not update):
                        with self.autocast():
                            loss = model(**batch).loss
                        loss = loss / accumulation
                        scaler.scale(loss).backward()
                    update_loss += loss.detach()
                    state.steps_in_epoch_done = step + 1
                    if not update:
                        continue
                    # One reduction per update: the loss, and whether any rank was asked to stop. It
                    # is read on the host one update later (or before a log or a checkpoint), so a GPU
                    # never waits for the host at every update.
                    stop_asked = settle()
                    unread = (dist.mean(torch.stack(
                        [update_loss, torch.tensor(float(signals.received), device=self.device)])), state.global_step + 1)
                    update_loss = torch.zeros((), device=self.device)
                    if args.max_grad_norm and args.max_grad_norm > 0:
                        scaler.unscale_(optimizer)
                        dist.clip_grad_norm(model, optimizer, args.max_grad_norm)
                    scale_before = scaler.get_scale() if scaler.is_enabled() else None
                    scaler.step(optimizer)
                    scaler.update()
                    if scale_before is None or scale_before <= scaler.get_scale():
                        scheduler.step()
                        state.consecutive_skips = 0
                    else:  # fp16 overflow: the scaler skipped the step; the schedule waits (as 4.9.1)
                        state.skipped_updates += 1
                        state.consecutive_skips += 1
                        logger.info("fp16 gradient overflow at update %d: step skipped, loss scale %.0f -> %.0f",
                                    state.global_step + 1, scale_before, scaler.get_scale())
                        if state.consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
                            self._check_update_loss(float("nan"), state.global_step + 1, fp16=False)
                    optimizer.zero_grad(set_to_none=True)
                    state.global_step += 1
                    state.epoch = epoch + (step + 1) / steps_in_epoch
                    bar.update(1)
                    step_now = state.global_step
                    if step_now == 1 and args.logging_first_step or step_now % args.logging_steps == 0:
                        stop_asked |= settle()
                        mean_loss = (state.loss_sum - state.logged_loss_sum) / (step_now - state.last_logged_step)
                        entry = {"loss": round(mean_loss, 4), "learning_rate": scheduler.get_last_lr()[0],
                                 "epoch": round(state.epoch, 2)}
                        if state.skipped_updates:
                            entry["skipped_updates"] = state.skipped_updates
                        self.log(entry)
                        bar.set_postfix(loss=f"{mean_loss:.4f}")
                        state.logged_loss_sum, state.last_logged_step = state.loss_sum, step_now
                    if args.eval_strategy == "steps" and step_now % args.eval_steps == 0 and evaluate:
                        self._evaluate_during_training(evaluate, model, output_dir)
                    saved = None
                    if args.save_strategy == "steps" and step_now % args.save_steps == 0 and output_dir:
                        stop_asked |= settle()  # never save weights a NaN loss has spoiled
                        saved = self.save_checkpoint(output_dir, optimizer, scheduler, scaler)
                    if stop_asked:
                        settle()  # the checkpoint's loss totals include this update
                        path = saved or (self.save_checkpoint(output_dir, optimizer, scheduler, scaler)
                                         if output_dir else None)
                        raise TrainingInterrupted(signals.name or "SIGTERM (on another rank)", step_now, path)
                    if step_now >= max_steps:
                        stop = True
                        break
                else:
                    state.epochs_done = epoch + 1
                    state.steps_in_epoch_done = 0
                    state.epoch = float(epoch + 1)
                    state.pending_loss = update_loss.item()
                    if args.eval_strategy == "epoch" and evaluate:
                        self._evaluate_during_training(evaluate, model, output_dir)
                    if args.save_strategy == "epoch" and output_dir:
                        if settle():
                            path = self.save_checkpoint(output_dir, optimizer, scheduler, scaler)
                            raise TrainingInterrupted(signals.name or "SIGTERM (on another rank)", state.global_step, path)
                        self.save_checkpoint(output_dir, optimizer, scheduler, scaler)
            settle()
        bar.close()
        runtime = time.time() - start
        # As the original, the reported training loss also counts left-over micro-batches.
        total_loss = state.loss_sum + dist.mean(update_loss).item()
        metrics = {
            "train_runtime": round(runtime, 4),
            "train_samples": n,
            "train_samples_per_second": round(n * num_epochs / runtime, 3) if runtime > 0 else None,
            "train_loss": total_loss / max(state.global_step, 1),
            "epoch": round(state.epoch, 2),
        }
        self.log(dict(metrics))
        if args.load_best_model_at_end:
            self.load_best_model()
        return metrics

    def _check_update_loss(self, value: float, update_number: int, fp16: bool) -> None:
        """A NaN/inf loss under fp16 is the scaler's business (it skips the step and lowers the
        scale); elsewhere, or once the scale has collapsed, it stops the run before the weights
        are spoiled. Checkpoints already written stay as they are."""
        if fp16 or math.isfinite(value):
            return
        raise UserError("non_finite_loss", f"the training loss is {value} at update {update_number} "
                        f"({self.state.skipped_updates} fp16 steps skipped so far); lower --learning_rate, check "
                        "the data, or use --bf16 / fp32 instead of --fp16. Checkpoints already written are kept.")

    def _evaluate_during_training(self, evaluate: Callable[[], dict], model, output_dir: Optional[str]) -> None:
        metrics = evaluate()
        self.log({**metrics, "epoch": round(self.state.epoch, 2)})
        if self.args.load_best_model_at_end and output_dir:
            name = self.args.metric_for_best_model or self.task.main_metric
            key = name if name.startswith("eval_") else f"eval_{name}"
            if key not in metrics:
                raise UserError("unknown_metric", f"--metric_for_best_model {name}: the dev metrics are "
                                f"{', '.join(sorted(metrics))}")
            greater = self.args.greater_is_better
            greater = not key.endswith("loss") if greater is None else greater
            value = metrics[key]
            best = self.state.best_metric
            if best is None or (value > best if greater else value < best):
                self.state.best_metric = value
                self.state.best_checkpoint = str(Path(output_dir) / BEST_MODEL_DIR)
                self.save_model(self.state.best_checkpoint, self.task.tokenizer)
        model.train()

    def load_best_model(self) -> None:
        from safetensors.torch import load_file

        if self.state.best_checkpoint and Path(self.state.best_checkpoint).is_dir():
            logger.info("Loading the best dev model (%s = %s) from %s", self.args.metric_for_best_model,
                        self.state.best_metric, self.state.best_checkpoint)
            self.dist.load_model_state(self.model, load_file(Path(self.state.best_checkpoint) / "model.safetensors"))

    def log(self, entry: dict) -> None:
        entry = {**entry, "step": self.state.global_step}
        self.state.log_history.append(entry)
        if self.dist.is_main:
            logger.info("%s", entry)
            self.dist.report(entry, self.state.global_step)

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, features, desc: str = "predict") -> list[np.ndarray]:
        """Model outputs per feature, in feature order. Batches are formed by length (fewer pad
        tokens; padding is masked, so no prediction changes) and gathered from every rank."""
        if len(features) == 0:
            return []
        model = self.model
        was_training = model.training
        model.eval()
        batch_size = self.args.per_device_eval_batch_size
        lengths = self._lengths(features)
        order = sorted(range(len(features)), key=lambda i: lengths[i])
        mine = self.dist.shard_eval(order)
        batches = [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]
        outputs: dict[int, np.ndarray] = {}
        use_autocast = self.task.eval_under_autocast
        # Evaluation must not consume the training RNG (DataLoader draws a seed per iterator).
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            indices = iter(batches)
            for batch in tqdm(self._loader(features, batches), desc=desc, leave=False,
                              disable=self.args.disable_tqdm or not self.dist.is_main):
                ids = next(indices)
                batch = self._to_device(batch)
                batch.pop("labels", None)
                with self.autocast(enabled=use_autocast):
                    out = self.task.output_tensor(model(**batch))
                rows = out.float().cpu().numpy()
                for i, row in zip(ids, rows):
                    outputs[i] = row
        outputs = self.dist.gather_outputs(outputs)
        model.train(was_training)
        return [outputs[i] for i in range(len(features))]

    # -- checkpoints ------------------------------------------------------------------------
    def save_model(self, path: str | Path, tokenizer=None) -> None:
        """A full, ordinary `save_pretrained` folder (float32 safetensors + tokenizer)."""
        self.dist.save_pretrained(self.model, path)
        if tokenizer is not None and self.dist.is_main:
            tokenizer.save_pretrained(path)

    def save_checkpoint(self, output_dir: str, optimizer, scheduler, scaler) -> Path:
        """Write checkpoint-N into a temporary folder and rename it when complete, so a killed
        save never leaves a half checkpoint that looks like the last one."""
        dist = self.dist
        final = Path(output_dir) / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
        tmp = Path(output_dir) / f".tmp-{CHECKPOINT_PREFIX}{self.state.global_step}"
        optim_state = dist.optimizer_state(optimizer)
        pending = self._pending_gradients()
        if dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        self.save_model(tmp, self.task.tokenizer)
        if dist.is_main:
            torch.save(optim_state, tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            torch.save(scaler.state_dict(), tmp / "scaler.pt")
            torch.save(_rng_state(), tmp / "rng_state.pt")
            if pending:  # left-over micro-batches whose gradients carry into the next update
                torch.save(pending, tmp / "pending_grads.pt")
            write_json(tmp / STATE_FILE, self.state.to_json())
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            self._rotate_checkpoints(output_dir)
        dist.barrier()
        logger.info("Saved checkpoint %s", final)
        return final

    def _pending_gradients(self) -> dict:
        """Gradients of left-over micro-batches (an epoch-end checkpoint of an epoch whose
        micro-batches do not divide by the accumulation count). With several processes each rank
        holds its own; their mean is stored and given to every rank on resume, which is exact
        because the next update averages over ranks anyway."""
        if self.dist.world_size > 1 and self.dist.mode in ("full_shard", "shard_grad_op"):
            if self.state.pending_loss:
                logger.warning("FSDP keeps left-over micro-batch gradients inside its shards: this checkpoint "
                               "does not hold them, so a run resumed from it differs slightly")
            return {}
        grads = {n: p.grad for n, p in self.model.named_parameters() if p.grad is not None}
        if self.dist.world_size > 1:
            grads = {n: self.dist.mean(g) for n, g in grads.items()}
        return {n: g.detach().cpu() for n, g in grads.items()}

    def _rotate_checkpoints(self, output_dir: str) -> None:
        limit = self.args.save_total_limit
        if not limit or limit <= 0:
            return
        checkpoints = sorted_checkpoints(output_dir)
        keep = set(checkpoints[-limit:])
        if self.state.best_checkpoint:
            keep.add(Path(self.state.best_checkpoint))
        for old in checkpoints:
            if old not in keep:
                shutil.rmtree(old, ignore_errors=True)

    def _load_checkpoint(self, path: str, optimizer, scheduler, scaler) -> None:
        from safetensors.torch import load_file

        folder = check_checkpoint(path)
        self.dist.load_model_state(self.model, load_file(folder / "model.safetensors", device="cpu"))
        self.dist.load_optimizer_state(optimizer, torch.load(folder / "optimizer.pt", weights_only=True,
                                                             map_location="cpu"))
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        if (folder / "scaler.pt").exists():
            scaler.load_state_dict(torch.load(folder / "scaler.pt", weights_only=True))
        if (folder / "pending_grads.pt").exists():
            pending = torch.load(folder / "pending_grads.pt", weights_only=True)
            for name, p in self.model.named_parameters():
                if name in pending:
                    p.grad = pending[name].to(p.device)
        state = read_json(folder / STATE_FILE)
        self.state = TrainState(**state)
        _set_rng_state(torch.load(folder / "rng_state.pt", weights_only=True))


class _ModelInputCollator:
    """Hands the task's collator only the model's inputs (offsets, word ids and example
    indices stay in the features for post-processing)."""

    def __init__(self, collator) -> None:
        self.collator = collator

    def __call__(self, rows: list[dict]) -> dict:
        return self.collator([{k: v for k, v in row.items() if k in MODEL_INPUTS} for row in rows])


def _no_decay_parameter_names(model: torch.nn.Module) -> set[str]:
    """As the original: no weight decay on biases and LayerNorm weights."""
    names = set()
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if isinstance(module, torch.nn.LayerNorm) or "bias" in param_name:
                names.add(full)
    return names


def _rng_state() -> dict:
    """Every RNG the run uses, as tensors only (loads with weights_only=True)."""
    import random

    py_state = random.getstate()
    state = {
        "python_version": torch.tensor(py_state[0]),
        "python_state": torch.tensor(py_state[1], dtype=torch.int64),
        "python_gauss": torch.tensor(float("nan") if py_state[2] is None else py_state[2]),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": torch.tensor(np.random.get_state()[2]),
        "cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def _set_rng_state(state: dict) -> None:
    import random

    gauss = state["python_gauss"].item()
    random.setstate((int(state["python_version"].item()), tuple(int(x) for x in state["python_state"].tolist()),
                     None if math.isnan(gauss) else gauss))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"].item())))
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def check_checkpoint(path: str | Path) -> Path:
    folder = Path(path)
    needed = ["model.safetensors", "optimizer.pt", "scheduler.pt", STATE_FILE, "rng_state.pt"]
    missing = [f for f in needed if not (folder / f).exists()]
    if missing:
        raise UserError("bad_checkpoint", f"not a complete checkpoint (missing {', '.join(missing)}); "
                        "give another checkpoint or start without --resume_from_checkpoint", path=path)
    return folder


def sorted_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints (renamed into place only once written), oldest first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit()
             and (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))
