"""Convert GLUE into the JSON Lines layout that `linkbert.seqcls` reads (with `--task_name`).

    python scripts/preprocess_glue.py --raw_dir glue_data --out_dir data             # all eight tasks
    python scripts/preprocess_glue.py --raw_dir glue_data --out_dir data --tasks RTE STS-B
    python scripts/preprocess_glue.py --from_hub --out_dir data --tasks rte          # HF nyu-mll/glue (internet)

Reads   <raw_dir>/<TASK>/{train,dev,test}.tsv as the official GLUE download leaves them (MNLI:
        train.tsv, dev_matched.tsv, dev_mismatched.tsv, test_matched.tsv, test_mismatched.tsv)
Writes  <out_dir>/seqcls/glue/<task>/{train,dev,test}.json, <task> in cola sst2 mrpc qqp stsb mnli
        qnli rte (MNLI: dev.json and test.json are the matched sets, plus dev_mismatched.json and
        test_mismatched.json)

Each line: `sentence` (CoLA, SST-2) or `sentence1`/`sentence2`, then `label` (the tsv's label
string; STS-B a float) and `id` (the file's `index`/`id` column, else the row's position from 0).
Test files have no labels, so their records have none; a test run writes the GLUE server's
submission file from them. Files are read as tab-separated with no quoting (`csv.QUOTE_NONE`: a
`"` is an ordinary character), header names deciding the columns (CoLA's train and dev have no
header). A row with the wrong number of columns is an error naming file and line, except in QQP,
whose official files have such rows: they are skipped, counted and reported. Nothing is written
unless every file of every task given converts.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from preprocess_common import DataError, add_io_args, check_count, parse_io_args, repo_path, run_cli, write_jsonl

sys.path.insert(0, str(repo_path("src")))
from linkbert.metrics.glue import LABELS, STSB_RANGE, TASKS  # noqa: E402

csv.field_size_limit(sys.maxsize)  # a few MNLI parse trees are long


@dataclass(frozen=True)
class Spec:
    folder: str                # the official folder name
    text: tuple[str, ...]      # header columns of the text fields, in output order
    label: Optional[str]       # header column of the label in train/dev (CoLA: by position)
    id_column: Optional[str]   # the column that identifies a row ("index", QQP "id"); else position


SPECS = {
    "cola": Spec("CoLA", ("sentence",), "label", "index"),
    "sst2": Spec("SST-2", ("sentence",), "label", "index"),
    "mrpc": Spec("MRPC", ("#1 String", "#2 String"), "Quality", "index"),
    "qqp": Spec("QQP", ("question1", "question2"), "is_duplicate", "id"),
    "stsb": Spec("STS-B", ("sentence1", "sentence2"), "score", "index"),
    "mnli": Spec("MNLI", ("sentence1", "sentence2"), "gold_label", "index"),
    "qnli": Spec("QNLI", ("question", "sentence"), "label", "index"),
    "rte": Spec("RTE", ("sentence1", "sentence2"), "label", "index"),
}
COLA_COLUMNS = ("source", "label", "original_label", "sentence")  # CoLA train/dev: no header
# Output file -> raw file, per task.
FILES = {task: {"train": "train", "dev": "dev", "test": "test"} for task in SPECS}
FILES["mnli"] = {"train": "train", "dev": "dev_matched", "dev_mismatched": "dev_mismatched",
                 "test": "test_matched", "test_mismatched": "test_mismatched"}
# Rows of the official download (train, dev): another count is an error unless --custom_data.
# QQP: not checked (how many rows its broken lines take is not documented; they are counted).
SIZES = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408), "qqp": (None, None),
         "stsb": (5749, 1500), "mnli": (392702, 9815), "qnli": (104743, 5463), "rte": (2490, 277)}
RAW_HINT = "download GLUE (the official glue_data folder), or pass --raw_dir, or use --from_hub"


def task_name(name: str) -> str:
    """cola, sst2, ... from an official (CoLA, SST-2, STS-B) or lower-case name."""
    key = name.lower().replace("-", "")
    if key not in SPECS:
        folders = ", ".join(spec.folder for spec in SPECS.values())
        raise DataError("--tasks", None, f"unknown task {name!r}",
                        f"choose from {folders} (WNLI is left out, as in the paper)")
    return key


def tsv_rows(path: Path, header: Optional[Sequence[str]]) -> Iterator[tuple[int, list[str], list[str]]]:
    """(line number, header, fields) of each row; the header is the first line unless given."""
    with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: MRPC's header starts with a BOM
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for fields in reader:
            if header is None:
                header = [h.strip() for h in fields]
                continue
            if fields == [] or fields == [""]:
                continue
            yield reader.line_num, list(header), fields


def parse_label(task: str, value: str, path: Path, line: int):
    if task == "stsb":
        try:
            score = float(value)
        except ValueError:
            raise DataError(path, line, f"STS-B score {value!r} is not a number", "fix or remove the row") from None
        low, high = STSB_RANGE
        if not low <= score <= high:
            raise DataError(path, line, f"STS-B score {score:g} is outside {low:g}-{high:g}", "fix or remove the row")
        return score
    if value not in LABELS[task]:
        raise DataError(path, line, f"label {value!r} is not one of {task}'s labels ({', '.join(LABELS[task])})",
                        "is this the right task's file?")
    return value


def convert_file(task: str, path: Path, split: str) -> tuple[list[dict], int]:
    """The records of one raw file and how many malformed rows were skipped (QQP only)."""
    spec = SPECS[task]
    labelled = not split.startswith("test")
    header = COLA_COLUMNS if task == "cola" and labelled else None
    records, skipped = [], 0
    for position, (line, columns, fields) in enumerate(tsv_rows(path, header)):
        if len(fields) != len(columns):
            if task == "qqp":  # the official QQP files hold rows broken by stray newlines
                skipped += 1
                continue
            raise DataError(path, line, f"{len(fields)} tab-separated columns, the header has {len(columns)}",
                            "the file must be read with no quoting; is it the official, complete file?")
        row = dict(zip(columns, fields))
        needed = list(spec.text) + ([spec.label] if labelled else [])
        missing = [c for c in needed if c not in row]
        if missing:
            raise DataError(path, line, f"no column {missing[0]!r} in the header ({', '.join(columns)})",
                            f"is this {spec.folder}'s {split} file?")
        record: dict = {}
        names = ("sentence",) if len(spec.text) == 1 else ("sentence1", "sentence2")
        for name, column in zip(names, spec.text):
            record[name] = row[column]
        if labelled:
            record["label"] = parse_label(task, row[spec.label], path, line)
        index = row.get(spec.id_column, str(position - skipped))
        record["id"] = int(index) if index.isdigit() else index
        records.append(record)
    if not records:
        raise DataError(path, None, "no rows", "give the complete file")
    return records, skipped


def from_raw(task: str, raw_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for name, raw_name in FILES[task].items():
        path = raw_dir / SPECS[task].folder / f"{raw_name}.tsv"
        if not path.is_file():
            raise DataError(path, None, "file not found", RAW_HINT)
        records, skipped = convert_file(task, path, name)
        if skipped:
            print(f"  {SPECS[task].folder}/{raw_name}.tsv: {skipped} malformed row(s) skipped (wrong column "
                  "count; the official QQP files have such rows)")
        out[name] = records
    return out


def from_hub(task: str, load: Optional[Callable] = None) -> dict[str, list[dict]]:
    """The HF `nyu-mll/glue` dataset in the same layout (its integer labels mapped back to the
    tsv strings; its test labels, -1, dropped)."""
    if load is None:
        from datasets import load_dataset as load
    dataset = load("nyu-mll/glue", task)
    hub_splits = {"train": "train", "dev": "validation", "test": "test"}
    if task == "mnli":
        hub_splits = {"train": "train", "dev": "validation_matched", "dev_mismatched": "validation_mismatched",
                      "test": "test_matched", "test_mismatched": "test_mismatched"}
    columns = {"cola": ("sentence",), "sst2": ("sentence",), "mrpc": ("sentence1", "sentence2"),
               "qqp": ("question1", "question2"), "stsb": ("sentence1", "sentence2"),
               "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
               "rte": ("sentence1", "sentence2")}[task]
    out = {}
    for name, hub_name in hub_splits.items():
        split = dataset[hub_name]
        names = getattr(split.features["label"], "names", None)
        records = []
        for row in split:
            record = dict(zip(("sentence",) if len(columns) == 1 else ("sentence1", "sentence2"),
                              (row[c] for c in columns)))
            if row["label"] != -1:
                value = row["label"]
                record["label"] = float(value) if task == "stsb" else (names[value] if task in ("mnli", "qnli", "rte")
                                                                       else str(value))
            record["id"] = row["idx"]
            records.append(record)
        out[name] = records
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_io_args(parser, Path("glue_data"), repo_path("data"))  # --raw_dir: the official folder (CoLA/, SST-2/, ...)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), help="tasks to convert (default: all eight)")
    parser.add_argument("--from_hub", action="store_true", help="read HF nyu-mll/glue instead of --raw_dir")
    args = parse_io_args(parser, argv)
    tasks = [task_name(t) for t in args.tasks]
    converted = {}
    for task in tasks:  # everything is read and checked before anything is written
        print(f"{SPECS[task].folder}:")
        converted[task] = from_hub(task) if args.from_hub else from_raw(task, args.raw_dir)
        for name, records in converted[task].items():
            expected = dict(zip(("train", "dev"), SIZES[task])).get(name) if not args.from_hub else None
            check_count(f"{name} records", len(records), expected)
    for task, splits in converted.items():
        for name, records in splits.items():
            write_jsonl(records, args.out_dir / "seqcls" / "glue" / task / f"{name}.json")
    print(f"wrote {', '.join(converted)} under {args.out_dir / 'seqcls' / 'glue'}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
