"""Command-line arguments shared by every task, as dataclasses for `HfArgumentParser`.

Every flag the original run scripts pass is accepted with its original meaning and default
(transformers 4.9.1 `TrainingArguments`): seed 42, linear schedule, no warm-up, AdamW eps 1e-8,
betas 0.9/0.999, weight decay 0, max_grad_norm 1.0, evaluation batch 8. Task modules add a small
dataclass of their own flags (e.g. `--metric_name`, `--doc_stride`).
"""

from __future__ import annotations

import json
import math
import sys
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Optional

from .errors import UserError
from .optim import OPTIMIZERS

STRATEGIES = ("no", "steps", "epoch")
ATTENTION = ("sdpa", "eager")
# TrainingArguments flags with a fixed set of values ("" = not given).
CHOICES = {
    "eval_strategy": STRATEGIES,
    "save_strategy": STRATEGIES,
    "optim": OPTIMIZERS,
    "report_to": ("none", "wandb", "tensorboard"),
    "sharded_ddp": ("", "simple", "zero_dp_2", "zero_dp_3", "offload"),
    "fsdp": ("", "full_shard", "shard_grad_op"),
}


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={"help": "Hub id (e.g. michiyasunaga/BioLinkBERT-base) or local folder."})
    config_name: Optional[str] = field(default=None, metadata={"help": "Config, if not the model's."})
    tokenizer_name: Optional[str] = field(default=None, metadata={"help": "Tokenizer, if not the model's."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Where hub downloads are cached."})
    use_fast_tokenizer: bool = field(default=True, metadata={"help": "Kept for compatibility; fast is required."})
    model_revision: str = field(default="main", metadata={"help": "Hub branch, tag or commit."})
    use_auth_token: bool = field(default=False, metadata={"help": "Use the token of `hf auth login`."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run code shipped with a hub model. Off unless asked for."})
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "sdpa (fast) | eager (the original's attention: nn.Dropout on the "
                                           "attention probabilities; for exact parity)."})

    def __post_init__(self) -> None:
        if self.attn_implementation not in ATTENTION:
            raise UserError("bad_flag_value", f"--attn_implementation {self.attn_implementation!r}: choose "
                            f"{' or '.join(ATTENTION)}")


@dataclass
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


@dataclass
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
    padding_free: bool = field(
        default=False, metadata={"help": "BERT only: compute on real tokens only (no padding), attention per "
                                          "sequence. Same results within float rounding (QA: no padding logits)."})
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
    allow_untrained_head: bool = field(
        default=False, metadata={"help": "Allow evaluating/predicting (without --do_train) with a task head that "
                                          "the model folder does not hold (newly initialised: chance-level scores)."})

    def __post_init__(self) -> None:
        if self.no_cuda:
            self.use_cpu = True
        if self.evaluation_strategy and self.eval_strategy and self.evaluation_strategy != self.eval_strategy:
            raise UserError("conflicting_flags", f"--evaluation_strategy {self.evaluation_strategy} and "
                            f"--eval_strategy {self.eval_strategy} disagree; give one of them")
        self.eval_strategy = self.eval_strategy or self.evaluation_strategy or "no"
        self.evaluation_strategy = self.eval_strategy
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                allowed = ", ".join(c for c in choices if c)
                raise UserError("bad_flag_value", f"--{name} {value!r}: choose one of {allowed}")
        if self.eval_steps is None:
            self.eval_steps = self.logging_steps
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
        schedulers = [s.value for s in SchedulerType if s.value != "reduce_lr_on_plateau"]
        if self.lr_scheduler_type not in schedulers:
            raise UserError("bad_flag_value", f"--lr_scheduler_type {self.lr_scheduler_type}: choose one of "
                            f"{', '.join(schedulers)}")

    @property
    def mixed_precision(self) -> Optional[str]:
        return "fp16" if self.fp16 else "bf16" if self.bf16 else None


def parse_args(task_arguments: type, argv: Optional[list[str]] = None):
    """Parse model, data, training and task flags (or one .json file holding them all)."""
    from transformers import HfArgumentParser

    argv = sys.argv[1:] if argv is None else argv
    # No abbreviations: `--learning_rat` must be an error, not silently --learning_rate.
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments, task_arguments), allow_abbrev=False)
    if len(argv) == 1 and argv[0].endswith(".json"):
        classes = (ModelArguments, DataArguments, TrainingArguments, task_arguments)
        values = read_args_file(argv[0], classes)
        try:
            return parser.parse_dict(values)
        except ValueError as e:  # keys no argument has
            raise UserError("unknown_flag", f"{e}; see --help for the accepted arguments", path=argv[0]) from None
    *parsed, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        raise UserError("unknown_flag", f"unknown flag(s) {' '.join(unknown)}; see --help for the accepted flags")
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
    return {f.name: getattr(dc, f.name) for dc in dataclasses_ for f in fields(dc)}
