"""Convert the MRQA 2019 shared-task files into the layout that `linkbert.qa` reads.

    python scripts/preprocess_mrqa.py                       # all six datasets
    python scripts/preprocess_mrqa.py --datasets squad hotpot --raw_dir /data/mrqa

Reads   <raw_dir>/{train,dev}/<Name>.jsonl[.gz]   (Name: SQuAD, NewsQA, TriviaQA, SearchQA, HotpotQA,
        NaturalQuestions; MRQA's own TriviaQA-web / NaturalQuestionsShort names work too)
        <split_dir>/inhouse_split_<name>.json      (the original repository's scripts/inhouse_splits/)
Writes  <out_dir>/qa/<name>_hf/{train,dev,test}.json

The official dev file is the source of both the in-house dev and test sets: the split file lists
which paragraphs go to each, and they are written in the list's order, as the original did. One
record per question: `id` (else `qid`), the stripped question, the context, and the gold answers
from `detected_answers` (text, start of the first char span).
"""

from __future__ import annotations

import argparse
import sys
import re
from pathlib import Path
from typing import Iterator, Optional, Sequence

from preprocess_common import (parse_io_args, DataError, add_io_args, check_count, find_file, length_summary,
                               load_json_file, parse_json, read_lines, repo_path,
                               require, run_cli, write_jsonl)

sys.path.insert(0, str(repo_path("src")))
from linkbert.tasks import TASKS  # noqa: E402  the task table: where each data set goes

# output name -> raw file stems: the name the original download script saved under first,
# then the MRQA release's own name.
DATASETS = {
    "squad": ("SQuAD",),
    "newsqa": ("NewsQA",),
    "triviaqa": ("TriviaQA", "TriviaQA-web"),
    "searchqa": ("SearchQA",),
    "hotpot": ("HotpotQA",),
    "naturalqa": ("NaturalQuestions", "NaturalQuestionsShort"),
}

# Paragraphs of the official dev file in the in-house (dev, test) halves (the release's in-house split files).
INHOUSE_SIZES = {
    "squad": (1033, 1034), "newsqa": (319, 319), "triviaqa": (3892, 3893),
    "searchqa": (8490, 8490), "hotpot": (2950, 2951), "naturalqa": (6418, 6418),
}

Paragraph = tuple[int, dict]  # (line number in the raw file, parsed paragraph)


class AnswerStats:
    """Irregularities that the real data has: counted and reported, never fatal."""

    def __init__(self) -> None:
        self.questions = 0
        self.mismatches = 0
        self.first_mismatch = ""
        self.no_answer = 0
        self.ids: set = set()
        self.duplicate_ids = 0
        self.lengths: list[int] = []

    def report(self) -> None:
        print(f"  questions: {self.questions}; {length_summary(self.lengths)}")
        if self.mismatches:
            print(f"  answers whose text differs from the context at their span: {self.mismatches} "
                  f"(kept, as upstream; first at {self.first_mismatch})")
        if self.no_answer:
            print(f"  questions without detected answers: {self.no_answer}")
        if self.duplicate_ids:
            print(f"  duplicate question ids: {self.duplicate_ids}")


def raw_file(raw_dir: Path, split: str, name: str) -> Path:
    stems = DATASETS[name]
    candidates = [raw_dir / split / f"{stem}{ext}" for stem in stems for ext in (".jsonl", ".jsonl.gz")]
    return find_file(candidates, "run scripts/download_raw_data.sh or pass --raw_dir")


def read_paragraphs(path: Path) -> Iterator[Paragraph]:
    """Paragraph lines of an MRQA file; a first line with a `header` key is skipped."""
    for lineno, line in read_lines(path):
        if not line.strip():
            raise DataError(path, lineno, "empty line", "remove it (MRQA files have one JSON object per line)")
        obj = parse_json(line, path, lineno)
        if isinstance(obj, dict) and "header" in obj:
            if lineno == 1:
                continue
            raise DataError(path, lineno, "a header line in the middle of the file",
                            "are two files concatenated? keep one")
        yield lineno, obj


def question_records(paragraph: Paragraph, path: Path, stats: AnswerStats) -> Iterator[dict]:
    """One record per question of a paragraph, in the original release's field order."""
    lineno, par = paragraph
    context = require(par, "context", str, path, lineno, "paragraph")
    for k, qa in enumerate(require(par, "qas", list, path, lineno, "paragraph")):
        what = f"question {k} of the paragraph"
        if not isinstance(qa, dict) or ("id" not in qa and "qid" not in qa):
            raise DataError(path, lineno, f"{what} has neither 'id' nor 'qid'", "is this an MRQA file?")
        qid = qa["id"] if "id" in qa else qa["qid"]  # upstream prefers `id`
        question = require(qa, "question", str, path, lineno, what).strip()
        texts, starts = [], []
        for answer in require(qa, "detected_answers", list, path, lineno, what):
            text = require(answer, "text", str, path, lineno, f"a detected answer of {what}")
            spans = require(answer, "char_spans", list, path, lineno, f"a detected answer of {what}")
            if (not spans or not isinstance(spans[0], list) or len(spans[0]) != 2
                    or not all(isinstance(x, int) for x in spans[0])):
                raise DataError(path, lineno, f"answer {text!r} of {what} has no [start, end] char span",
                                "is this an MRQA file?")
            start, end = spans[0]
            if not 0 <= start < len(context):
                raise DataError(path, lineno, f"answer {text!r} of {what} starts at {start}, outside "
                                f"the context (length {len(context)})", "fix or drop this answer")
            if context[start:end + 1] != text:  # char spans are inclusive at both ends
                stats.mismatches += 1
                stats.first_mismatch = stats.first_mismatch or f"{path}:{lineno}"
            texts.append(text)
            starts.append(start)
        stats.questions += 1
        stats.no_answer += not texts
        stats.duplicate_ids += qid in stats.ids
        stats.ids.add(qid)
        stats.lengths.append(len(question) + len(context))
        yield {"id": qid, "question": question, "context": context,
               "answers": {"answer_start": starts, "text": texts}}


def records(paragraphs: Iterator[Paragraph], path: Path, stats: AnswerStats) -> Iterator[dict]:
    for paragraph in paragraphs:
        yield from question_records(paragraph, path, stats)


def nth_number_line(text: str, key: str, n: int) -> Optional[int]:
    """Line of the n-th number in the JSON list `"key": [...]` of `text`, for error messages."""
    key_at = text.find(f'"{key}"')
    list_at = text.find("[", key_at) if key_at >= 0 else -1
    if list_at < 0:
        return None
    for i, number in enumerate(re.finditer(r"-?\d+", text[list_at:])):
        if i == n:
            return text.count("\n", 0, list_at + number.start()) + 1
    return None


def read_split(path: Path, n_paragraphs: int, dev_path: Path) -> dict[str, list[int]]:
    """The in-house split, checked to cover the dev file's paragraphs exactly once."""
    split, text = load_json_file(path)
    for key in ("dev", "test"):
        indices = require(split, key, list, path, 1, "split file")
        for k, index in enumerate(indices):
            where = nth_number_line(text, key, k)
            if not isinstance(index, int) or isinstance(index, bool):
                raise DataError(path, where, f"{key}[{k}] = {index!r} is not an integer",
                                "use the original inhouse_split file")
            if not 0 <= index < n_paragraphs:
                raise DataError(path, where, f"{key}[{k}] = {index} is out of range: {dev_path} has "
                                f"{n_paragraphs} paragraphs (0..{n_paragraphs - 1})",
                                "the split file does not belong to this dev file; use the official "
                                "MRQA dev file and the original inhouse_split file")
    seen: dict[int, str] = {}
    for key in ("dev", "test"):
        for k, index in enumerate(split[key]):
            if index in seen:
                raise DataError(path, nth_number_line(text, key, k),
                                f"paragraph {index} is listed twice ({seen[index]} and {key}[{k}])",
                                "use the original inhouse_split file")
            seen[index] = f"{key}[{k}]"
    if len(seen) != n_paragraphs:
        missing = next(i for i in range(n_paragraphs) if i not in seen)
        raise DataError(path, None, f"{n_paragraphs - len(seen)} of the {n_paragraphs} paragraphs of "
                        f"{dev_path} are in neither dev nor test (first: paragraph {missing})",
                        "the split file does not belong to this dev file; use the official MRQA dev "
                        "file and the original inhouse_split file")
    return split


def process(name: str, raw_dir: Path, split_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write train/dev/test of one dataset; returns the number of questions per split.

    The in-house dev and test sets are built and checked first, so that a bad split file or dev
    file stops the run before anything is written; train is streamed (it can be large)."""
    target = out_dir / TASKS[f"{name}_hf"].data
    dev_path = raw_file(raw_dir, "dev", name)
    split_path = find_file([split_dir / f"inhouse_split_{name}.json"],
                           "run scripts/download_raw_data.sh or pass --split_dir")
    train_path = raw_file(raw_dir, "train", name)
    paragraphs = list(read_paragraphs(dev_path))
    split = read_split(split_path, len(paragraphs), dev_path)
    inhouse = {}
    for part, expected in zip(("dev", "test"), INHOUSE_SIZES[name]):
        print(f"{name} {part} <- {dev_path} (paragraphs listed in {split_path})")
        check_count(f"{name} {part} paragraphs", len(split[part]), expected)
        stats = AnswerStats()
        # in the split file's order, as upstream
        inhouse[part] = list(records((paragraphs[i] for i in split[part]), dev_path, stats))
        stats.report()

    print(f"{name} train <- {train_path}")
    stats = AnswerStats()
    counts = {"train": write_jsonl(records(read_paragraphs(train_path), train_path, stats), target / "train.json")}
    stats.report()
    for part, examples in inhouse.items():
        counts[part] = write_jsonl(examples, target / f"{part}.json")
    return counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_args(parser, repo_path("raw_data/mrqa"), repo_path("data"))
    parser.add_argument("--split_dir", type=Path, default=repo_path("raw_data/mrqa/inhouse_splits"),
                        help="folder with inhouse_split_<name>.json (default: %(default)s)")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS),
                        metavar="NAME", help=f"any of {', '.join(DATASETS)} (default: all)")
    args = parse_io_args(parser, argv)
    for name in args.datasets:
        process(name, args.raw_dir, args.split_dir, args.out_dir)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
