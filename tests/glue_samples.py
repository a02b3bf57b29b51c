"""Tiny GLUE files in the official download's formats, invented here (no real GLUE text): each
task's own columns and header, CoLA's header-less train/dev, MRPC's byte-order mark, quotes that
only `QUOTE_NONE` reads right, QQP rows broken by a stray newline, MNLI's five files, unlabelled
test files."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ("the cat dog bird sat ran on a mat log tree quickly slowly big small red blue house river "
         "saw likes eats near under old new").split()
NLI = ("entailment", "neutral", "contradiction")
BINARY_NLI = ("entailment", "not_entailment")
SIZES = {"train": 16, "dev": 8, "test": 5}


def sentence(rng: random.Random, quote: bool = False) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 7))]
    if quote:  # an unbalanced quote: a CSV reader with quoting would swallow the next fields
        words[1] = '"' + words[1]
    return " ".join(words) + " ."


def write(path: Path, lines: list[str], bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")


def write_glue_raw(root: Path, seed: int = 0) -> Path:
    """Write root/<TASK>/*.tsv for the eight tasks; returns root."""
    rng = random.Random(seed)
    s = lambda i=1: sentence(rng, quote=(i == 2))  # noqa: E731  (row 2 of every file has a quote)
    for writer in (_single_sentence, _mrpc, _qqp, _stsb, _mnli, _qnli_rte):
        writer(root, s)
    return root


def _single_sentence(root: Path, s) -> None:
    for split in ("train", "dev"):  # CoLA: no header; source, label, original label, sentence
        write(root / "CoLA" / f"{split}.tsv",
              [f"gj04\t{i % 2}\t{'' if i % 2 else '*'}\t{s(i)}" for i in range(SIZES[split])])
        write(root / "SST-2" / f"{split}.tsv", ["sentence\tlabel"] + [f"{s(i)}\t{i % 2}" for i in range(SIZES[split])])
    for folder in ("CoLA", "SST-2"):
        write(root / folder / "test.tsv", ["index\tsentence"] + [f"{i}\t{s(i)}" for i in range(SIZES["test"])])


def _mrpc(root: Path, s) -> None:
    for split in ("train", "dev"):  # the MRPC header of the download keeps the source file's BOM
        write(root / "MRPC" / f"{split}.tsv", ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
              + [f"{int(i % 3 != 0)}\t{1000 + i}\t{2000 + i}\t{s(i)}\t{s()}" for i in range(SIZES[split])],
              bom=(split == "train"))
    write(root / "MRPC" / "test.tsv", ["index\t#1 ID\t#2 ID\t#1 String\t#2 String"]
          + [f"{i}\t{3000 + i}\t{4000 + i}\t{s(i)}\t{s()}" for i in range(SIZES["test"])])


def _qqp(root: Path, s) -> None:
    for split in ("train", "dev"):
        rows = [f"{i}\t{2 * i}\t{2 * i + 1}\t{s(i)}\t{s()}\t{i % 2}" for i in range(SIZES[split])]
        if split == "train":  # one question broken over two lines, as in the official file
            rows.insert(5, f"900\t1800\t1801\t{' '.join(WORDS[:3])}")
            rows.insert(6, f"{' '.join(WORDS[3:6])} ?\t{s()}\t1")
        write(root / "QQP" / f"{split}.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"] + rows)
    write(root / "QQP" / "test.tsv", ["id\tquestion1\tquestion2"] + [f"{i}\t{s(i)}\t{s()}" for i in range(SIZES["test"])])


def _stsb(root: Path, s) -> None:
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
    scores = [0, 1.2, 2.5, 3.8, "5.000"]
    for split in ("train", "dev"):
        write(root / "STS-B" / f"{split}.tsv", [header + "\tscore"]
              + [f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{s(i)}\t{s()}\t{scores[i % 5]}"
                 for i in range(SIZES[split])])
    write(root / "STS-B" / "test.tsv", [header] + [f"{i}\tmain-news\tnews\t2016\t{i:04d}\tnone\tnone\t{s(i)}\t{s()}"
                                                   for i in range(SIZES["test"])])


def _mnli(root: Path, s) -> None:
    parses = "sentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse"
    head = f"index\tpromptID\tpairID\tgenre\t{parses}\tsentence1\tsentence2"

    def row(i: int, labels: int) -> str:  # train: label1 + gold; dev: label1..5 + gold; test: none
        a, b = s(i), s()
        text = f"{i}\t{100 + i}\t{100 + i}e\tfiction\t( {a} )\t( {b} )\t(ROOT {a})\t(ROOT {b})\t{a}\t{b}"
        gold = NLI[i % 3]
        return text + "".join(f"\t{gold}" for _ in range(labels)) + (f"\t{gold}" if labels else "")

    write(root / "MNLI" / "train.tsv", [head + "\tlabel1\tgold_label"] + [row(i, 1) for i in range(SIZES["train"])])
    for name in ("dev_matched", "dev_mismatched"):
        write(root / "MNLI" / f"{name}.tsv", [head + "".join(f"\tlabel{k}" for k in range(1, 6)) + "\tgold_label"]
              + [row(i, 5) for i in range(SIZES["dev"])])
    for name in ("test_matched", "test_mismatched"):
        write(root / "MNLI" / f"{name}.tsv", [head] + [row(i, 0) for i in range(SIZES["test"])])


def _qnli_rte(root: Path, s) -> None:
    for folder, first, second in (("QNLI", "question", "sentence"), ("RTE", "sentence1", "sentence2")):
        for split in ("train", "dev"):
            write(root / folder / f"{split}.tsv", [f"index\t{first}\t{second}\tlabel"]
                  + [f"{i}\t{s(i)}\t{s()}\t{BINARY_NLI[i % 2]}" for i in range(SIZES[split])])
        write(root / folder / "test.tsv", [f"index\t{first}\t{second}"]
              + [f"{i}\t{s(i)}\t{s()}" for i in range(SIZES["test"])])
