"""What a task module says about its task; everything else lives in the shared core.

A task module subclasses `Task` and fills in five things: how a record is checked, how the
label space is set up, how examples become features, how model outputs become one prediction
record per example, and how those records are scored. `linkbert.core.run.main(MyTask)` does
the rest (flags, data loading, the training loop, evaluation, result files).

The flow of one split, in the core:

    kept     = validate_split(path, task.validate_record)      # checked line by line
    task.check_splits(kept); task.setup_labels(kept["train"], config)   # label list / problem type
    features = examples.map(task.encode, batched=True)         # tokenised, maybe several per example
    outputs  = engine.predict(features)                        # one numpy array per feature
    records  = task.prediction_records(outputs, examples, features)   # one dict per example
    metrics  = task.score(records)                             # from the records alone

Because `score` sees only the prediction records (the lines of `*_predictions.jsonl`), any
score can be recomputed from the prediction file.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch

# Columns a collator receives; everything else in a feature (offsets, word ids, example index)
# stays with the task for post-processing.
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask", "labels")


class Task:
    #: Short name, used in messages and as the `datasets.map` description.
    name: str = "task"
    #: The transformers Auto class of the model head.
    model_class: Any = None
    #: Dataclass of the task's own flags, parsed together with the shared ones.
    arguments: Any = None
    #: max_seq_length when the flag is not given (the original scripts' defaults).
    default_max_seq_length: Optional[int] = None
    #: The original evaluated QA under fp16 autocast (its features carry no labels) and every
    #: labelled task in float32; `True` keeps the autocast at evaluation.
    eval_under_autocast: bool = False
    #: --max_{train,eval,predict}_samples also cut the features to that many (the original QA
    #: script did, after one example became several windows).
    sample_limit_cuts_features: bool = False
    #: The score --metric_for_best_model and the results table use by default.
    main_metric: str = "accuracy"

    def __init__(self, model_args, data_args, training_args, task_args) -> None:
        self.model_args, self.data_args = model_args, data_args
        self.training_args, self.task_args = training_args, task_args
        self.tokenizer: Any = None  # set by the core once loaded (a transformers fast tokenizer)
        self.max_seq_length: int = 0  # set by the core (flag, default, clamped to the model)
        self.data_sha256: dict[str, str] = {}  # split -> hash of its file, set by the core when loaded

    # -- data -------------------------------------------------------------------------------
    def validate_record(self, record: dict, split: str) -> Any:
        """Raise `RecordError(kind, message)` if one JSON record is unusable for this task; return
        what `check_splits` and `setup_labels` need of it (its label, say), or None."""
        raise NotImplementedError

    def check_splits(self, splits: dict[str, list[Any]]) -> None:
        """Checks across splits (e.g. a dev label unseen in train); raise `RecordError` with a
        `line` (the 1-based position of the record in the kept list) and `split` set; the core
        turns that into the file and its line number."""

    # -- labels and model --------------------------------------------------------------------
    def setup_labels(self, train_kept: Optional[list[Any]], config) -> dict:
        """Decide the label space from what `validate_record` kept of the training records
        (training runs), or from the
        fine-tuned model's config (prediction-only runs). Return keyword arguments for
        `AutoConfig.from_pretrained` (num_labels, id2label, label2id, problem_type...)."""
        return {}

    # -- features ----------------------------------------------------------------------------
    def encode(self, batch: dict[str, list], training: bool) -> dict[str, list]:
        """`datasets.map(batched=True)` function: examples -> features. Each feature must
        carry `example_index` (position of its example in the split) when one example can
        give several features (QA windows)."""
        raise NotImplementedError

    def collator(self, pad_to_multiple_of: Optional[int]) -> Callable[[list[dict]], dict]:
        """Batches features holding only `MODEL_INPUTS` keys."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def feature_length(self, feature_input_ids: list) -> int:
        """Length used to sort evaluation batches and group training batches."""
        return len(feature_input_ids)

    # -- outputs -----------------------------------------------------------------------------
    def output_tensor(self, outputs) -> torch.Tensor:
        """The part of the model output kept per feature (batch first)."""
        return outputs.logits

    def prediction_records(self, outputs: list[np.ndarray], examples, features) -> list[dict]:
        """One JSON-able dict per example (id, prediction, gold), in example order. `outputs[i]`
        belongs to `features[i]`; for padded batches it may be longer than the feature."""
        raise NotImplementedError

    def score(self, records: list[dict]) -> dict[str, float]:
        """Metrics computed from the prediction records alone (empty if no gold labels)."""
        raise NotImplementedError

    def summary(self, records: list[dict]) -> dict[str, Any]:
        """Counts reported beside the metrics (e.g. words not scored); not metrics."""
        return {}


class RecordError(Exception):
    """A bad record; the core adds file and line and turns it into a `UserError`."""

    def __init__(self, kind: str, message: str, line: Optional[int] = None, split: Optional[str] = None):
        super().__init__(message)
        self.kind, self.message, self.line, self.split = kind, message, line, split
