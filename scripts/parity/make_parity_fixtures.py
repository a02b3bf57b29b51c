"""Record what the original LinkBERT release trains, as fixtures for tests/test_parity_original.py.

For each task kind (sequence classification, NER, extractive QA, multiple choice) this script
writes a tiny BERT (dropout 0) and a small data set, runs the original release's script on
them in the original's environment (Python 3.8, torch 1.10.1, transformers 4.9.1,
datasets 1.11.0; CPU, fp32, 2 epochs), and keeps its final weights (float32 safetensors) and
its test predictions. The test then runs our module with the same flags on the same files and
compares.

    python scripts/parity/make_parity_fixtures.py --oracle_python path/to/py38-venv/bin/python \
        --original_repo path/to/LinkBERT [--tasks seqcls ner qa mc] [--work_dir DIR]

See scripts/parity/README.md for setting up the oracle environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from linkbert.tasks import TASKS as REGISTRY

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"
FIXTURES = REPO / "tests" / "fixtures" / "parity"
ORACLE_RUN = Path(__file__).resolve().parent / "oracle_run.py"

# The tiny encoder every task starts from. Dropout 0 so that no random stream enters training:
# what is compared is the data order, the optimiser, the schedule and the arithmetic.
ENCODER = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
           "max_position_embeddings": 128, "type_vocab_size": 2, "hidden_dropout_prob": 0.0,
           "attention_probs_dropout_prob": 0.0, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
           "initializer_range": 0.02, "pad_token_id": 0}
VOCAB_WORDS = 300  # most frequent words; the rest tokenise into ## pieces
# Heads start larger than BERT's 0.02 so that the encoder receives gradients well above float32
# rounding noise (with 0.02 the MC logits of a random tiny encoder tie to 1e-4 and Adam, which
# normalises every gradient, turns the noise into updates of the order of the learning rate).
HEAD_STD = 0.2

# Flags both the original and our module take, with the original's meaning. `{data}`, `{model}`
# and `{output}` are filled in by whoever runs them. Warm-up, weight decay, clipping (max_grad_norm
# 1.0 is the default) and, for NER and MC, gradient accumulation with micro-batches left over at
# the end of an epoch are all in play; 2 epochs, so the order of the second epoch matters.
COMMON = ["--model_name_or_path", "{model}", "--output_dir", "{output}", "--do_train", "--do_predict",
          "--train_file", "{data}/train.json", "--test_file", "{data}/test.json",
          "--num_train_epochs", "2", "--learning_rate", "5e-4", "--warmup_ratio", "0.1",
          "--weight_decay", "0.01", "--seed", "42", "--save_strategy", "no", "--logging_steps", "1",
          "--report_to", "none", "--no_cuda", "--disable_tqdm", "True"]

# Fixture name -> the sample set it trains on (a task of linkbert.tasks: its data and module),
# the original's script, the head, the original's flags and its prediction file.
TASKS = {
    "seqcls": {
        "samples": "pubmedqa_hf", "script": "src/seqcls/run_seqcls.py",
        "head": {"classifier.weight": (3, 32), "classifier.bias": (3,)},
        "flags": ["--per_device_train_batch_size", "8", "--max_seq_length", "128", "--metric_name", "accuracy",
                  "--validation_file", "{data}/test.json"],
        "predictions": "test_outputs.json"},
    "ner": {
        "samples": "NCBI-disease_hf", "script": "src/tokcls/run_ner.py",
        "head": {"classifier.weight": (3, 32), "classifier.bias": (3,)},
        "flags": ["--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "3",
                  "--max_seq_length", "128", "--return_macro_metrics"],
        "predictions": "test_outputs.json"},
    "qa": {
        "samples": "squad_hf", "script": "src/qa/run_qa.py",
        "head": {"qa_outputs.weight": (2, 32), "qa_outputs.bias": (2,)},
        "flags": ["--per_device_train_batch_size", "8", "--max_seq_length", "128", "--doc_stride", "32"],
        "predictions": "predict_predictions.json"},
    "mc": {
        "samples": "medqa_usmle_hf", "script": "src/mc/run_multiple_choice.py",
        "head": {"classifier.weight": (1, 32), "classifier.bias": (1,)},
        # Short sequences: the shared vignette is cut (longest first), so the choices differ by a
        # larger share of their tokens and the encoder's gradients stand well above rounding noise.
        "flags": ["--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2",
                  "--max_seq_length", "32"],
        "predictions": "predict_outputs.json"},
}


def fill(flags: list[str], data: Path, model: Path, output: Path) -> list[str]:
    """The recorded flags with the placeholders replaced by real paths."""
    return [f.format(data=data, model=model, output=output) for f in flags]


def write_model_folder(folder: Path, config: dict, vocab: list[str], weights: dict[str, torch.Tensor],
                       torch_bin: bool) -> None:
    """A BERT folder that both transformers 4.9.1 (`pytorch_model.bin`) and 5 (`model.safetensors`)
    load: a plain config, a vocab.txt and a tokenizer config, no tokenizer.json (whose format
    changed between the two stacks' `tokenizers`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": True, "model_max_length": config["max_position_embeddings"],
         "tokenizer_class": "BertTokenizer"}) + "\n")
    if torch_bin:
        torch.save({k: v.contiguous() for k, v in weights.items()}, folder / "pytorch_model.bin")
    else:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"))


def fixture_model(task: str, fixtures: Path = FIXTURES) -> tuple[dict, list[str], dict[str, torch.Tensor]]:
    """Config, vocabulary and initial weights (shared encoder + the task's head) of a task."""
    shared = fixtures / "model"
    config = json.loads((shared / "config.json").read_text())
    vocab = (shared / "vocab.txt").read_text(encoding="utf-8").splitlines()
    weights = load_file(str(shared / "encoder.safetensors"))
    weights.update(load_file(str(fixtures / task / "head_initial.safetensors")))
    return config, vocab, weights


def build_shared_model(fixtures: Path) -> None:
    """Encoder weights (transformers' BERT initialisation, seed 0) and a vocabulary covering the
    text of every task's data."""
    from transformers import BertConfig, BertModel

    from linkbert.tiny import build_vocab, texts_from_jsonl

    files = [fixtures / task / f"{split}.json" for task in TASKS for split in ("train", "test")]
    vocab = build_vocab(texts_from_jsonl(files), lowercase=True, max_words=VOCAB_WORDS)
    config = {"model_type": "bert", "architectures": ["BertModel"], "vocab_size": len(vocab), **ENCODER}
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(**config), add_pooling_layer=True)
    weights = {f"bert.{k}": v.detach().clone().float() for k, v in encoder.state_dict().items()
               if not k.endswith("position_ids")}
    shared = fixtures / "model"
    shared.mkdir(parents=True, exist_ok=True)
    (shared / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (shared / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    save_file(weights, str(shared / "encoder.safetensors"))


def build_head(task: str, fixtures: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    head = {name: (torch.randn(shape, generator=generator) * HEAD_STD
                   if name.endswith("weight") else torch.zeros(shape))
            for name, shape in TASKS[task]["head"].items()}
    save_file(head, str(fixtures / task / "head_initial.safetensors"))


def oracle_predictions(task: str, output: Path) -> list:
    """The original's test predictions, in the shape our `predict_predictions.jsonl` records them."""
    import numpy as np

    raw = json.loads((output / TASKS[task]["predictions"]).read_text())
    if task == "qa":
        return [{"id": k, "prediction_text": v} for k, v in raw.items()]
    config = json.loads((output / "config.json").read_text())
    logits = np.asarray(raw["predictions"], dtype=np.float32)
    if task == "mc":
        return [{"prediction": int(i)} for i in logits.argmax(-1)]
    id2label = {int(k): v for k, v in config["id2label"].items()}
    if task == "seqcls":
        return [{"prediction": id2label[int(i)]} for i in logits.argmax(-1)]
    # NER: the label of each word is read at its first sub-token, where label_ids is not -100.
    records = []
    for row_logits, row_labels in zip(logits, raw["label_ids"]):
        records.append({"predictions": [id2label[int(np.argmax(row_logits[j]))]
                                        for j, label in enumerate(row_labels) if label != -100]})
    return records


def run_oracle(task: str, args: argparse.Namespace, work: Path, fixtures: Path) -> None:
    spec = TASKS[task]
    config, vocab, weights = fixture_model(task, fixtures)
    model_dir, output = work / task / "model", work / task / "output"
    write_model_folder(model_dir, config, vocab, weights, torch_bin=True)
    shutil.rmtree(output, ignore_errors=True)  # the original refuses a non-empty output folder
    flags = COMMON + spec["flags"]
    script = Path(args.original_repo).resolve() / spec["script"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(work / "hf_datasets_cache"), "HF_HOME": str(work / "hf_home"),
           "WANDB_DISABLED": "true", "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "0"}
    env.pop("PYTHONPATH", None)
    command = [args.oracle_python, str(ORACLE_RUN), str(script), *fill(flags, fixtures / task, model_dir, output)]
    print(f"[{task}] {' '.join(command)}", flush=True)
    log = work / task / "oracle.log"
    with open(log, "w") as f:
        done = subprocess.run(command, cwd=script.parent, env=env, stdout=f, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        sys.exit(f"[{task}] the original script failed (exit {done.returncode}); see {log}")

    final = torch.load(output / "pytorch_model.bin", map_location="cpu", weights_only=True)
    # The trained parameters (not buffers; token classification and QA heads have no pooler).
    kept = {k: final[k].float().contiguous() for k in weights if k in final}
    save_file(kept, str(fixtures / task / "final.safetensors"))
    train = json.loads((output / "train_results.json").read_text())
    state = json.loads((output / "trainer_state.json").read_text())
    versions = subprocess.run([args.oracle_python, "-c", ("import sys, torch, transformers, datasets; "
                               "print(sys.version.split()[0], torch.__version__, transformers.__version__, "
                               "datasets.__version__)")], check=True, capture_output=True, text=True, env=env).stdout.split()
    record = {
        "script": spec["script"],
        "flags": flags,
        "versions": dict(zip(("python", "torch", "transformers", "datasets"), versions)),
        "train_loss": train["train_loss"],
        "global_step": state["global_step"],
        "losses": [entry["loss"] for entry in state["log_history"] if "loss" in entry],
        "max_abs_update": max(float((kept[k] - weights[k]).abs().max()) for k in kept),
        "predictions": oracle_predictions(task, output),
    }
    (fixtures / task / "oracle.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"[{task}] {state['global_step']} updates, train_loss {train['train_loss']:.6f}, "
          f"largest weight change {record['max_abs_update']:.3e}", flush=True)


def copy_samples(task: str, fixtures: Path) -> None:
    folder = fixtures / task
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        shutil.copyfile(SAMPLES / REGISTRY[TASKS[task]["samples"]].data / f"{split}.json", folder / f"{split}.json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oracle_python", required=True, help="python of the original's environment")
    parser.add_argument("--original_repo", required=True, help="a clone of michiyasunaga/LinkBERT")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--work_dir", default=None, help="keep the oracle's runs here (default: a temporary folder)")
    parser.add_argument("--fixtures", default=str(FIXTURES))
    parser.add_argument("--keep_model", action="store_true",
                        help="reuse the shared encoder and heads already in the fixtures (re-run the oracle only)")
    args = parser.parse_args(argv)
    fixtures = Path(args.fixtures)
    for task in TASKS:
        copy_samples(task, fixtures)
    if not args.keep_model:
        build_shared_model(fixtures)
        for task in TASKS:
            build_head(task, fixtures)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="linkbert-parity-"))
    for task in args.tasks:
        run_oracle(task, args, work, fixtures)


if __name__ == "__main__":
    main()
