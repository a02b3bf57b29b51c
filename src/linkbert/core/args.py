"""Command-line arguments shared by every task, as dataclasses for `HfArgumentParser`.

Every flag the original run scripts pass is accepted with its original meaning and default
(transformers 4.9.1 `TrainingArguments`): seed 42, linear schedule, no warm-up, AdamW eps 1e-8,
betas 0.9/0.999, weight decay 0, max_grad_norm 1.0, evaluation batch 8. Task modules add a small
dataclass of their own flags (e.g. `--metric_name`, `--doc_stride`).
"""

from __future__ import annotations

import argparse
import difflib
import enum
import json
import math
import re
import shutil
import sys
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .errors import UserError
from .optim import OPTIMIZERS

if TYPE_CHECKING:
    from transformers import HfArgumentParser

STRATEGIES = ("no", "steps", "epoch")
ATTENTION = ("sdpa", "eager", "torch_sdpa")
# TrainingArguments flags with a fixed set of values ("" = not given).
CHOICES = {
    "eval_strategy": STRATEGIES,
    "save_strategy": STRATEGIES,
    "optim": OPTIMIZERS,
    "report_to": ("none", "wandb", "tensorboard"),
    "sharded_ddp": ("", "simple", "zero_dp_2", "zero_dp_3", "offload"),
    "fsdp": ("", "full_shard", "shard_grad_op"),
    "hub_strategy": ("end", "checkpoint", "all_checkpoints"),
}


@dataclass(frozen=True)
class ModelArguments:
    model_name_or_path: str = field(
        metadata={"help": "Hub id (e.g. michiyasunaga/BioLinkBERT-base) or local folder."})
    config_name: Optional[str] = field(default=None, metadata={"help": "Config, if not the model's."})
    tokenizer_name: Optional[str] = field(default=None, metadata={"help": "Tokenizer, if not the model's."})
    from_scratch: bool = field(
        default=False, metadata={"help": "Random weights: only the config (--config_name, else the model's) and the "
                                         "tokenizer are read, no weights (pretraining from scratch, as BioLinkBERT)."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Where hub downloads are cached."})
    use_fast_tokenizer: bool = field(default=True, metadata={"help": "Kept for compatibility; fast is required."})
    model_revision: str = field(default="main", metadata={"help": "Hub branch, tag or commit."})
    use_auth_token: bool = field(default=False, metadata={"help": "Use the token of `hf auth login`."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run code shipped with a hub model. Off unless asked for."})
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "sdpa (fast; CPU training's attention dropout by a compiled kernel) | "
                                           "torch_sdpa | eager (the original's, for exact parity)."})

    def __post_init__(self) -> None:
        if self.attn_implementation not in ATTENTION:
            raise UserError("bad_flag_value", f"--attn_implementation {self.attn_implementation!r}: choose "
                            f"{' or '.join(ATTENTION)}")


@dataclass(frozen=True)
class DataArguments:
    train_file: Optional[str] = field(default=None, metadata={"help": "JSON Lines training file."})
    validation_file: Optional[str] = field(default=None, metadata={"help": "JSON Lines dev file."})
    test_file: Optional[str] = field(default=None, metadata={"help": "JSON Lines test file."})
    max_seq_length: Optional[int] = field(
        default=None, metadata={"help": "Tokens per sequence after tokenisation (task default if unset); "
                                         "clamped to the model's max_position_embeddings."})
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every sequence to max_seq_length (the original's seqcls/QA "
                                          "behaviour). QA always pads unless --dynamic_padding."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Re-tokenise instead of using the cache."})
    preprocessing_num_workers: Optional[int] = field(
        default=None, metadata={"help": "Processes for tokenisation (datasets.map num_proc)."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Use the first N training examples."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Use the first N dev examples."})
    max_predict_samples: Optional[int] = field(default=None, metadata={"help": "Use the first N test examples."})

    def __post_init__(self) -> None:
        if self.max_seq_length is not None and self.max_seq_length < 1:
            raise UserError("bad_flag_value", f"--max_seq_length {self.max_seq_length}: give a positive length "
                            "(or leave it out for the task's default)")
        if self.preprocessing_num_workers is not None and self.preprocessing_num_workers < 1:
            raise UserError("bad_flag_value", f"--preprocessing_num_workers {self.preprocessing_num_workers}: give "
                            "at least 1 (or leave it out for one process)")
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError("bad_flag_value", f"--{name} {getattr(self, name)}: give at least 1 "
                                "(or leave it out for every example)")


@dataclass(frozen=True)
class TrainingArguments:
    output_dir: str = field(metadata={"help": "Where results, predictions, checkpoints and the model go."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing over this run's files in a non-empty folder "
                                          "(deletes nothing). Without it, a folder with checkpoints resumes."})
    do_train: bool = field(default=False, metadata={"help": "Fine-tune on --train_file."})
    do_eval: bool = field(default=False, metadata={"help": "Score --validation_file."})
    do_predict: bool = field(default=False, metadata={"help": "Score --test_file and write predictions."})
    evaluation_strategy: Optional[str] = field(
        default=None, metadata={"help": "no | steps | epoch (alias of --eval_strategy)."})
    eval_strategy: Optional[str] = field(default=None, metadata={"help": "no | steps | epoch."})
    eval_steps: Optional[int] = field(
        default=None, metadata={"help": "Updates between evaluations (default logging_steps)."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Micro-batch per device."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Evaluation batch per device."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per update."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW decoupled weight decay (not on biases/LayerNorm)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    optim: str = field(
        default="adamw_hf", metadata={"help": "adamw_hf (transformers 4.9.1's AdamW, as the paper) | adamw_torch "
                                               "| adamw_torch_fused (torch.optim.AdamW)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 = off)."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs (fractions allowed)."})
    max_steps: int = field(default=-1, metadata={"help": "Updates to run; > 0 overrides --num_train_epochs."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "Any transformers.get_scheduler name."})
    lr_scheduler_kwargs: Optional[str] = field(
        default=None, metadata={"help": "The schedule's own arguments as JSON, e.g. '{\"min_lr_rate\": 0.1}' "
                                         "(cosine_with_min_lr)."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Warm-up as a fraction of all updates (rounded up)."})
    warmup_steps: int = field(default=0, metadata={"help": "Warm-up updates; > 0 overrides --warmup_ratio."})
    logging_steps: int = field(default=500, metadata={"help": "Updates between log-history entries."})
    logging_first_step: bool = field(default=False, metadata={"help": "Also log the first update."})
    save_strategy: str = field(default="steps", metadata={"help": "no | steps | epoch: intermediate checkpoints."})
    save_steps: int = field(default=500, metadata={"help": "Updates between checkpoints (save_strategy steps)."})
    save_total_limit: Optional[int] = field(default=None, metadata={"help": "Keep at most N checkpoints."})
    resume_from_checkpoint: Optional[str] = field(default=None, metadata={"help": "Checkpoint folder to continue from."})
    load_best_model_at_end: bool = field(
        default=False, metadata={"help": "Test the best dev checkpoint instead of the last (not the paper's protocol)."})
    metric_for_best_model: Optional[str] = field(default=None, metadata={"help": "Dev metric for --load_best_model_at_end."})
    greater_is_better: Optional[bool] = field(default=None, metadata={"help": "Direction of metric_for_best_model."})
    seed: int = field(default=42, metadata={"help": "Seeds weights of new heads, data order and dropout."})
    fp16: bool = field(default=False, metadata={"help": "float16 autocast + gradient scaling."})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast."})
    fp16_opt_level: str = field(default="O1", metadata={"help": "Accepted for compatibility (apex is not used)."})
    tf32: Optional[bool] = field(default=None, metadata={"help": "Allow TF32 matmuls on Ampere+ GPUs."})
    use_cpu: bool = field(default=False, metadata={"help": "Run on the CPU even if a GPU is there."})
    no_cuda: bool = field(default=False, metadata={"help": "Alias of --use_cpu."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Worker processes per DataLoader."})
    group_by_length: bool = field(
        default=False, metadata={"help": "Training batches of similar length (seeded); faster, changes the order."})
    padding_free: Optional[bool] = field(
        default=None, metadata={"help": "BERT: compute on real tokens only (same results within float rounding; "
                                         "QA: no padding logits). Unset: on for seqcls/NER/MC on the CPU, else off."})
    torch_compile: bool = field(default=False, metadata={"help": "torch.compile the model."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations to save memory."})
    report_to: str = field(default="none", metadata={"help": "none | wandb | tensorboard (nothing leaves the "
                                                              "machine unless wandb is named)."})
    run_name: Optional[str] = field(default=None, metadata={"help": "Name for wandb/tensorboard."})
    logging_dir: Optional[str] = field(default=None, metadata={"help": "TensorBoard folder (default output_dir/runs)."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})
    sharded_ddp: str = field(default="", metadata={"help": "fairscale: simple | zero_dp_2 | zero_dp_3 | offload."})
    fsdp: str = field(default="", metadata={"help": "PyTorch FSDP: full_shard | shard_grad_op."})
    local_rank: int = field(default=-1, metadata={"help": "Set by the launcher; torchrun uses LOCAL_RANK."})
    push_to_hub: bool = field(
        default=False, metadata={"help": "Upload the finished folder (model, card, results) to the hub; checked "
                                          "before any work."})
    hub_model_id: Optional[str] = field(default=None, metadata={"help": "Hub repository (default: output_dir's name)."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the hub repository private."})
    hub_token: Optional[str] = field(default=None, metadata={"help": "Hub token (default: `hf auth login`'s); "
                                                                      "recorded as <hidden>."})
    hub_strategy: str = field(
        default="end", metadata={"help": "end | checkpoint | all_checkpoints (README: --push_to_hub)."})
    allow_untrained_head: bool = field(
        default=False, metadata={"help": "Allow evaluating/predicting (without --do_train) with a task head that "
                                          "the model folder does not hold (newly initialised: chance-level scores)."})

    def __post_init__(self) -> None:
        # Frozen once parsed: the values derived from other flags are set here, and only here.
        if self.no_cuda:
            object.__setattr__(self, "use_cpu", True)
        if self.evaluation_strategy and self.eval_strategy and self.evaluation_strategy != self.eval_strategy:
            raise UserError("conflicting_flags", f"--evaluation_strategy {self.evaluation_strategy} and "
                            f"--eval_strategy {self.eval_strategy} disagree; give one of them")
        strategy = self.eval_strategy or self.evaluation_strategy or "no"
        object.__setattr__(self, "eval_strategy", strategy)
        object.__setattr__(self, "evaluation_strategy", strategy)
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                allowed = ", ".join(c for c in choices if c)
                raise UserError("bad_flag_value", f"--{name} {value!r}: choose one of {allowed}")
        if self.eval_steps is None:
            object.__setattr__(self, "eval_steps", self.logging_steps)
        if self.fp16 and self.bf16:
            raise UserError("conflicting_flags", "--fp16 and --bf16 together: choose one precision")
        if self.sharded_ddp and self.fsdp:
            raise UserError("conflicting_flags", "--sharded_ddp and --fsdp together: choose one sharding")
        if self.load_best_model_at_end and self.eval_strategy == "no":
            raise UserError("conflicting_flags", "--load_best_model_at_end needs --evaluation_strategy steps or epoch")
        self._check_counts()

    def _check_counts(self) -> None:
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "logging_steps", "save_steps", "eval_steps"):
            if getattr(self, name) < 1:
                raise UserError("bad_flag_value", f"--{name} {getattr(self, name)}: must be at least 1")
        self._check_numbers()

    def _check_numbers(self) -> None:
        """Values outside their range fail here, before any work, not hours into training.
        Each test is written so that NaN fails it too."""
        from transformers.trainer_utils import SchedulerType

        finite = lambda x: x < math.inf
        ranges = [  # flag, test, what to give
            ("learning_rate", lambda x: 0 < x and finite(x), "give a positive, finite learning rate"),
            ("seed", lambda x: 0 <= x < 2**32, "give a seed in 0..2^32-1"),
            ("warmup_ratio", lambda x: 0 <= x <= 1, "give a fraction in [0, 1]"),
            ("adam_beta1", lambda x: 0 <= x < 1, "give a value in [0, 1)"),
            ("adam_beta2", lambda x: 0 <= x < 1, "give a value in [0, 1)"),
            ("adam_epsilon", lambda x: 0 < x and finite(x), "give a positive value"),
            ("weight_decay", lambda x: 0 <= x and finite(x), "give a value of 0 or more"),
            ("max_grad_norm", lambda x: 0 <= x and finite(x), "give a value of 0 or more"),
            ("warmup_steps", lambda x: x >= 0, "give 0 or more"),
            ("dataloader_num_workers", lambda x: x >= 0, "give 0 or more"),
            ("save_total_limit", lambda x: x is None or x >= 1, "give at least 1 (or leave it out to keep all)"),
            ("num_train_epochs", lambda x: not self.do_train or self.max_steps > 0 or 0 < x and finite(x),
             "training needs a positive number of epochs (or --max_steps)"),
        ]
        for flag, ok, allowed in ranges:
            if not ok(getattr(self, flag)):
                raise UserError("bad_flag_value", f"--{flag} {getattr(self, flag)}: {allowed}")
        # Schedules stepped with a metric (not once per update) do not fit the training loop.
        schedulers = [s.value for s in SchedulerType if s.value not in ("reduce_lr_on_plateau", "greedy")]
        if self.lr_scheduler_type not in schedulers:
            raise UserError("bad_flag_value", f"--lr_scheduler_type {self.lr_scheduler_type}: choose one of "
                            f"{', '.join(schedulers)}")
        self._check_schedule()

    @property
    def scheduler_kwargs(self) -> dict:
        """--lr_scheduler_kwargs as a dict (checked by `_check_schedule`)."""
        return json.loads(self.lr_scheduler_kwargs) if self.lr_scheduler_kwargs else {}

    def _check_schedule(self) -> None:
        """The schedule is built once here, on a stand-in parameter: a schedule that needs arguments
        (cosine_with_min_lr: min_lr_rate) fails now, naming them, not after the first files."""
        import torch
        from transformers import get_scheduler

        try:
            kwargs = self.scheduler_kwargs
        except json.JSONDecodeError as e:
            raise UserError("bad_flag_value", f"--lr_scheduler_kwargs {self.lr_scheduler_kwargs!r} is not JSON ({e.msg}); "
                            "give an object such as '{\"min_lr_rate\": 0.1}'") from None
        if not isinstance(kwargs, dict):
            raise UserError("bad_flag_value", f"--lr_scheduler_kwargs {self.lr_scheduler_kwargs!r}: give a JSON object")
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        try:
            scheduler = get_scheduler(self.lr_scheduler_type, optimizer, num_warmup_steps=1, num_training_steps=10,
                                      scheduler_specific_kwargs=kwargs)
            optimizer.step()
            scheduler.step()
        except (TypeError, ValueError) as e:
            given = f" with --lr_scheduler_kwargs '{json.dumps(kwargs)}'" if kwargs else ""
            detail = str(e).replace("through the `lr_scheduler_kwargs`", "").strip()
            raise UserError("bad_flag_value", f"--lr_scheduler_type {self.lr_scheduler_type}{given}: {detail}; give the "
                            "schedule's arguments as a JSON object with --lr_scheduler_kwargs") from None

    @property
    def precision(self) -> Precision:
        """The run's precision, decided here once (every part reads it, none re-derives it)."""
        return Precision.FP16 if self.fp16 else Precision.BF16 if self.bf16 else Precision.FP32


class Precision(enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"  # autocast to float16 and a GradScaler (the paper's --fp16)
    BF16 = "bf16"  # autocast to bfloat16, no scaler

    @property
    def autocast_dtype(self):
        """The dtype the forward runs in under autocast (None: fp32, no autocast)."""
        import torch

        return {Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}.get(self)


# The flags the original run scripts pass: shown first in --help, the additions after them.
ORIGINAL_FLAGS = {
    "model_name_or_path", "train_file", "validation_file", "test_file", "max_seq_length", "output_dir",
    "overwrite_output_dir", "do_train", "do_eval", "do_predict", "per_device_train_batch_size",
    "per_device_eval_batch_size", "gradient_accumulation_steps", "learning_rate", "weight_decay", "adam_beta1",
    "adam_beta2", "adam_epsilon", "warmup_ratio", "warmup_steps", "num_train_epochs", "fp16", "seed",
    "save_strategy", "evaluation_strategy", "eval_steps", "preprocessing_num_workers",
}
# Accepted so that old commands run; they change nothing here.
COMPATIBILITY_FLAGS = {"use_fast_tokenizer", "no_use_fast_tokenizer", "fp16_opt_level", "local_rank", "no_cuda"}


def _is_switch(action: argparse.Action) -> bool:
    # HfArgumentParser's booleans: `--do_train` alone means true (`--do_train false` also parses).
    return action.nargs == 0 or (action.nargs == "?" and action.const is True)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """One line per flag where it fits: its first spelling, a short metavar, the default when it says something."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=36, width=min(120, shutil.get_terminal_size((110, 24)).columns))

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.dest == "help":
            return super()._format_action_invocation(action)
        name = action.option_strings[0]  # not its --dashed-spelling alias
        if _is_switch(action):  # an unset Optional[bool] (auto) also takes false
            return name if action.default is not None else f"{name} [true|false]"
        return f"{name} {self._format_args(action, self._metavar(action))}"

    @staticmethod
    def _metavar(action: argparse.Action) -> str:
        if action.dest.endswith(("_file", "_dir", "name_or_path", "config_name", "tokenizer_name", "checkpoint")):
            return "PATH"
        if getattr(action.type, "__name__", "") == "string_to_bool":
            return "{true,false}"
        return "N" if action.type is int else "X" if action.type is float else "TEXT"

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if _is_switch(action) or action.default in (None, "", argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text.rstrip('.')} (default {action.default})."


def _make_parser(dataclasses_: tuple, prog: str, description: str, task_title: str) -> HfArgumentParser:
    """HfArgumentParser with a help page that reads and errors that are one `error [kind]` line."""
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        def error(self, message: str):  # argparse's own errors: one line, no usage block
            kind = "missing_flag" if "required" in message else "bad_flag_value"
            message = re.sub(r"(--\w+)/--[\w-]+", r"\1", message)  # not its --dashed-spelling alias
            raise UserError(kind, f"{message}; see {prog} --help")

    # No abbreviations: `--learning_rat` must be an error, not silently --learning_rate.
    parser = Parser(dataclasses_, prog=prog, description=description, allow_abbrev=False,
                    formatter_class=_HelpFormatter,
                    usage=f"{prog} --model_name_or_path PATH --output_dir PATH [--do_train] [--do_eval] "
                          f"[--do_predict] [flags]\n       {prog} ARGUMENTS.json")
    for action in parser._actions:
        # HfArgumentParser wants a value after an Optional[bool] flag whose default is None (auto,
        # unset); alone, it means true here, as a bool flag's does (`--padding_free`).
        if getattr(action.type, "__name__", "") == "string_to_bool" and action.nargs is None:
            action.nargs, action.const = "?", True
    _group_flags(parser, {f.name for f in fields(dataclasses_[-1])}, task_title)
    return parser


def _group_flags(parser: argparse.ArgumentParser, task_flags: set[str], task_title: str) -> None:
    """Regroup the flags for --help: the original's, the task's, the additions, compatibility."""
    groups = [(parser.add_argument_group("the original scripts' flags"), lambda d: d in ORIGINAL_FLAGS),
              (parser.add_argument_group(task_title), lambda d: d in task_flags),
              (parser.add_argument_group("compatibility (accepted, no effect here)"),
               lambda d: d in COMPATIBILITY_FLAGS),
              (parser.add_argument_group("beyond the original"), lambda d: True)]
    optionals = parser._optionals  # argparse keeps each group's actions in _group_actions
    for action in list(optionals._group_actions):
        if action.dest == "help":
            continue
        optionals._group_actions.remove(action)
        group = next(g for g, wanted in groups if wanted(action.dest))
        group._group_actions.append(action)


def _program_and_description(task_arguments: type) -> tuple[str, str]:
    """`python -m linkbert.<task>.<module>` and the module's summary with its first example."""
    module_name = task_arguments.__module__
    if module_name == "__main__":  # run as `python -m linkbert.<task>.<module>`
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module_name = spec.name if spec else Path(sys.argv[0]).stem
    doc = getattr(sys.modules.get(task_arguments.__module__), "__doc__", None) or ""
    paragraphs = doc.strip().split("\n\n")
    # The summary, up to and including the first indented (example) paragraph.
    first_example = next((i for i, p in enumerate(paragraphs) if p.startswith("    ")), len(paragraphs) - 1)
    text = "\n\n".join(paragraphs[:first_example + 1])
    # A docstring's `\<newline>` joins the example's lines: break them again before each flag run.
    text = re.sub(r" {3,}(?=--)", " \\\n        ", text)
    return f"python -m {module_name}", text


def _did_you_mean(unknown: list[str], parser: argparse.ArgumentParser) -> str:
    known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    flags = [u for u in unknown if u.startswith("-")]
    if not flags:
        return f"unexpected value(s) {' '.join(unknown)}: every value follows its --flag"
    parts = []
    for flag in flags:
        close = difflib.get_close_matches(flag.split("=")[0], known, n=1, cutoff=0.6)
        parts.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
    return f"unknown flag{'s' if len(flags) > 1 else ''} {', '.join(parts)}"


def parse_args(task_arguments: type, argv: Optional[list[str]] = None):
    """Parse model, data, training and task flags (or one .json file holding them all)."""
    argv = sys.argv[1:] if argv is None else argv
    prog, description = _program_and_description(task_arguments)
    task_title = "this task's flags"
    parser = _make_parser((ModelArguments, DataArguments, TrainingArguments, task_arguments), prog, description,
                          task_title)
    if not argv:
        # The top of --help, not the whole page: what the module does and one example.
        print(f"{description}\n\nEvery flag: {prog} --help\n", file=sys.stderr)
        raise UserError("missing_flag", "no arguments: give at least --model_name_or_path, --output_dir and one "
                        "of --do_train/--do_eval/--do_predict with their data files")
    if len(argv) == 1 and argv[0].endswith(".json"):
        classes = (ModelArguments, DataArguments, TrainingArguments, task_arguments)
        values = read_args_file(argv[0], classes)
        try:
            return parser.parse_dict(values)
        except ValueError as e:  # keys no argument has
            raise UserError("unknown_flag", f"{e}; see --help for the accepted arguments", path=argv[0]) from None
    *parsed, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        raise UserError("unknown_flag", f"{_did_you_mean(unknown, parser)}; see {prog} --help for every flag")
    return tuple(parsed)


def _accepts(kind, value) -> bool:
    """Whether a JSON value fits a field's type as a flag would: no "false" for a bool."""
    if typing.get_origin(kind) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_accepts(k, value) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    return True


def read_args_file(path: str, classes: tuple) -> dict:
    """A .json arguments file, its values type-checked against the arguments' fields."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except FileNotFoundError:
        raise UserError("bad_args_file", "does not exist; give the path of a .json arguments file", path=path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError("bad_args_file", f"cannot be read as JSON ({e})", path=path) from None
    if not isinstance(values, dict):
        raise UserError("bad_args_file", f"holds a JSON {type(values).__name__}, not an object of arguments", path=path)
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for arg in fields(cls):
            if arg.name not in values:
                if arg.default is MISSING and arg.default_factory is MISSING:
                    raise UserError("bad_args_file", f"has no {arg.name!r}, which every run needs", path=path)
                continue
            value, kind = values[arg.name], hints[arg.name]
            if not _accepts(kind, value):
                raise UserError("bad_args_file", f"{arg.name!r} is {json.dumps(value)} ({type(value).__name__}); "
                                f"it must be a {getattr(kind, '__name__', str(kind))}, as JSON true/false for "
                                "a bool", path=path)
    return values


def as_dict(*dataclasses_) -> dict:
    """Every argument of a run, for run_args.json."""
    hidden = {"hub_token"}  # run_args.json may be pushed: never the token
    return {f.name: "<hidden>" if f.name in hidden and getattr(dc, f.name) else getattr(dc, f.name)
            for dc in dataclasses_ for f in fields(dc)}
