"""Convert MMLU subjects (professional medicine by default) into the layout that `linkbert.mc` reads.

    python scripts/preprocess_mmlu.py
    python scripts/preprocess_mmlu.py --raw_dir /data/mmlu/data --subjects professional_medicine anatomy

Reads   <raw_dir>/{dev,val,test}/<subject>_{dev,val,test}.csv   (<raw_dir> defaults to raw_data/mmlu/data)
        CSV rows without header: question, A, B, C, D, answer letter
Writes  <out_dir>/mc/mmlu_hf/<subject>/{dev,val,test}.json

One record per row: id "<subject>_<split>-<row index, 5 digits>", sent1 = the question, sent2 = "",
ending0..3 = the options, label = the answer letter as 0..3.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from preprocess_common import (parse_io_args, add_io_args, answer_index, check_count, csv_rows, find_file, length_summary,
                               mc_record, repo_path, run_cli, write_jsonl)

SPLITS = ("dev", "val", "test")
# professional_medicine: the final MMLU release has 272 test questions, an early public one 282
KNOWN_SIZES = {"professional_medicine": {"dev": 5, "val": 31, "test": (272, 282)}}
COLUMNS = ("question", "A", "B", "C", "D", "answer")


def convert(path: Path, subject: str, split: str) -> list[dict]:
    out = []
    for i, (lineno, row) in enumerate(csv_rows(path, COLUMNS)):
        label = answer_index(row[5], path, lineno)
        out.append(mc_record(f"{subject}_{split}-{i:05d}", row[0], row[1:5], label))
    check_count(f"mmlu {subject} {split} questions", len(out), KNOWN_SIZES.get(subject, {}).get(split))
    print(f"  {length_summary([len(r['sent1']) + max(len(r[f'ending{i}']) for i in range(4)) for r in out])}")
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_args(parser, repo_path("raw_data/mmlu/data"), repo_path("data"))
    parser.add_argument("--subjects", nargs="+", default=["professional_medicine"],
                        help="MMLU subjects to convert (default: professional_medicine)")
    args = parse_io_args(parser, argv)
    for subject in args.subjects:
        converted = {}
        for split in SPLITS:  # convert every split before writing, so a bad file writes nothing
            path = find_file([args.raw_dir / split / f"{subject}_{split}.csv"],
                             "run scripts/download_raw_data.sh or pass --raw_dir (the folder holding dev/ val/ test/)")
            print(f"mmlu {subject} {split} <- {path}")
            converted[split] = convert(path, subject, split)
        for split, records in converted.items():
            write_jsonl(records, args.out_dir / "mc" / "mmlu_hf" / subject / f"{split}.json")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
