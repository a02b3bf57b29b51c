"""bench/real_data.py: the length calibration on real sentences, checked on a small written
sample in the NCBI-disease raw format (token<TAB>IOB tag, a blank line between sentences)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import REPO

SENTENCES = [  # (words, tags): 5, 7 and 9 words; the last two hold two mentions
    ("a b c d e".split(), ["O"] * 5),
    ("f g h i j k l".split(), ["B-Disease", "I-Disease", "O", "O", "B-Disease", "O", "O"]),
    ("m n o p q r s t u".split(), ["O", "B-Disease", "O", "B-Disease", "I-Disease", "I-Disease", "O", "O", "O"]),
]


@pytest.fixture(scope="module")
def real_data():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import real_data
    finally:
        sys.path.remove(str(REPO / "bench"))
    return real_data


def write_ncbi(root, sentences) -> None:
    folder = root / "blurb_raw" / "NCBI-disease"
    folder.mkdir(parents=True)
    text = "\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(words, tags)) for words, tags in sentences)
    for split in ("train", "dev", "test"):
        (folder / f"{split}.tsv").write_text(text + "\n")


def test_calibration_counts_word_pieces_with_cls_and_sep(tmp_path, tiny_model, real_data):
    write_ncbi(tmp_path, SENTENCES)
    texts = real_data.calibration_texts(tmp_path)
    all_sentences, marked = texts.values()
    assert len(all_sentences) == 9 and len(marked) == 6  # three splits of the same three sentences
    assert marked[0] == "@CHEMICAL$ h i @GENE$ k l"
    assert marked[1] == "m @CHEMICAL$ o @GENE$ s t u"
    sample = tmp_path / "vocab.json"  # every word one piece in the tiny vocabulary
    sample.write_text(json.dumps({"t": " ".join(w for words, _ in SENTENCES for w in words)}) + "\n")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model([sample]))
    stats = real_data.calibrate(all_sentences, tokenizer)
    assert stats["median"] == 7 + 2 and stats["p90"] == 9 + 2  # words + [CLS] + [SEP]
    assert stats["log_std"] == pytest.approx(float(np.log([7, 9, 11]).std()))


def test_mentions_and_missing_folder(tmp_path, real_data):
    assert real_data.mentions(["I-Disease", "I-Disease", "O", "B-Disease", "B-Disease"]) == [(0, 2), (3, 4), (4, 5)]
    assert real_data.with_markers(*SENTENCES[0]) is None
    with pytest.raises(SystemExit, match="NCBI-disease/train.tsv not found"):
        real_data.ncbi_folder(tmp_path)
