"""SQuAD with distracting documents (the LinkBERT paper's robustness table): 1-2 paragraphs of
other articles added before or after each question's context, answer offsets shifted to match.

    python scripts/add_distracting_documents.py --input data/qa/squad_hf/dev.json \
        --output data/qa/squad_distract_hf/dev.json --seed 0 --max_distractors 2

Input and output are MRQA/SQuAD JSON Lines (`id`, `question`, `context`, `answers:
{answer_start: [int], text: [str]}`; other fields are kept). The paper says only that 1-2
distracting documents are prepended or appended to the original document of each question.
What it leaves open, and what this script does:
- where distractors come from: the distinct paragraphs of the same file (so of the same split),
  from other articles: a record's `title` names its article when the file has one; without
  titles (the MRQA layout) any paragraph other than the question's own counts as another article;
- how many: 1 to --max_distractors, uniformly, drawn per question (questions sharing a paragraph
  draw independently);
- where: the question's paragraph goes to a uniformly drawn position among the k+1 documents, so
  with two distractors it may also sit between them; documents are joined by one space;
- randomness: one `random.Random(--seed)` drawn in file order, so a seed gives the same file.
Every answer offset moves by the length of what was put in front, so the text at each shifted
offset is exactly the text that was at the original offset (checked for every answer).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from preprocess_common import DataError, run_cli, write_jsonl

SEPARATOR = " "


def read_records(path: Path) -> list[dict]:
    """The records of a QA JSON Lines file, checked for the fields this script needs."""
    if not path.is_file():
        raise DataError(path, None, "file not found", "give an MRQA/SQuAD JSON Lines file (data/qa/squad_hf/dev.json)")
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, line_no, f"not JSON ({e.msg})", "--input must be MRQA/SQuAD JSON Lines, "
                                "one question per line") from None
            answers = record.get("answers") if isinstance(record, dict) else None
            if not isinstance(record, dict) or not isinstance(record.get("context"), str) \
                    or not isinstance(record.get("question"), str) or not isinstance(answers, dict) \
                    or not isinstance(answers.get("answer_start"), list) or not isinstance(answers.get("text"), list):
                raise DataError(path, line_no, "not an MRQA/SQuAD record (needs question, context and answers "
                                "{answer_start: [...], text: [...]})", "--input must be the JSON Lines "
                                "that scripts/preprocess_mrqa.py writes")
            for start in answers["answer_start"]:
                if not isinstance(start, int) or not 0 <= start < len(record["context"]):
                    raise DataError(path, line_no, f"answer_start {start!r} outside the context", "fix the record")
            records.append(record)
    if not records:
        raise DataError(path, None, "no records", "give a non-empty file")
    return records


def add_distractors(records: list[dict], seed: int, max_distractors: int) -> tuple[list[dict], Counter]:
    """New records with distractors around each context, and counts for the report."""
    article = lambda r: r.get("title", r["context"])  # noqa: E731
    paragraphs = list({(article(r), r["context"]): None for r in records})  # distinct, in file order
    if len({key for key, _ in paragraphs}) < 2:
        raise DataError("--input", None, "holds one article only: there is nothing to distract with",
                        "give a whole split")
    rng = random.Random(seed)
    stats: Counter = Counter()
    out = []
    for record in records:
        own = article(record)
        k = rng.randint(1, max_distractors)
        candidates = [i for i in rng.sample(range(len(paragraphs)), min(len(paragraphs), 4 * k + 4))
                      if paragraphs[i][0] != own]
        if len(candidates) < k:  # few articles (small files): look at every paragraph
            candidates = [i for i in rng.sample(range(len(paragraphs)), len(paragraphs)) if paragraphs[i][0] != own]
        chosen = [paragraphs[i][1] for i in candidates[:k]]
        position = rng.randint(0, len(chosen))
        before, after = chosen[:position], chosen[position:]
        prefix = "".join(p + SEPARATOR for p in before)
        context = prefix + record["context"] + "".join(SEPARATOR + p for p in after)
        answers = dict(record["answers"])
        answers["answer_start"] = [s + len(prefix) for s in record["answers"]["answer_start"]]
        for old, new, text in zip(record["answers"]["answer_start"], answers["answer_start"], answers["text"]):
            span = len(text)
            assert context[new:new + span] == record["context"][old:old + span]
        out.append({**record, "context": context, "answers": answers})
        stats[f"{len(chosen)} distractor(s)"] += 1
        stats["prepended only" if not after else "appended only" if not before else "before and after"] += 1
    return out, stats


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="MRQA/SQuAD JSON Lines (e.g. data/qa/squad_hf/dev.json)")
    parser.add_argument("--output", type=Path, required=True, help="where the new JSON Lines go")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--max_distractors", type=int, default=2, help="1 to this many per question (default 2)")
    args = parser.parse_args(argv)
    if args.max_distractors < 1:
        raise DataError("--max_distractors", None, f"{args.max_distractors} must be at least 1", "the paper uses 2")
    if args.output.resolve() == args.input.resolve():
        raise DataError("--output", None, "is the --input file", "write to another file")
    records, stats = add_distractors(read_records(args.input), args.seed, args.max_distractors)
    write_jsonl(records, args.output)
    print(f"{args.output}: {len(records)} questions; " + ", ".join(f"{k}: {v}" for k, v in sorted(stats.items())))


if __name__ == "__main__":
    sys.exit(run_cli(main))
