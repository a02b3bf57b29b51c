"""The model card every run leaves in its folder: it loads with huggingface_hub, its model-index
equals the folder's result files, and it says what the run was (base model, task, data,
hyper-parameters, the paper's number, versions and lock, command, citation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SAMPLES, run_task, sample_dir
from linkbert.core.card import card_scores, folder_scores
from linkbert.env import lock_record
from linkbert.mc.run_multiple_choice import MultipleChoiceTask
from linkbert.pretrain.run_pretrain import PretrainTask
from linkbert.qa.run_qa import QATask
from linkbert.seqcls.run_seqcls import SeqClsTask
from linkbert.tokcls.run_ner import NerTask

ALL_SAMPLES = sorted(SAMPLES.glob("*/*/*.json")) + sorted(SAMPLES.glob("mc/mmlu_hf/*/*.json"))
FAST = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--logging_steps", "1", "--save_strategy", "no",
        "--disable_tqdm"]
# task class, registry name, extra flags
RUNS = {
    "qa": (QATask, "squad_hf", ["--max_seq_length", "64", "--doc_stride", "16"]),
    "seqcls": (SeqClsTask, "chemprot_hf", ["--metric_name", "PRF1"]),
    "ner": (NerTask, "NCBI-disease_hf", []),
    "mc": (MultipleChoiceTask, "medqa_usmle_hf", ["--max_seq_length", "64"]),
}


def load_card(out: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(out / "README.md")  # a folder path would be taken for a hub id


def fine_tune(model: str, out: Path, kind: str) -> Path:
    task_cls, name, extra = RUNS[kind]
    data = sample_dir(name)
    run_task(task_cls, ["--model_name_or_path", model, "--train_file", data / "train.json", "--validation_file",
                        data / "dev.json", "--test_file", data / "test.json", "--do_train", "--do_eval",
                        "--do_predict", "--learning_rate", "3e-5", "--output_dir", out, *FAST, *extra])
    return out


@pytest.fixture(scope="module")
def model(tiny_model) -> str:
    return tiny_model(ALL_SAMPLES)


@pytest.mark.parametrize("kind", sorted(RUNS))
def test_every_task_folder_has_a_card_that_round_trips(model, tmp_path, kind):
    name = RUNS[kind][1]
    out = fine_tune(model, tmp_path / "runs" / name / "tiny", kind)
    card = load_card(out)
    scores = folder_scores(out)
    assert card_scores(card) == scores
    assert {split for split, _ in scores} == {"validation", "test"}  # dev and test both there
    eval_results = json.loads((out / "eval_results.json").read_text())
    assert all(scores["validation", k[len("eval_"):]] == v for k, v in eval_results.items()
               if k.endswith(("f1", "accuracy", "F1", "exact_match")))
    assert {r.dataset_type for r in card.data.eval_results} == {name}
    text = card.text
    assert "learning_rate | 3e-05" in text and f"--output_dir {out}" in text and "yasunaga2022linkbert" in text
    assert lock_record()["lock"] is None or lock_record()["sha256"] in text
    assert json.loads((out / "env.json").read_text())["torch"] in text


def test_the_papers_number_is_beside_ours(model, tmp_path):
    """A folder named as the run scripts name it (runs/<task>/<model>) gets the paper's row for that model."""
    out = fine_tune(model, tmp_path / "runs" / "squad_hf" / "LinkBERT-base", "qa")
    run_args = json.loads((out / "run_args.json").read_text())
    run_args["model_name_or_path"] = "michiyasunaga/LinkBERT-base"  # as the real run names its base model
    (out / "run_args.json").write_text(json.dumps(run_args))
    from linkbert.core.card import write_card

    card = load_card(Path(write_card(out, "qa")).parent)
    ours = json.loads((out / "predict_results.json").read_text())["predict_f1"]
    assert "SQuAD, test f1, in percent: 90.1; this run: " + str(round(ours, 2)) in card.text
    assert card.data.base_model == "michiyasunaga/LinkBERT-base"


def test_a_prediction_only_run_of_a_saved_folder_gets_its_own_card(model, tmp_path):
    trained = fine_tune(model, tmp_path / "trained", "seqcls")
    data = sample_dir("chemprot_hf")
    out = tmp_path / "predicted"
    run_task(SeqClsTask, ["--model_name_or_path", trained, "--test_file", data / "test.json", "--do_predict",
                          "--metric_name", "PRF1", "--output_dir", out, "--disable_tqdm"])
    card = load_card(out)
    assert card_scores(card) == folder_scores(out) and {s for s, _ in folder_scores(out)} == {"test"}
    assert card.data.base_model is None  # a local folder is no hub id
    assert str(trained) in card.text


def test_a_pretrained_folder_says_its_corpus_and_relation_settings(tiny_model, tmp_path):
    from test_pretrain import pretrain_flags, write_corpus

    corpus = write_corpus(tmp_path / "corpus.jsonl")
    out = tmp_path / "pretrained"
    run_task(PretrainTask, pretrain_flags(tiny_model([corpus], dropout=0.0), corpus, out, "--max_steps", "2",
                                          "--relation_probabilities", "0.5,0.25,0.25", "--linked_sampling", "uniform"))
    card = load_card(out)
    assert card_scores(card) == folder_scores(out) and ("validation", "drp_accuracy") in folder_scores(out)
    assert card.data.pipeline_tag == "fill-mask"
    text = card.text
    assert f"corpus_file | {corpus}" in text
    assert "relation_probabilities | 0.5,0.25,0.25" in text and "linked_sampling | uniform" in text
    assert "masking | dynamic" in text and "mlm_probability | 0.15" in text
    import hashlib

    assert f"corpus sha256 | {hashlib.sha256(corpus.read_bytes()).hexdigest()}" in text


def test_the_task_is_read_from_the_run_folders_own_path():
    """The card names the paper's task from where the folder is (runs/<task>/...), not from the
    --output_dir its run_args.json recorded (a folder moved since keeps its new place's name)."""
    from linkbert.core.card import registry_task
    from linkbert.tasks import TASKS

    recorded = {"output_dir": "runs/chemprot_hf/BioLinkBERT-base"}
    assert registry_task("seqcls", Path("moved/runs/HoC_hf/BioLinkBERT-base"), recorded) is TASKS["HoC_hf"]
    assert registry_task("seqcls", Path("moved/BioLinkBERT-base"), recorded) is None  # nor the data folder: none given
