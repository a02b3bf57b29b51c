"""BLURB sequence classification: PubMedQA, BioASQ (yes/no/maybe), ChemProt, DDI, GAD (relations),
BIOSSES (similarity, regression) and HoC (multi-label).

    python -m linkbert.seqcls.run_seqcls --model_name_or_path michiyasunaga/BioLinkBERT-base \
        --train_file data/seqcls/chemprot_hf/train.json --validation_file .../dev.json \
        --test_file .../test.json --do_train --do_eval --do_predict --metric_name PRF1 \
        --per_device_train_batch_size 32 --learning_rate 3e-5 --num_train_epochs 10 \
        --max_seq_length 256 --fp16 --output_dir runs/chemprot_hf/BioLinkBERT-base

The label type decides the problem, as upstream: a string label is single-label classification
(label list sorted from train), a float label regression, a list of 0/1 multi-label (BCE).
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from transformers import AutoModelForSequenceClassification

from linkbert.core.errors import UserError
from linkbert.core.run import main
from linkbert.core.task import RecordError, Task
from linkbert.metrics import classification

METRICS = ("accuracy", "PRF1", "pearsonr", "hoc")


@dataclass
class SeqClsArguments:
    metric_name: str = field(default="accuracy", metadata={"help": f"One of {', '.join(METRICS)}."})
    task_name: Optional[str] = field(default=None, metadata={"help": "Accepted for compatibility; unused."})


def label_kind(label: Any) -> str:
    if isinstance(label, list):
        return "multi_label"
    if isinstance(label, float):
        return "regression"
    if isinstance(label, (str, int)) and not isinstance(label, bool):
        return "single_label"
    return "unknown"


def _check_one_label_type(labels: list) -> None:
    """"0" and 0 would be two labels that print alike."""
    line = next((i for i, l in enumerate(labels, 1) if type(l) is not type(labels[0])), None)
    if line:
        raise RecordError("mixed_label_types", f"labels are both strings and integers (e.g. {labels[0]!r} and "
                          f"{labels[line - 1]!r}); use one kind", line=line, split="train")


class SeqClsTask(Task):
    name = "seqcls"
    model_class = AutoModelForSequenceClassification
    arguments = SeqClsArguments
    default_max_seq_length = 128

    def __init__(self, *args) -> None:
        super().__init__(*args)
        if self.task_args.metric_name not in METRICS:
            raise UserError("unknown_metric", f"--metric_name {self.task_args.metric_name!r}: choose one of "
                            f"{', '.join(METRICS)}")
        self.text_keys: Optional[tuple[str, ...]] = None
        self.kind: Optional[str] = None
        self.label_list: list = []

    # -- data -------------------------------------------------------------------------------
    def validate_record(self, record: dict, split: str) -> Any:
        keys = ("sentence1", "sentence2") if "sentence1" in record and "sentence2" in record else ("sentence",)
        if self.text_keys is None:
            self.text_keys = keys
        for key in self.text_keys:
            if key not in record:
                raise RecordError("missing_field", f"no {key!r} field (this file's first record set the text "
                                  f"fields to {', '.join(self.text_keys)})")
            if not isinstance(record[key], str):
                raise RecordError("wrong_type", f"{key!r} must be a string, found {type(record[key]).__name__}")
            if not record[key].strip():
                raise RecordError("empty_input", f"{key!r} is empty")
        if "label" not in record:
            raise RecordError("missing_field", "no 'label' field")
        label = record["label"]
        kind = label_kind(label)
        if kind == "unknown" or (kind == "multi_label" and not all(v in (0, 1) for v in label)):
            raise RecordError("wrong_type", f"'label' must be a string, a number or a list of 0/1, found {label!r}")
        if isinstance(label, float) and not math.isfinite(label) or \
                isinstance(label, int) and not isinstance(label, bool) and abs(label) >= 2**63:
            raise RecordError("wrong_type", f"'label' {label!r} is not a finite number of a usable size")
        if self.task_args.metric_name == "hoc" and not isinstance(record.get("id"), str):
            # HoC is scored per document (the id before its last `_`): without ids all would be one
            raise RecordError("missing_field", "no string 'id' field; --metric_name hoc scores per document id")
        return label

    def check_splits(self, splits: dict[str, list]) -> None:
        reference = splits.get("train")
        if reference is None:
            return  # prediction-only: the label space comes from the model's config
        kinds = {label_kind(l) for l in reference}
        if "regression" in kinds and kinds <= {"regression", "single_label"} and \
                all(isinstance(l, (int, float)) for l in reference):
            kinds = {"regression"}  # BIOSSES scores such as 4 and 2.5 are all regression targets
        if len(kinds) > 1:
            line = next(i for i, l in enumerate(reference, 1) if label_kind(l) != label_kind(reference[0]))
            raise RecordError("mixed_label_types", f"labels of different kinds ({', '.join(sorted(kinds))}); "
                              "one task has one kind of label", line=line, split="train")
        self.kind = kinds.pop()
        self._check_metric_fits()
        self._check_label_values(splits, reference)

    def _check_label_values(self, splits: dict[str, list], reference: list) -> None:
        """Classification: every label known from training; multi-label: lists of one width."""
        if self.kind == "single_label":
            _check_one_label_type(reference)
            known = set(reference)
            for split, labels in splits.items():
                for i, label in enumerate(labels, 1):
                    if label not in known:
                        raise RecordError("unseen_label", f"label {label!r} never occurs in the training file; "
                                          "the model would have no output for it", line=i, split=split)
        if self.kind == "multi_label":
            width = len(reference[0])
            for split, labels in splits.items():
                for i, label in enumerate(labels, 1):
                    if len(label) != width:
                        raise RecordError("wrong_type", f"label list of length {len(label)}, the first training "
                                          f"label has {width}", line=i, split=split)

    def _check_metric_fits(self) -> None:
        metric, fits = self.task_args.metric_name, {"hoc": "multi_label", "pearsonr": "regression"}
        if metric in fits and fits[metric] != self.kind:
            raise UserError("bad_flag_value", f"--metric_name {metric} needs {fits[metric].replace('_', '-')} "
                            f"labels, but the training labels are {self.kind.replace('_', '-')}; choose a metric "
                            "that fits the data")

    def setup_labels(self, train_labels: Optional[list], config) -> dict:
        if train_labels is None:  # prediction-only run from a fine-tuned folder
            problem = getattr(config, "problem_type", None)
            if problem == "regression":
                self.kind = "regression"
            elif problem == "multi_label_classification":
                self.kind = "multi_label"
                self.label_list = [config.id2label[i] for i in range(config.num_labels)]
            else:
                self.kind = "single_label"
                if not config.label2id or all(str(k).startswith("LABEL_") for k in config.label2id):
                    raise UserError("no_labels_for_prediction", "the model's config names no labels; predict with "
                                    "the folder a training run saved", path=self.model_args.model_name_or_path)
                self.label_list = [config.id2label[i] for i in range(config.num_labels)]
            return {}
        if self.kind == "regression":
            return {"num_labels": 1, "problem_type": "regression"}
        if self.kind == "multi_label":
            width = len(train_labels[0])
            return {"num_labels": width, "problem_type": "multi_label_classification",
                    "id2label": {i: str(i) for i in range(width)}, "label2id": {str(i): i for i in range(width)}}
        self.label_list = sorted(set(train_labels))
        return {"num_labels": len(self.label_list), "problem_type": "single_label_classification",
                "id2label": {i: str(l) for i, l in enumerate(self.label_list)},
                "label2id": {str(l): i for i, l in enumerate(self.label_list)}}

    # -- features ---------------------------------------------------------------------------
    def encode(self, batch: dict[str, list], training: bool) -> dict[str, list]:
        texts = [batch[k] for k in self.text_keys]
        padding = "max_length" if self.data_args.pad_to_max_length else False
        features = self.tokenizer(*texts, truncation=True, max_length=self.max_seq_length, padding=padding)
        special = set(self.tokenizer.all_special_ids)
        for i, ids in enumerate(features["input_ids"]):
            if all(t in special for t in ids):  # e.g. only characters the tokenizer drops
                name = batch["id"][i] if "id" in batch else f"number {i + 1} of its batch"
                raise UserError("empty_input", f"the text of example {name!r} ({texts[0][i][:40]!r}) tokenises to "
                                "nothing; fix or drop it")
        if "label" in batch:
            if self.kind == "single_label":
                index = {str(l): i for i, l in enumerate(self.label_list)}
                features["labels"] = [index[str(l)] for l in batch["label"]]
            else:
                features["labels"] = [[float(v) for v in l] if self.kind == "multi_label" else float(l)
                                      for l in batch["label"]]
        return features

    # -- outputs ----------------------------------------------------------------------------
    def prediction_records(self, outputs: list[np.ndarray], examples, features) -> list[dict]:
        ids = examples["id"] if "id" in examples.column_names else list(range(len(examples)))
        golds = examples["label"] if "label" in examples.column_names else [None] * len(examples)
        records = []
        for id_, gold, logits in zip(ids, golds, outputs):
            if self.kind == "regression":
                prediction: Any = float(logits[0])
            elif self.kind == "multi_label":
                prediction = [int(v > 0) for v in logits]
            else:
                prediction = self.label_list[int(np.argmax(logits))]
            records.append({"id": id_, "prediction": prediction, "label": gold})
        return records

    def score(self, records: list[dict]) -> dict[str, float]:
        if any(r["label"] is None for r in records):
            return {}
        predictions = [r["prediction"] for r in records]
        labels = [r["label"] for r in records]
        metric = self.task_args.metric_name
        if metric == "hoc":
            return classification.hoc_prf1(predictions, labels, [r["id"] for r in records])
        if metric == "pearsonr":
            return classification.pearsonr(predictions, labels)
        if metric == "PRF1":
            return classification.micro_prf1([str(p) for p in predictions], [str(l) for l in labels])
        if self.kind == "regression":
            return {"mse": float(np.mean((np.asarray(predictions) - np.asarray(labels)) ** 2))}
        return classification.accuracy([str(p) for p in predictions], [str(l) for l in labels])


if __name__ == "__main__":
    main(SeqClsTask)
