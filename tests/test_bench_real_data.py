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


def test_peer_qa_records_point_at_their_answers(real_data):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import bench_peer
    finally:
        sys.path.remove(str(REPO / "bench"))
    records = bench_peer.qa_records(SENTENCES * 2, per_context=3)
    assert len(records) == 2
    for record in records:
        start, text = record["answers"]["answer_start"][0], record["answers"]["text"][0]
        assert text == "f g" and record["context"][start:start + len(text)] == text


def test_hf_shim_metrics_match_the_projects():
    sys.path.insert(0, str(REPO / "bench" / "hf_shim"))
    try:
        import evaluate
    finally:
        sys.path.remove(str(REPO / "bench" / "hf_shim"))
    assert evaluate.__file__.startswith(str(REPO / "bench" / "hf_shim"))
    squad = evaluate.load("squad").compute(
        predictions=[{"id": "1", "prediction_text": "the cat"}, {"id": "2", "prediction_text": "dog"}],
        references=[{"id": "2", "answers": {"text": ["a dog"], "answer_start": [0]}},
                    {"id": "1", "answers": {"text": ["cat sat"], "answer_start": [0]}}])
    assert squad == {"exact_match": 50.0, "f1": pytest.approx(100 * (2 / 3 + 1) / 2)}  # "cat" vs "cat sat": F1 2/3
    ner = evaluate.load("seqeval").compute(predictions=[["B-D", "O", "B-D"]], references=[["B-D", "O", "O"]])
    assert ner["overall_precision"] == 0.5 and ner["overall_recall"] == 1.0
    assert evaluate.load("accuracy").compute(predictions=[1, 0, 1, 1], references=[1, 1, 1, 1]) == {"accuracy": 0.75}
    with pytest.raises(ValueError, match="no local metric 'bleu'"):
        evaluate.load("bleu")
