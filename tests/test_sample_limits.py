"""--max_{train,eval,predict}_samples as the original: the label list comes from the whole
training file, and QA cuts the windows a second time (after one example became several)."""

from __future__ import annotations

import json

from conftest import run_task
from test_qa_run import CONTEXT, QUESTION, words_model  # noqa: F401  (a fixture)

from linkbert.qa.run_qa import QATask
from linkbert.seqcls.run_seqcls import SeqClsTask


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_label_list_comes_from_the_whole_training_file(tiny_model, tmp_path):
    sentences = ["aspirin binds the receptor", "the gene is expressed", "no relation here"]
    train = write_jsonl(tmp_path / "train.json", [{"id": str(i), "sentence": s, "label": label}
                                                  for i, (s, label) in enumerate(zip(sentences, "ABC"))])
    dev = write_jsonl(tmp_path / "dev.json", [{"id": "d", "sentence": sentences[2], "label": "C"}])
    model = tiny_model([tmp_path / "train.json"])
    out = tmp_path / "out"
    # Only record 0 (label A) trains; the dev label C is in the file's third record: known.
    metrics = run_task(SeqClsTask, ["--model_name_or_path", model, "--train_file", train, "--validation_file", dev,
                                    "--do_train", "--do_eval", "--max_train_samples", "1", "--max_steps", "1",
                                    "--output_dir", out, "--disable_tqdm", "--allow_untrained_head"])
    assert metrics["train_samples"] == 1
    assert json.loads((out / "config.json").read_text())["label2id"] == {"A": 0, "B": 1, "C": 2}


def test_qa_sample_limit_also_cuts_the_windows(words_model, tmp_path):  # noqa: F811
    records = [{"id": f"q{i}", "question": QUESTION, "context": CONTEXT,
                "answers": {"answer_start": [CONTEXT.index(word)], "text": [word]}}
               for i, word in enumerate(["w70", "w10", "w20"])]
    data = write_jsonl(tmp_path / "dev.json", records)
    out = tmp_path / "out"
    # 64 tokens hold 58 of the 100 context words: 2 windows per question. --max_eval_samples 2
    # keeps 2 questions, then 2 windows: both of q0's, none of q1's, which is answered "empty".
    metrics = run_task(QATask, ["--model_name_or_path", words_model, "--validation_file", data, "--do_eval",
                                "--max_seq_length", "64", "--doc_stride", "16", "--max_eval_samples", "2",
                                "--output_dir", out, "--disable_tqdm", "--allow_untrained_head"])
    predictions = [json.loads(line) for line in (out / "eval_predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == ["q0", "q1"] and metrics["eval_samples"] == 2
    assert predictions[1]["prediction_text"] == "empty" and predictions[0]["prediction_text"] != "empty"
