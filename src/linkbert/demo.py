"""The demo: every task end to end, offline, in under a minute or two on a laptop CPU.

    python -m linkbert.demo [--out runs/demo] [--steps 60] [--learning_rate 1e-3]

It builds a tiny BERT locally (vocabulary from the bundled samples, random weights), fine-tunes
it on the bundled samples of each task with that task's original flags from the paper's run
scripts (plus --max_steps, and a learning rate a random tiny model can learn with), and prints
the scores and the training loss. The scores mean nothing (a random tiny model, invented data);
the demo shows the pipeline works on this machine. For real runs use the run_examples_*.sh
scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO_SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"

# (name, module, task class, sample folder, split files (train, dev, test), original flags, score key)
DEMO_RUNS = [
    ("ChemProt (relation extraction)", "linkbert.seqcls.run_seqcls", "SeqClsTask", "seqcls/chemprot_hf",
     ("train", "dev", "test"),
     "--metric_name PRF1 --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --learning_rate 2e-5 "
     "--warmup_ratio 0.5 --num_train_epochs 4 --max_seq_length 256", "F1"),
    ("HoC (multi-label)", "linkbert.seqcls.run_seqcls", "SeqClsTask", "seqcls/HoC_hf", ("train", "dev", "test"),
     "--metric_name hoc --per_device_train_batch_size 8 --gradient_accumulation_steps 4 --learning_rate 3e-5 "
     "--warmup_ratio 0.5 --num_train_epochs 20 --max_seq_length 512", "F1"),
    ("NCBI-disease (NER)", "linkbert.tokcls.run_ner", "NerTask", "tokcls/NCBI-disease_hf", ("train", "dev", "test"),
     "--per_device_train_batch_size 8 --gradient_accumulation_steps 2 --learning_rate 2e-5 --warmup_ratio 0.5 "
     "--num_train_epochs 10 --max_seq_length 512", "f1"),
    ("SQuAD (extractive QA)", "linkbert.qa.run_qa", "QATask", "qa/squad_hf", ("train", "dev", "test"),
     "--per_device_train_batch_size 16 --gradient_accumulation_steps 1 --learning_rate 2e-5 "
     "--num_train_epochs 2 --max_seq_length 384 --doc_stride 128", "f1"),
    ("MedQA-USMLE (multiple choice)", "linkbert.mc.run_multiple_choice", "MultipleChoiceTask", "mc/medqa_usmle_hf",
     ("train", "dev", "test"),
     "--per_device_train_batch_size 2 --per_device_eval_batch_size 2 --gradient_accumulation_steps 2 "
     "--learning_rate 3e-5 --num_train_epochs 6 --max_seq_length 512", "accuracy"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="Where the demo's runs go.")
    parser.add_argument("--steps", type=int, default=60, help="Updates per task.")
    parser.add_argument("--learning_rate", type=float, default=1e-3,
                        help="Replaces each task's original learning rate (made for pretrained BERTs).")
    parser.add_argument("--samples", default=str(REPO_SAMPLES), help="The bundled samples folder.")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import importlib

    from linkbert.core.run import run
    from linkbert.tiny import build_tiny_model, texts_from_jsonl

    samples, out = Path(options.samples), Path(options.out)
    model_dir = out / "tiny-bert"
    print(f"Building a tiny BERT in {model_dir} from the samples' text (no download)...")
    build_tiny_model(model_dir, texts_from_jsonl(sorted(samples.rglob("*.json"))))

    rows = []
    for name, module, class_name, folder, (train, dev, test), flags, key in DEMO_RUNS:
        data = samples / folder
        task_cls = getattr(importlib.import_module(module), class_name)
        run_dir = out / folder.split("/")[-1]
        argv = ["--model_name_or_path", str(model_dir), "--train_file", str(data / f"{train}.json"),
                "--validation_file", str(data / f"{dev}.json"), "--test_file", str(data / f"{test}.json"),
                "--do_train", "--do_eval", "--do_predict", *flags.split(), "--max_steps", str(options.steps),
                # A tiny random model learns nothing at BERT's learning rates in a few dozen steps.
                "--learning_rate", str(options.learning_rate),
                "--logging_steps", "5", "--save_strategy", "no", "--overwrite_output_dir", "--disable_tqdm",
                "--output_dir", str(run_dir)]
        print(f"\n=== {name}: python -m {module} {' '.join(argv)}")
        start = time.time()
        metrics = run(task_cls, argv)
        history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
        losses = [h["loss"] for h in history if "loss" in h]
        rows.append((name, key, metrics.get(f"eval_{key}"), metrics.get(f"predict_{key}"), losses[0], losses[-1],
                     time.time() - start, run_dir))

    print("\nDemo results: a tiny random model on invented samples shows that every task runs end to end")
    print("(training loss at its first and last log); these are not the paper's numbers.")
    print(f"{'task':32} {'metric':10} {'dev':>8} {'test':>8} {'loss first -> last':>19} {'seconds':>8}  output")
    for name, key, dev, test, first, last, seconds, run_dir in rows:
        print(f"{name:32} {key:10} {dev:8.4f} {test:8.4f} {first:8.4f} -> {last:7.4f} {seconds:8.1f}  {run_dir}")
    summary = out / "demo_results.json"
    summary.write_text(json.dumps([{"task": r[0], "metric": r[1], "dev": r[2], "test": r[3], "first_loss": r[4],
                                    "last_loss": r[5]} for r in rows], indent=2))
    print(f"\nEach run folder holds all_results.json, *_predictions.jsonl, the saved model; summary: {summary}")


if __name__ == "__main__":
    main()
