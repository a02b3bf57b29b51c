"""Convert MedQA-USMLE (4 options) into the layout that `linkbert.mc` reads.

    python scripts/preprocess_medqa.py
    python scripts/preprocess_medqa.py --raw_dir /data/medqa/data_clean/questions/US/4_options

Reads   <raw_dir>/phrases_no_exclude_{train,dev,test}.jsonl
        (<raw_dir> defaults to raw_data/medqa/data_clean/questions/US/4_options)
Writes  <out_dir>/mc/medqa_usmle_hf/{train,dev,test}.json

One record per question line: id "<split>-<line index, 5 digits>", sent1 = the question, sent2 = "",
ending0..3 = options A..D, label = the answer letter as 0..3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from preprocess_common import (parse_io_args, DataError, add_io_args, answer_index, check_count, find_file,
                               length_summary, mc_record, parse_json, read_lines, repo_path,
                               require, run_cli, write_jsonl)

sys.path.insert(0, str(repo_path("src")))
from linkbert.tasks import TASKS  # noqa: E402  the task table: where each data set goes

SIZES = {"train": 10178, "dev": 1272, "test": 1273}


def convert(path: Path, split: str) -> list[dict]:
    out = []
    answer_mismatches = 0
    for lineno, line in read_lines(path):
        question = parse_json(line, path, lineno)
        options = require(question, "options", dict, path, lineno, "question")
        endings = []
        for letter in "ABCD":
            if not isinstance(options.get(letter), str):
                raise DataError(path, lineno, f"option {letter} is missing", "is this the 4_options file?")
            endings.append(options[letter])
        label = answer_index(question.get("answer_idx"), path, lineno)
        answer_mismatches += question.get("answer", endings[label]) != endings[label]
        # the original numbered the file's lines from 0
        out.append(mc_record(f"{split}-{lineno - 1:05d}", require(question, "question", str, path, lineno),
                             endings, label))
    check_count(f"medqa_usmle {split} questions", len(out), SIZES[split])
    print(f"  {length_summary([len(r['sent1']) + max(len(r[f'ending{i}']) for i in range(4)) for r in out])}")
    if answer_mismatches:
        print(f"  questions whose 'answer' text differs from the option at 'answer_idx': {answer_mismatches} "
              "(the label follows answer_idx, as upstream)")
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_args(parser, repo_path("raw_data/medqa/data_clean/questions/US/4_options"), repo_path("data"))
    parser.add_argument("--splits", nargs="+", choices=list(SIZES), default=list(SIZES),
                        help="which splits to convert (default: all)")
    args = parse_io_args(parser, argv)
    converted = {}
    for split in args.splits:  # convert every split before writing, so a bad file writes nothing
        path = find_file([args.raw_dir / f"phrases_no_exclude_{split}.jsonl"],
                         "unpack MedQA's data_clean.zip (see scripts/download_raw_data.sh) or pass --raw_dir")
        print(f"medqa_usmle {split} <- {path}")
        converted[split] = convert(path, split)
    for split, records in converted.items():
        write_jsonl(records, args.out_dir / TASKS["medqa_usmle_hf"].data / f"{split}.json")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
