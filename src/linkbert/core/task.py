"""What a task module says about its task; everything else lives in the shared core.

A task module subclasses `Task` and says how a record is checked, what its labels are, how
examples become features, how model outputs become one prediction record per example, and how
those records are scored. `linkbert.core.run.main(MyTask)` does the rest (flags, data loading,
the training loop, evaluation, result files).

The flow of one run, in the core (`linkbert.core.run`):

    task     = MyTask(*flags)                                  # the task's own flag checks
    examples, checked = task.load_examples(splits)             # per file: fmt = record_format(its
                                                               #   first record), then validate_record
                                                               #   (record, split, fmt) on every line;
                                                               #   then task.check_splits(kept)
    ctx, config = resolve_context(task, checked)               # tokenizer, length, padding, labels,
                                                               #   precision, the run's record format:
                                                               #   once, frozen (TaskContext);
                                                               #   the model config loaded once
    features = examples.map(task.encode(batch, ctx, training)) # tokenised, maybe several per example
    outputs  = engine.predict(features)                        # one numpy array per feature
    records  = task.prediction_records(outputs, examples, features, ctx)   # one dict per example
    metrics  = task.score(records)                             # from the records alone

The labels in the context come from the task's `label_space(train_kept)` in a training run and
from the fine-tuned model's config in a prediction-only run (the core reads `id2label`); the core
also refuses a dev/test label outside that space (`unseen_label`) and writes the label maps
into the model config. A task with no label space of its own (QA, multiple choice, pretraining)
leaves `label_noun` at None and gets `ctx.labels is None`.

`validate_record` is a pure check: what a file's records look like (seqcls's text fields, whether
a test file is labelled, MC's number of choices) is read once, by `record_format` on the file's
first record, and passed in. The format of the run's first file is `ctx.record_format`, which
`encode` reads (every later file gets it as `run_format` and must agree with it).

Because `score` sees only the prediction records (the lines of `*_predictions.jsonl`), any
score can be recomputed from the prediction file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, NamedTuple, Optional

import numpy as np
import torch

from .args import Precision
from .records import CheckedSplits, Labels, RecordError  # noqa: F401 (the task modules import them from here)
from .errors import UserError

# Columns a collator receives by default; everything else in a feature (offsets, word ids,
# example index) stays with the task for post-processing.
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "labels")


def batch_pad_multiple(args) -> Optional[int]:
    """Batches pad to a multiple of 8 under mixed precision on a GPU, as the original's collators
    did under fp16 (the width its tensor cores want); on the CPU (`--bf16` there) a wider batch is
    only more work, and packed batches (--padding_free) have no padding to round."""
    on_gpu = torch.cuda.is_available() and not args.use_cpu
    # Unset --padding_free (None, before the run resolves it) is the padded path's rounding: on a
    # GPU the default is padded (padding_free.default_for); packing drops any rounding anyway.
    return 8 if args.precision is not Precision.FP32 and on_gpu and not args.padding_free else None


@dataclass(frozen=True)
class TaskContext:
    """What the core resolved once, before any feature is built; every task method that
    tokenises, batches or reads outputs receives it."""
    tokenizer: Any  # a transformers fast tokenizer
    #: --max_seq_length, else the task's default, else the model's; at most its position embeddings.
    max_seq_length: int
    #: Pad every feature to max_seq_length when tokenising (else batches pad to their longest).
    pad_to_max_length: bool = False
    #: Batches pad to a multiple of this (8 under mixed precision, as the original), or None.
    pad_to_multiple_of: Optional[int] = None
    #: The label space (None: the task has none).
    labels: Optional[Labels] = None
    #: The run's precision, as TrainingArguments decided it (tasks read it, never guess it).
    precision: Precision = Precision.FP32
    #: `Task.record_format` of the run's first file (seqcls's text fields, MC's number of
    #: choices), or None (the task has none; a run that checks no file).
    record_format: Any = None

    @property
    def padding(self) -> Literal["max_length", False]:
        """The tokenizer's `padding` argument."""
        return "max_length" if self.pad_to_max_length else False

    @property
    def label_list(self) -> tuple[Any, ...]:
        return self.labels.names if self.labels is not None else ()


def example_ids(examples) -> list[Any]:
    """The `id` of every example, or its position when the file has no ids."""
    return examples["id"] if "id" in examples.column_names else list(range(len(examples)))


class ExtraSplit(NamedTuple):
    """A further file scored beside the dev or test set (MNLI's mismatched dev and test sets):
    loaded and checked with `of_split`, scored under its prefix, every metric name and the
    predictions file carrying `suffix` (`eval_accuracy_mm`, `eval_mm_predictions.jsonl`)."""
    name: str      # split name, e.g. "validation_mismatched"
    of_split: str  # "validation" or "test"
    flag: str      # the flag that names the file, for messages
    path: Optional[str]
    suffix: str


class Task:
    #: Short name, used in messages and as the `datasets.map` description.
    name: str = "task"
    #: The transformers Auto class of the model head.
    model_class: Any = None
    #: Dataclass of the task's own flags, parsed together with the shared ones.
    arguments: Any = None
    #: max_seq_length when the flag is not given (the original scripts' defaults).
    default_max_seq_length: Optional[int] = None
    #: Pad features to max_seq_length even without --pad_to_max_length (the original QA did).
    pads_to_max_length: bool = False
    #: Padding-free batches by default on the CPU (padding_free.default_for): for tasks where it
    #: is result-neutral and measured faster (bench/README.md). QA is not result-neutral (the
    #: padded span loss sees padding logits), so it keeps the original's padding unless asked.
    padding_free_by_default: bool = True
    #: The original evaluated QA under fp16 autocast (its features carry no labels) and every
    #: labelled task in float32; `True` keeps the autocast at evaluation.
    eval_under_autocast: bool = False
    #: --max_{train,eval,predict}_samples also cut the features to that many (the original QA
    #: script did, after one example became several windows).
    sample_limit_cuts_features: bool = False
    #: What one feature is, in the training banner's count ("windows": QA's long contexts become several).
    feature_noun: str = "examples"
    #: The score --metric_for_best_model and the results table use by default.
    main_metric: str = "accuracy"
    #: Feature columns the collator and the model receive (the rest stays for post-processing).
    model_inputs: tuple[str, ...] = MODEL_INPUTS
    #: Those of `model_inputs` that are training targets: evaluation leaves them out.
    label_columns: tuple[str, ...] = ("labels",)
    #: What one label is called in messages ("label", "tag"); None: the task has no label space
    #: of its own (the core then resolves none).
    label_noun: Optional[str] = None

    def __init__(self, model_args, data_args, training_args, task_args) -> None:
        self.model_args, self.data_args = model_args, data_args
        self.training_args, self.task_args = training_args, task_args

    # -- data -------------------------------------------------------------------------------
    def load_examples(self, splits: list[str]) -> tuple[dict, CheckedSplits]:
        """The examples of each split and what `validate_record` kept of them. By default the
        --train_file/--validation_file/--test_file JSON Lines, checked line by line; a task whose
        splits come from elsewhere (pretraining: one corpus, held-out documents) overrides it."""
        from .data import load_splits

        return load_splits(self, splits)

    def check_features(self, split: str, features, ctx: TaskContext) -> None:
        """Refuse, before anything is written, features a run cannot use (e.g. none at all)."""

    def describe_features(self, split: str, features) -> dict[str, Any]:
        """Statistics of a split's features that the core logs before training (empty: none)."""
        return {}

    def record_format(self, first_record: dict, split: str, run_format: Any) -> Any:
        """What a file's records hold, read off its first record (which `validate_record` then
        checks like any other); `run_format` is what this returned for the run's first file, None
        while checking that one. Called once per file; None by default (no format to learn)."""
        return None

    def validate_record(self, record: dict, split: str, fmt: Any) -> Any:
        """Raise `RecordError(kind, message)` if one JSON record is unusable for this task, given
        its file's `record_format`; return what `check_splits`, `label_space` and `labels_of` need
        of it (its label, say), or None. A pure check: no state is kept."""
        raise NotImplementedError

    def check_splits(self, splits: dict[str, list[Any]]) -> None:
        """Checks across splits (e.g. one kind of label); raise `RecordError` with a `line` (the
        1-based position of the record in the kept list) and `split` set; the core turns that
        into the file and its line number."""

    def extra_splits(self) -> list[ExtraSplit]:
        """Further files scored with the dev or test set (none by default)."""
        return []

    def check_new_weights(self, names: list[str]) -> None:
        """Called with the weights the checkpoint did not hold (initialised randomly), before
        training; a task may warn about a start it trains poorly from. Nothing by default."""

    def config_overrides(self) -> dict[str, Any]:
        """Model config values this task's flags set (saved with the model; none by default)."""
        return {}

    def training_examples(self, examples):
        """The training examples to train on (all by default; QA's --train_fraction subsamples)."""
        return examples

    # -- labels (tasks with a `label_noun`) ----------------------------------------------------
    def label_space(self, train_kept: list[Any]) -> Labels:
        """The label space of a training run, from what `validate_record` kept of the training
        records (a prediction-only run takes the fine-tuned model's)."""
        raise NotImplementedError

    def check_label_kinds(self, labels: Labels, kept: dict[str, list[Any]]) -> None:
        """Raise a `RecordError` for a gold label of another kind than `labels` predicts (also in a
        prediction-only run, whose labels come from the model). Classes are checked by name."""

    def labels_of(self, kept: Any) -> list[Any]:
        """The gold labels one kept value holds (none for an unlabelled record); the core checks
        each against a closed label space."""
        return []

    # -- features ----------------------------------------------------------------------------
    def encode(self, batch: dict[str, list], ctx: TaskContext, training: bool) -> dict[str, list]:
        """`datasets.map(batched=True)` function: examples -> features. Each feature must
        carry `example_index` (position of its example in the split) when one example can
        give several features (QA windows)."""
        raise NotImplementedError

    def collator(self, ctx: TaskContext) -> Callable[[list[dict]], dict]:
        """Batches features holding only `model_inputs` keys."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(ctx.tokenizer, pad_to_multiple_of=ctx.pad_to_multiple_of)

    def feature_length(self, feature_input_ids: list) -> int:
        """Length used to sort evaluation batches and group training batches."""
        return len(feature_input_ids)

    # -- outputs -----------------------------------------------------------------------------
    def output_tensor(self, outputs) -> torch.Tensor:
        """The part of the model output kept per feature (batch first)."""
        return outputs.logits

    def prediction_records(self, outputs: list[np.ndarray], examples, features, ctx: TaskContext) -> list[dict]:
        """One JSON-able dict per example (id, prediction, gold), in example order. `outputs[i]`
        belongs to `features[i]`, in the dtype the model computed it in (float16 under an fp16
        autocast); for padded batches it may be longer than the feature."""
        raise NotImplementedError

    def score(self, records: list[dict]) -> dict[str, float]:
        """Metrics computed from the prediction records alone (empty if no gold labels)."""
        raise NotImplementedError

    def metric_names(self, ctx: TaskContext) -> Optional[set[str]]:
        """The names `score` and `summary` can give (without `eval_`), known before any evaluation,
        so that --metric_for_best_model is checked up front; None: not known in advance."""
        return None

    def extra_outputs(self, prefix: str, suffix: str, records: list[dict]) -> dict[str, str]:
        """Further files written beside `<prefix><suffix>_predictions.jsonl` (file name -> text),
        e.g. a benchmark server's submission file."""
        return {}

    def summary(self, records: list[dict], ctx: TaskContext) -> dict[str, Any]:
        """Counts reported beside the metrics (e.g. words not scored); not metrics."""
        return {}


# What every evaluation reports beside the task's scores (core.run.evaluate_split).
EVALUATION_COUNTS = {"samples", "runtime", "samples_per_second"}


def check_best_metric(task: Task, ctx: TaskContext) -> None:
    """--metric_for_best_model (or, with --load_best_model_at_end, the task's main metric) is a
    dev metric this run computes: refused before training, not after its first evaluation."""
    args = task.training_args
    if args.metric_for_best_model is None and not args.load_best_model_at_end:
        return
    known = task.metric_names(ctx)
    if known is None:
        return
    name = args.metric_for_best_model or task.main_metric
    if name.removeprefix("eval_") not in known | EVALUATION_COUNTS:
        flag = "--metric_for_best_model" if args.metric_for_best_model else "--load_best_model_at_end's default metric"
        raise UserError("unknown_metric", f"{flag} {name}: this run's dev metrics are "
                        f"{', '.join('eval_' + k for k in sorted(known))} (eval_ may be left out); choose one")

