"""MRQA extractive question answering (SQuAD, NewsQA, TriviaQA, SearchQA, HotpotQA,
NaturalQuestions): span start/end over (question, context) windows.

    python -m linkbert.qa.run_qa --model_name_or_path michiyasunaga/LinkBERT-base \
        --train_file data/qa/squad_hf/train.json --validation_file data/qa/squad_hf/dev.json \
        --test_file data/qa/squad_hf/test.json --do_train --do_eval --do_predict \
        --preprocessing_num_workers 10 --per_device_train_batch_size 12 --fp16 \
        --learning_rate 3e-5 --num_train_epochs 2 --max_seq_length 384 --doc_stride 128 \
        --save_strategy no --evaluation_strategy steps --eval_steps 1000 \
        --output_dir runs/squad_hf/LinkBERT-base

As the original (HF 4.9 `run_qa.py`): a context longer than the window is cut into windows that
overlap by --doc_stride tokens; a training window is labelled at the first gold answer, or at
[CLS] when that answer is not wholly inside it; windows are padded to --max_seq_length (the
top-20 search of post-processing sees the padding, so --dynamic_padding changes results
slightly); evaluation runs under fp16 autocast with --fp16 and answers are picked as
`linkbert.qa.postprocess` explains. Scores: SQuAD v1.1 exact match and F1, in percent.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering

from linkbert.core.args import Precision
from linkbert.core.errors import UserError
from linkbert.core.run import main
from linkbert.core.task import RecordError, Task, TaskContext
from linkbert.metrics.squad import squad_v1
from linkbert.qa.postprocess import Windows, answer_text, nbest_entries, select_answers

logger = logging.getLogger("linkbert")


@dataclass(frozen=True)
class QAArguments:
    doc_stride: int = field(default=128, metadata={"help": "Tokens shared by consecutive windows of a long context."})
    n_best_size: int = field(default=20, metadata={"help": "Start and end positions searched per window."})
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer, in tokens."})
    dynamic_padding: bool = field(
        default=False, metadata={"help": "Pad batches to their longest window instead of --max_seq_length "
                                         "(faster; not the original: the answer search then sees fewer pad tokens)."})
    save_nbest: bool = field(default=False, metadata={"help": "Add each question's n best answers (`nbest`) to "
                                                               "the *_predictions.jsonl lines."})
    do_not_use_token_type_ids: bool = field(default=False, metadata={"help": "Drop token_type_ids (original flag)."})
    version_2_with_negative: bool = field(default=False, metadata={"help": "SQuAD v2: not supported (an error)."})
    null_score_diff_threshold: float = field(default=0.0, metadata={"help": "SQuAD v2 only; accepted, unused."})
    train_fraction: float = field(
        default=1.0, metadata={"help": "Few-shot: train on this fraction of the training questions, a subsample "
                                       "drawn with --seed before windowing (the paper's few-shot MRQA: 0.1)."})
    dataset_name: Optional[str] = field(default=None, metadata={"help": "Not supported: give --train_file etc."})
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Not supported."})


def _context_span(sequence_ids: list, context_id: int) -> tuple[int, int]:
    """First and last token of the context in a window; (0, -1) if it holds none."""
    if context_id not in sequence_ids:
        return 0, -1
    return sequence_ids.index(context_id), len(sequence_ids) - 1 - sequence_ids[::-1].index(context_id)


def answer_token_span(offsets: list, lo: int, hi: int, start_char: int, end_char: int,
                      cls_index: int) -> tuple[int, int]:
    """Training label of one window, as the original computed it: [CLS] unless the answer's
    characters lie within the window's context tokens lo..hi; else the last token starting at or
    before the answer start, and the first context token ending at or after the answer end.

    Kept as the original did it, quirk included: when the answer starts in the window's last
    context token, the start scan runs on through [SEP] and padding (offsets (0, 0)) and labels
    the start at the window's last position."""
    if hi < lo or not (offsets[lo][0] <= start_char and offsets[hi][1] >= end_char):
        return cls_index, cls_index
    start = lo
    while start < len(offsets) and offsets[start][0] <= start_char:
        start += 1
    end = hi
    while end >= lo and offsets[end][1] >= end_char:  # (the original ran on into [SEP]: same result)
        end -= 1
    return start - 1, end + 1


class QATask(Task):
    name = "qa"
    model_class = AutoModelForQuestionAnswering
    arguments = QAArguments
    default_max_seq_length = 384
    eval_under_autocast = True  # the original's QA features carry no labels: fp16 logits at evaluation
    sample_limit_cuts_features = True
    main_metric = "f1"
    # The model takes the answer span by name; evaluation features carry none.
    model_inputs = ("input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions")
    label_columns = ("start_positions", "end_positions")
    feature_noun = "windows"  # of the questions' contexts: the training counts windows
    padding_free_by_default = False  # not result-neutral: the original's span loss sees the padding logits

    def __init__(self, *args) -> None:
        super().__init__(*args)
        a = self.task_args
        if a.version_2_with_negative:
            raise UserError("unsupported_setup", "--version_2_with_negative (SQuAD v2, unanswerable questions) is "
                            "not implemented; MRQA has an answer for every question: drop the flag")
        if a.dataset_name or a.dataset_config_name:
            raise UserError("unsupported_setup", "--dataset_name/--dataset_config_name (hub datasets) are not "
                            "supported; convert the data with scripts/preprocess_mrqa.py and give --train_file, "
                            "--validation_file, --test_file")
        if a.dynamic_padding and self.data_args.pad_to_max_length:
            raise UserError("conflicting_flags", "--dynamic_padding and --pad_to_max_length together: QA pads to "
                            "--max_seq_length unless --dynamic_padding is given; choose one")
        if not 0 < a.train_fraction <= 1:
            raise UserError("bad_flag_value", f"--train_fraction {a.train_fraction}: must be in (0, 1] (0.1 trains "
                            "on a tenth of the questions)")
        for flag, low in (("doc_stride", 0), ("n_best_size", 1), ("max_answer_length", 1)):
            if getattr(a, flag) < low:
                raise UserError("bad_flag_value", f"--{flag} {getattr(a, flag)}: must be at least {low}")
        self.pads_to_max_length = not a.dynamic_padding  # the original padded QA windows to max length

    # -- data -------------------------------------------------------------------------------
    def record_format(self, first_record: dict, split: str, run_format: Optional[bool]) -> bool:
        """Whether the file's questions carry answers (a test file may have none)."""
        return "answers" in first_record or split == "train"

    def validate_record(self, record: dict, split: str, fmt: bool) -> tuple:
        """Keeps (id, how many of its answers differ from the context at their offset); `fmt`:
        whether the file has answers."""
        for key in ("id", "question", "context"):
            if key not in record:
                raise RecordError("missing_field", f"no {key!r} field")
        if not isinstance(record["id"], (str, int)) or isinstance(record["id"], bool):
            raise RecordError("wrong_type", f"'id' must be a string or an integer, found {type(record['id']).__name__}")
        for key in ("question", "context"):
            if not isinstance(record[key], str):
                raise RecordError("wrong_type", f"{key!r} must be a string, found {type(record[key]).__name__}")
            if not record[key].strip():
                raise RecordError("empty_input", f"{key!r} is empty")
        if ("answers" in record) != fmt:
            raise RecordError("missing_field", "no 'answers' field" if fmt else
                              "'answers' here but not in the file's first record; give answers for every "
                              "question or for none")
        if not fmt:
            return record["id"], 0
        return record["id"], self._check_answers(record["answers"], record["context"], split)

    def _check_answers(self, answers: Any, context: str, split: str) -> int:
        """Returns how many answers differ from the context at their offset (counted, not fatal:
        MRQA's answer texts are normalised)."""
        if not isinstance(answers, dict) or not isinstance(answers.get("answer_start"), list) \
                or not isinstance(answers.get("text"), list):
            raise RecordError("wrong_type", "'answers' must be {\"answer_start\": [int, ...], \"text\": [str, ...]}")
        starts, texts = answers["answer_start"], answers["text"]
        if len(starts) != len(texts):
            raise RecordError("unequal_lengths", f"'answers' has {len(starts)} answer_start and {len(texts)} "
                              "text entries")
        if not texts and split != "train":
            raise RecordError("empty_input", "'answers' is empty: SQuAD v1.1 scoring needs at least one gold answer "
                              "per question (remove the question, or 'answers' from every record to predict only)")
        mismatches = 0
        for start, text in zip(starts, texts):
            if not isinstance(start, int) or isinstance(start, bool) or not isinstance(text, str):
                raise RecordError("wrong_type", f"answer ({start!r}, {text!r}): answer_start must be an integer "
                                  "and text a string")
            if not 0 <= start < len(context):
                raise RecordError("answer_outside_context", f"answer {text!r} starts at character {start}, outside "
                                  f"the context (length {len(context)}); fix or drop this answer")
            mismatches += context[start:start + len(text)] != text
        return mismatches

    def check_splits(self, splits: dict[str, list]) -> None:
        for split, kept in splits.items():
            first = type(kept[0][0])
            mixed = next((i for i, (id_, _) in enumerate(kept, 1) if type(id_) is not first), None)
            if mixed:  # `datasets` would turn them all into strings: predictions would not match their ids
                raise RecordError("wrong_type", f"'id' {kept[mixed - 1][0]!r} is a {type(kept[mixed - 1][0]).__name__}, "
                                  f"the first id a {first.__name__}; give every id as a string", line=mixed, split=split)
            ids = Counter(id_ for id_, _ in kept)
            duplicates = sum(n - 1 for n in ids.values() if n > 1)
            mismatches = sum(m for _, m in kept)
            if duplicates or mismatches:
                logger.info("%s: %d answer(s) whose text differs from the context at answer_start (kept: MRQA "
                            "answer texts are normalised); %d duplicate question id(s) (each question is "
                            "answered and scored on its own)", split, mismatches, duplicates)

    def training_examples(self, examples):
        """--train_fraction: a seeded subsample of the questions, in file order."""
        fraction = self.task_args.train_fraction
        if fraction == 1:
            return examples
        chosen = fraction_subsample(len(examples), fraction, self.training_args.seed)
        logger.info("--train_fraction %g: training on %d of %d questions (seed %d)", fraction, len(chosen),
                    len(examples), self.training_args.seed)
        return examples.select(chosen)

    # -- features ---------------------------------------------------------------------------
    def encode(self, batch: dict[str, list], ctx: TaskContext, training: bool) -> dict[str, list]:
        tok, a = ctx.tokenizer, self.task_args
        question_first = tok.padding_side == "right"  # the original: the padding side decides the order
        first, second = ("question", "context") if question_first else ("context", "question")
        try:
            enc = tok(batch[first], batch[second], truncation="only_second" if question_first else "only_first",
                      max_length=ctx.max_seq_length, stride=a.doc_stride, return_overflowing_tokens=True,
                      return_offsets_mapping=True, padding=ctx.padding)
        except BaseException as e:  # the Rust tokenizer panics (a BaseException) on a question too long
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self._raise_if_no_room(batch, ctx)
            raise
        if a.do_not_use_token_type_ids:
            enc.pop("token_type_ids", None)
        example = enc.pop("overflow_to_sample_mapping")
        offsets = enc.pop("offset_mapping")
        context_id = 1 if question_first else 0
        spans = [_context_span(enc.sequence_ids(i), context_id) for i in range(len(example))]
        # One numpy array per window: `datasets` writes these several times faster than nested
        # Python lists, whose every element it inspects.
        out: dict[str, list[Any]] = {k: [np.asarray(row, dtype=np.int32) for row in v] for k, v in enc.items()}
        if training:
            starts, ends = [], []
            for i, (lo, hi) in enumerate(spans):
                answers = batch["answers"][example[i]]
                cls_index = enc["input_ids"][i].index(tok.cls_token_id)
                if answers["answer_start"]:
                    start_char = answers["answer_start"][0]
                    end_char = start_char + len(answers["text"][0])
                    start, end = answer_token_span(offsets[i], lo, hi, start_char, end_char, cls_index)
                else:
                    start, end = cls_index, cls_index
                starts.append(start)
                ends.append(end)
            out["start_positions"], out["end_positions"] = starts, ends
        else:
            window_index: list[int] = []
            for i in range(len(example)):  # 0, 1, ... over the windows of each question
                window_index.append(window_index[-1] + 1 if i and example[i] == example[i - 1] else 0)
            out["window_index"] = window_index
            out["context_start"] = [lo for lo, _ in spans]
            out["context_end"] = [hi for _, hi in spans]
            out["offset_mapping"] = [np.asarray(row, dtype=np.int32) for row in offsets]
        return out

    def _raise_if_no_room(self, batch: dict[str, list], ctx: TaskContext) -> None:
        room = ctx.max_seq_length - ctx.tokenizer.num_special_tokens_to_add(pair=True) - self.task_args.doc_stride
        lengths = [len(ids) for ids in ctx.tokenizer(batch["question"], add_special_tokens=False)["input_ids"]]
        for id_, n in zip(batch["id"], lengths):
            if n >= room:
                raise UserError("bad_flag_value", f"the question of id {id_!r} is {n} tokens long: with "
                                f"--max_seq_length {ctx.max_seq_length} and --doc_stride {self.task_args.doc_stride} "
                                f"a window has room for at most {room - 1} question tokens; raise --max_seq_length "
                                "or lower --doc_stride")

    # -- outputs ----------------------------------------------------------------------------
    def output_tensor(self, outputs) -> torch.Tensor:
        return torch.stack([outputs.start_logits, outputs.end_logits], dim=1)  # (batch, 2, length)

    def prediction_records(self, outputs: list[np.ndarray], examples, features, ctx: TaskContext) -> list[dict]:
        windows = windows_from_features(features)
        a = self.task_args
        # Under --fp16 the original's logits were float16 arrays and its scores float16 sums.
        dtype = np.float16 if ctx.precision is Precision.FP16 else np.float32
        choices = select_answers(outputs, windows, len(examples), a.n_best_size, a.max_answer_length,
                                 dtype=dtype, keep_nbest=a.save_nbest)
        columns = examples.select_columns([c for c in ("id", "context", "answers") if c in examples.column_names])
        data = columns.to_dict()
        records = []
        for i, (id_, context) in enumerate(zip(data["id"], data["context"])):
            found = int(choices.num_candidates[i])
            record = {"id": id_, "prediction_text": answer_text(context, int(choices.char_start[i]),
                                                                int(choices.char_end[i]), found),
                      "answers": data["answers"][i]["text"] if "answers" in data else None}
            if choices.nbest is not None:
                record["nbest"] = nbest_entries(context, choices.nbest[i], found)
            records.append(record)
        return records

    def score(self, records: list[dict]) -> dict[str, float]:
        if any(r["answers"] is None for r in records):
            return {}
        return squad_v1([r["prediction_text"] for r in records], [r["answers"] for r in records])

    def extra_outputs(self, prefix: str, suffix: str, records: list[dict]) -> dict[str, str]:
        """`<prefix>_predictions_official.json`: {question id: answer text}, the file MRQA's and
        SQuAD's official evaluation scripts read (scripts/mrqa_official_eval.py)."""
        answers = {str(r["id"]): r["prediction_text"] for r in records}
        return {f"{prefix}{suffix}_predictions_official.json": json.dumps(answers, ensure_ascii=False, indent=1) + "\n"}

    def metric_names(self, ctx: TaskContext) -> set[str]:
        return {"exact_match", "f1", "duplicate_ids"}

    def summary(self, records: list[dict], ctx: TaskContext) -> dict[str, Any]:
        ids = Counter(r["id"] for r in records)
        duplicates = sum(n - 1 for n in ids.values() if n > 1)
        return {"duplicate_ids": duplicates} if duplicates else {}


def fraction_subsample(n: int, fraction: float, seed: int) -> list[int]:
    """Indices of round(fraction * n) questions (at least one) drawn without replacement with
    `random.Random(seed)`, sorted: the same questions for the same seed and file, whatever the
    model or tokenizer."""
    import random

    k = max(1, min(n, round(fraction * n)))
    return sorted(random.Random(seed).sample(range(n), k))


def windows_from_features(features) -> Windows:
    """The post-processing columns of the features, read through Arrow (no Python objects per
    token). The question of each window is recovered from `window_index`: features keep
    question order, and window 0 starts the next question."""
    import pyarrow.compute as pc

    table = features.select_columns(["window_index", "context_start", "context_end", "offset_mapping"]) \
        .with_format("arrow")[:]
    offsets = table.column("offset_mapping").combine_chunks()
    lengths = pc.list_value_length(offsets).to_numpy()
    window_index = table.column("window_index").to_numpy()
    return Windows(example_index=np.cumsum(window_index == 0) - 1,
                   context_start=table.column("context_start").to_numpy(),
                   context_end=table.column("context_end").to_numpy(),
                   offsets=offsets.flatten().flatten().to_numpy().reshape(-1, 2),
                   token_start=np.concatenate([[0], np.cumsum(lengths)]))


if __name__ == "__main__":
    main(QATask)
