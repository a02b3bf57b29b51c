"""One command that checks a GPU machine for this project, and measures it.

    python bench/gpu_check.py                    # on a CUDA machine: < 8 min on one H100/H200
    python bench/gpu_check.py --cpu_smoke        # tiny shapes on the CPU (the test suite runs this)
    python bench/gpu_check.py --only tasks,throughput --out my_report

Nothing is downloaded: task runs use a tiny BERT built from the repository's own data samples
(pretraining: a small synthetic linked corpus written to OUT);
memory and speed use BERT-base/-large shapes (random weights, BERT's 30522-word vocabulary)
built from `BertConfig`. Checks, each reported as pass / fail / skipped with its figures:

- tasks: every task (seqcls, NER, QA, MC, pretraining) runs N updates with --fp16 and with --bf16,
  with and without --padding_free, and writes its result and prediction files;
- cpu_equal: fp32 predictions on the GPU equal those on the CPU (tiny model, every task;
  pretraining: the same relation predictions and MLM loss within 1e-4), both padded;
- padding_free_equal: --padding_free against the padded path on the GPU (fp32, 4 updates, dropout
  off): the same weights within 1e-4 and the same dev/test predictions for seqcls, NER and MC, the
  tasks whose CPU default it is; until this has passed on a GPU, CUDA runs stay padded by default;
- sharding: --sharded_ddp simple/zero_dp_2/zero_dp_3/offload and --fsdp full_shard/shard_grad_op
  under torchrun (1 process, and 2 when there are 2 GPUs) run and end with plain DDP's weights
  (with one process the engine trains unsharded: the check then shows they run);
- memory: peak memory of BERT-large on the MedQA-large shape (2 questions x 4 choices x 512
  tokens) in fp32/fp16/bf16, with and without --gradient_checkpointing and --padding_free;
- throughput: samples/s and MFU of BERT-base/-large at 128/384/512 tokens, fp16 and bf16:
  the original configuration (pad to max length, per-parameter AdamW) vs the project's defaults
  (dynamic padding, fused AdamW) vs --padding_free, on lengths drawn like the BLURB/MRQA data;
- host_syncs: host-device synchronisations inside the update loop
  (`torch.cuda.set_sync_debug_mode`), counted between two logging boundaries, for fine-tuning and
  pretraining, with and without --padding_free.

Writes OUT/gpu_report.json and OUT/gpu_report.md (a Markdown table per check), prints the
Markdown, and exits 1 if a check failed. In --cpu_smoke mode every check runs its code path on
tiny shapes where the CPU can, and the GPU-only parts are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gpu  # noqa: E402
import common  # noqa: E402
from bench_pretrain import write_corpus  # noqa: E402
from common import torch  # noqa: E402

from linkbert.core.args import TrainingArguments  # noqa: E402
from linkbert.core.engine import Engine  # noqa: E402
from linkbert.core.run import batch_pad_multiple, run  # noqa: E402
from linkbert.core.task import Task, TaskContext  # noqa: E402
from linkbert.pretrain.model import LinkBertForPreTraining  # noqa: E402
from linkbert.pretrain.run_pretrain import PretrainCollator  # noqa: E402
from linkbert.tasks import TASKS as REGISTRY  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
# check -> the task of linkbert.tasks it runs on its samples; pretraining writes its own corpus.
CHECKED = {"seqcls": "chemprot_hf", "ner": "NCBI-disease_hf", "qa": "squad_hf", "mc": "medqa_usmle_hf"}
OWN_FLAGS = {"qa": ["--doc_stride", "32"]}
# name -> (module, sample folder (pretraining: None, the corpus is written by `Context`), flags:
# the task's --metric_name and the check's own)
TASKS = {name: (REGISTRY[task].module, SAMPLES / REGISTRY[task].data,
                [*(["--metric_name", REGISTRY[task].metric_name] if REGISTRY[task].metric_name else []),
                 *OWN_FLAGS.get(name, [])])
         for name, task in CHECKED.items()}
TASKS["pretrain"] = ("linkbert.pretrain.run_pretrain", None, ["--validation_split_percentage", "25"])
RESULT_FILES = ("train_results.json", "eval_results.json", "predict_results.json", "eval_predictions.jsonl",
                "predict_predictions.jsonl", "model.safetensors")
NO_TEST_SPLIT = ("pretrain",)  # no --do_predict: pretraining scores its held-out documents
SHARDING = {"ddp": [], "simple": ["--sharded_ddp", "simple"], "zero_dp_2": ["--sharded_ddp", "zero_dp_2"],
            "zero_dp_3": ["--sharded_ddp", "zero_dp_3"], "offload": ["--sharded_ddp", "offload"],
            "full_shard": ["--fsdp", "full_shard"], "shard_grad_op": ["--fsdp", "shard_grad_op"]}
# Real lengths (word pieces) per max length, as the benchmarks' shapes: RE sentences at 128,
# MRQA windows at 384, PubMedQA abstracts at 512 (median, log-std).
LENGTHS = {128: (48, 0.5), 384: (200, 0.45), 512: (345, 0.3)}


def task_module(name: str) -> type[Task]:
    if name in CHECKED:
        return REGISTRY[CHECKED[name]].task_class
    from linkbert.pretrain.run_pretrain import PretrainTask

    return PretrainTask


def tiny_model(out: Path, corpus: Path) -> str:
    from linkbert.tiny import build_tiny_model, texts_from_jsonl

    files = sorted(f for _, folder, _ in TASKS.values() if folder for f in folder.glob("*.json"))
    return str(build_tiny_model(out / "tiny_model", texts_from_jsonl([*files, corpus]), dropout=0.0))


def task_argv(name: str, ctx, out: Path, *extra: str) -> list[str]:
    _, folder, flags = TASKS[name]
    data = ["--corpus_file", str(ctx.corpus)] if folder is None else [
        "--train_file", str(folder / "train.json"), "--validation_file", str(folder / "dev.json"),
        "--test_file", str(folder / "test.json"), "--do_predict"]
    return ["--model_name_or_path", ctx.model, *data, "--do_train", "--do_eval", "--max_steps", str(ctx.steps),
            "--max_seq_length", "128", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
            "--save_strategy", "no", "--disable_tqdm", "--overwrite_output_dir", "--output_dir", str(out), *flags,
            *extra]


def result_files(name: str) -> list[str]:
    return [f for f in RESULT_FILES if not (name in NO_TEST_SPLIT and f.startswith("predict_"))]


def smoke_limits(ctx) -> list[str]:
    """CPU smoke: a few examples per split (the code path, not the figures)."""
    return [] if ctx.cuda else ["--max_train_samples", "8", "--max_eval_samples", "4", "--max_predict_samples", "4"]


# -- checks: each returns (status, rows for its table, notes) --------------------------------
def check_tasks(ctx) -> tuple:
    rows, failed = [], False
    runs = [(name, precision, packed) for name in TASKS for precision in ("--fp16", "--bf16")
            for packed in (False, True)]
    if not ctx.cuda:  # smoke: every task once, each precision, padded and padding-free (tasks have their own tests)
        runs = [("seqcls", "--fp16", False), ("ner", "--bf16", True), ("qa", "--bf16", True), ("mc", "--fp16", True),
                ("pretrain", "--bf16", True)]
    for name, precision, packed in runs:
        out = ctx.out / "tasks" / f"{name}{precision.replace('--', '_')}{'_pf' if packed else ''}"
        extra = [precision, "--padding_free", str(packed).lower(), *([] if ctx.cuda else ["--use_cpu"]),
                 *smoke_limits(ctx)]
        start = time.perf_counter()
        metrics = run(task_module(name), task_argv(name, ctx, out, *extra))
        missing = [f for f in result_files(name) if not (out / f).exists()]
        failed |= bool(missing)
        score = {k: v for k, v in metrics.items() if k.startswith("eval_") and
                 not k.endswith(("runtime", "per_second", "samples"))}
        rows.append([name, precision[2:], "yes" if packed else "no", f"{metrics['train_loss']:.4f}",
                     json.dumps(score), ", ".join(missing) or "all written",
                     f"{time.perf_counter() - start:.1f}"])
    return ("fail" if failed else "pass",
            ["task", "precision", "padding-free", "train loss", "dev metrics", "result files", "s"], rows,
            [f"{ctx.steps} updates each, tiny BERT, {'GPU' if ctx.cuda else 'CPU (smoke)'}."])


def check_cpu_equal(ctx) -> tuple:
    if not ctx.cuda:
        return "skipped", [], [], ["needs CUDA"]
    rows, failed = [], False
    for name in TASKS:
        folders = {}
        for device, extra in (("gpu", []), ("cpu", ["--use_cpu"])):
            folders[device] = ctx.out / "cpu_equal" / f"{name}_{device}"  # padded on both (the CPU's default is not)
            run(task_module(name), task_argv(name, ctx, folders[device], "--padding_free", "false", *extra))
        same = same_predictions(name, folders["gpu"], folders["cpu"])
        failed |= not same
        rows.append([name, "identical" if same else "DIFFERENT"])
    return "fail" if failed else "pass", ["task", "fp32 predictions, GPU vs CPU"], rows, []


# The tasks whose CPU default is --padding_free (padding_free.default_for; QA's loss differs by design).
PACKED_BY_DEFAULT = ("seqcls", "ner", "mc")
PACKED_WEIGHT_GAP = 1e-4  # float rounding after 4 updates (the CPU's is < 1e-5: tests/test_padding_free.py)


def check_padding_free_equal(ctx) -> tuple:
    """--padding_free against the padded path on this device: fp32, dropout off, 4 updates as
    tests/test_padding_free.py, then the dev and test predictions. On a GPU this decides whether
    padding-free can be the CUDA default too (today: the CPU's only)."""
    rows, failed = [], False
    for name in PACKED_BY_DEFAULT if ctx.cuda else PACKED_BY_DEFAULT[:1]:
        folders = {}
        for packed in ("false", "true"):
            folders[packed] = ctx.out / "padding_free_equal" / f"{name}_{packed}"
            run(task_module(name), task_argv(name, ctx, folders[packed], "--padding_free", packed, "--max_steps", "4",
                                             "--learning_rate", "5e-4", "--adam_epsilon", "1e-6",
                                             *([] if ctx.cuda else ["--use_cpu"]), *smoke_limits(ctx)))
        gap = largest_gap(*(load_weights(folders[packed]) for packed in ("true", "false")))
        same = same_predictions(name, folders["true"], folders["false"])
        failed |= not (same and gap <= PACKED_WEIGHT_GAP)
        rows.append([name, f"{gap:.1e}", "identical" if same else "DIFFERENT"])
    return ("fail" if failed else "pass", ["task", "largest weight difference", "dev and test predictions"], rows,
            [f"fp32, tiny BERT, dropout off, 4 updates; pass: predictions identical and weights within "
             f"{PACKED_WEIGHT_GAP:g}." + ("" if ctx.cuda else " CPU smoke: sequence classification only.")])


def load_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def largest_gap(a: dict, b: dict) -> float:
    """The largest difference between two state dicts of the same keys."""
    return max((a[k] - b[k]).abs().max().item() for k in b)


def same_predictions(name: str, a: Path, b: Path) -> bool:
    """The prediction files of two runs agree: the same file contents; pretraining's also hold
    float losses (rounded to 6 digits, which GPU and CPU rounding can move), so there the relation
    predictions must be the same and the MLM loss within 1e-4."""
    if name not in NO_TEST_SPLIT:
        return all((a / f).read_text() == (b / f).read_text()
                   for f in ("eval_predictions.jsonl", "predict_predictions.jsonl"))

    def read(folder: Path) -> tuple[list, float]:
        lines = (folder / "eval_predictions.jsonl").read_text().splitlines()
        return ([json.loads(line)["prediction"] for line in lines],
                json.loads((folder / "eval_results.json").read_text())["eval_mlm_loss"])
    (relations_a, loss_a), (relations_b, loss_b) = read(a), read(b)
    return relations_a == relations_b and abs(loss_a - loss_b) <= 1e-4


def check_sharding(ctx) -> tuple:
    if not ctx.cuda:
        return "skipped", [], [], ["needs CUDA (fairscale FSDP is CUDA-only); two-process gloo runs of DDP, simple "
                                   "and FSDP2 are in tests/test_distributed.py"]
    rows, failed = [], False
    counts = [1] + ([2] if torch.cuda.device_count() >= 2 else [])
    for nproc in counts:
        weights = {}
        for mode, extra in SHARDING.items():
            out = ctx.out / "sharding" / f"{mode}_{nproc}"
            argv = task_argv("seqcls", ctx, out, *extra)
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                       "-m", TASKS["seqcls"][0], *argv]
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=ctx.env, check=False)
            if done.returncode != 0:
                failed = True
                last = (done.stderr.strip().splitlines() or [""])[-1]
                rows.append([str(nproc), mode, f"FAILED ({done.returncode}): {last}", "-"])
                continue
            weights[mode] = load_weights(out)
            gap = largest_gap(weights[mode], weights["ddp"]) if "ddp" in weights else float("nan")
            failed |= not gap <= 1e-5
            rows.append([str(nproc), mode, "ran", f"{gap:.1e}"])
    return ("fail" if failed else "pass", ["processes", "mode", "run", "largest weight difference vs DDP"], rows,
            ["fp32, tiny BERT; with 1 process the engine trains without sharding (nothing to shard)."])


class PaddedTask(Task):
    """Just enough task for `Engine.train`: token ids of varying length, padded per batch
    (to a multiple of 8 under mixed precision) or to max length (the original)."""

    name = "gpu_check"

    def __init__(self, args, max_length: int, pad_to_max: bool, choices: int = 0) -> None:
        super().__init__(None, None, args, None)
        self.max_length, self.pad_to_max, self.choices = max_length, pad_to_max, choices

    def collator(self, ctx):
        pad_to_multiple_of = ctx.pad_to_multiple_of

        def collate(rows: list[dict]) -> dict:
            ids = [row["input_ids"] for row in rows]
            flat = [seq for seqs in ids for seq in seqs] if self.choices else ids
            width = self.max_length if self.pad_to_max else max(len(s) for s in flat)
            if pad_to_multiple_of and not self.pad_to_max:
                width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
            input_ids = torch.zeros(len(flat), width, dtype=torch.long)
            mask = torch.zeros(len(flat), width, dtype=torch.long)
            for i, seq in enumerate(flat):
                input_ids[i, :len(seq)], mask[i, :len(seq)] = torch.tensor(seq), 1
            shape = (len(rows), self.choices, width) if self.choices else (len(rows), width)
            return {"input_ids": input_ids.view(shape), "attention_mask": mask.view(shape),
                    "token_type_ids": torch.zeros(shape, dtype=torch.long),
                    "labels": torch.tensor([row["labels"] for row in rows])}
        return collate


class PretrainingTask(Task):
    """Just enough pretraining for `Engine.train`: stored masks, the real collator (which finds
    the masked positions on the host) and the real model's loss."""

    name = "gpu_check_pretrain"
    model_inputs = ("input_ids", "token_type_ids", "mlm_labels", "relation_label")
    label_columns = ()

    def __init__(self, args) -> None:
        super().__init__(None, None, args, None)

    def collator(self, ctx):
        return PretrainCollator(0, ctx.pad_to_multiple_of)


def pretraining_features(n: int, max_length: int, vocab_size: int):
    """`synthetic_features`' token ids as two segments, 15% of the tokens masked, random relations."""
    import numpy as np

    features, _ = synthetic_features(n, max_length, vocab_size)
    rng = np.random.default_rng(1)

    def add(row: dict) -> dict:
        ids = row["input_ids"]
        labels = [-100] * len(ids)
        for i in rng.choice(np.arange(1, len(ids) - 1), size=max(1, round(0.15 * (len(ids) - 2))), replace=False):
            labels[i] = ids[i]
        return {"token_type_ids": [0] * (len(ids) // 2) + [1] * (len(ids) - len(ids) // 2), "mlm_labels": labels,
                "relation_label": int(rng.integers(3))}
    return features.map(add, remove_columns=["labels"])


def synthetic_features(n: int, max_length: int, vocab_size: int, choices: int = 0, full: bool = False):
    import datasets
    import numpy as np

    rng = np.random.default_rng(0)
    median, sigma = LENGTHS.get(max_length, (max_length // 2, 0.5))
    count = n * max(choices, 1)
    lengths = np.full(count, max_length) if full else \
        np.clip(rng.lognormal(np.log(median), sigma, count), 8, max_length).astype(int)
    seqs = [[101, *rng.integers(1000, vocab_size, int(length) - 2).tolist(), 102] for length in lengths]
    if choices:
        seqs = [seqs[i:i + choices] for i in range(0, count, choices)]
    return datasets.Dataset.from_dict({"input_ids": seqs, "labels": rng.integers(0, 2, n).tolist()}), lengths


def bert(size: str, ctx, head: str = "seqcls"):
    from transformers import (
        BertConfig,
        BertForMultipleChoice,
        BertForSequenceClassification,
    )

    shape = bench_gpu.MODELS[size] if ctx.cuda else dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                                         intermediate_size=128)
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, num_labels=2, **shape)
    torch.manual_seed(0)
    model_class = {"mc": BertForMultipleChoice, "pretrain": LinkBertForPreTraining}.get(head,
                                                                                      BertForSequenceClassification)
    with torch.device("cuda" if ctx.cuda else "cpu"):  # BERT-large initialises much faster on the GPU
        model = model_class(config)
    return model, config


def run_engine(ctx, model, flags: dict, features, max_length: int, steps: int, original: bool = False,
               choices: int = 0, logging_steps: int = 500, pretraining: bool = False) -> float:
    """`Engine.train` for `steps` updates; returns the seconds they took (after one warm-up)."""
    args = TrainingArguments(output_dir=str(ctx.out / "engine"), save_strategy="no", disable_tqdm=True,
                             learning_rate=1e-5, max_steps=steps, logging_steps=logging_steps,
                             use_cpu=not ctx.cuda, **flags)
    dist_cls = common.OriginalOptimizerDist if original else common.DistState
    task = PretrainingTask(args) if pretraining else PaddedTask(args, max_length, original, choices)
    engine = Engine(model, task,
                    TaskContext(None, max_length, pad_to_multiple_of=batch_pad_multiple(args)), args, dist_cls(args))
    common.sync()
    start = time.perf_counter()
    engine.train(features, seed=args.seed)
    common.sync()
    return time.perf_counter() - start


def check_memory(ctx) -> tuple:
    rows = []
    batch, choices, length = (2, 4, 512) if ctx.cuda else (2, 4, 32)
    features, _ = synthetic_features(batch * 2, length, 30522, choices=choices, full=True)
    configurations = [(precision, checkpointing, packed) for precision in ("fp32", "fp16", "bf16")
                      for checkpointing in (False, True) for packed in (False, True)]
    for precision, checkpointing, packed in configurations if ctx.cuda else [("bf16", True, True)]:
        model, _ = bert("large", ctx, head="mc")
        if ctx.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        flags = dict(per_device_train_batch_size=batch, gradient_checkpointing=checkpointing,
                     padding_free=packed, fp16=precision == "fp16", bf16=precision == "bf16")
        run_engine(ctx, model, flags, features, length, steps=2, choices=choices)
        peak = torch.cuda.max_memory_allocated() / 2**30 if ctx.cuda else None
        rows.append([precision, "yes" if checkpointing else "no", "yes" if packed else "no",
                     f"{peak:.2f}" if peak is not None else "- (CPU)"])
        del model
    return ("pass" if ctx.cuda else "skipped (figures)",
            ["precision", "--gradient_checkpointing", "--padding_free", "peak memory GiB"], rows,
            [f"BERT-large multiple choice, {batch} questions x {choices} choices x {length} tokens, AdamW, "
             "2 updates." if ctx.cuda else "CPU smoke: the code path on a tiny BERT; no memory figures."])


def check_throughput(ctx) -> tuple:
    rows = []
    sizes = ("base", "large") if ctx.cuda else ("base",)
    lengths = (128, 384, 512) if ctx.cuda else (128,)
    precisions = ("fp16", "bf16") if ctx.cuda else ("bf16",)
    batch, steps = (32, 10) if ctx.cuda else (4, 1)
    peak = bench_gpu.peak_tflops(torch.cuda.get_device_name()) if ctx.cuda else None
    for size in sizes:
        for length in lengths:
            features, real = synthetic_features(batch * steps, length, 30522)
            # Model FLOPs of the real tokens: matmuls 6 x parameters per token, attention
            # 12 x layers x hidden per pair of tokens of one sequence (forward + backward).
            tokens, pairs = float(real.sum()), float((real.astype(float) ** 2).sum())
            for precision in precisions:
                for variant, original, packed in (("original", True, False), ("defaults", False, False),
                                                  ("--padding_free", False, True)):
                    model, config = bert(size, ctx)
                    options = dict(per_device_train_batch_size=batch, fp16=precision == "fp16", bf16=precision == "bf16",
                                   padding_free=packed)
                    run_engine(ctx, model, options, features.select(range(batch)), length, 1, original)  # warm-up
                    seconds = run_engine(ctx, model, options, features.select(range(batch * steps)), length, steps,
                                         original)
                    flops = (6 * bench_gpu.non_embedding_parameters(model) * tokens +
                             12 * config.num_hidden_layers * config.hidden_size * pairs)
                    mfu = flops / seconds / (peak * 1e12) if peak else None
                    rows.append([f"BERT-{size}" if ctx.cuda else "tiny", str(length), precision, variant,
                                 f"{batch * steps / seconds:.1f}", f"{100 * mfu:.1f}%" if mfu is not None else "-"])
                    del model
    return ("pass", ["model", "max length", "precision", "variant", "samples/s", "MFU (real tokens)"], rows,
            [f"batch {batch}, {steps} timed updates after one warm-up, lengths drawn like the BLURB/MRQA data; "
             "MFU counts real tokens only, against the dense bf16 peak" +
             ("" if ctx.cuda else "; CPU smoke: figures say nothing")])


def sync_variants(ctx, steps: int, batch: int) -> list[tuple[str, Callable[[int], None]]]:
    """What the host-sync check times: (name, run(updates)) for fine-tuning and pretraining,
    with and without --padding_free, on BERT-base (tiny shapes on the CPU)."""
    length = 128
    variants = []
    for name, kind, packed in (("defaults", "seqcls", False), ("--padding_free", "seqcls", True),
                               ("pretraining", "pretrain", False), ("pretraining --padding_free", "pretrain", True)):
        pretraining = kind == "pretrain"
        model, _ = bert("base", ctx, head=kind)
        features = pretraining_features(batch * steps, length, 30522) if pretraining else \
            synthetic_features(batch * steps, length, 30522)[0]
        options = dict(per_device_train_batch_size=batch, bf16=True, padding_free=packed)

        def train(updates: int, model=model, features=features, options=options, pretraining=pretraining) -> None:
            run_engine(ctx, model, options, features.select(range(batch * updates)), length, updates,
                       logging_steps=updates, pretraining=pretraining)
        variants.append((name, train))
    return variants


def check_host_syncs(ctx) -> tuple:
    if not ctx.cuda:
        return "skipped", [], [], ["needs CUDA (torch.cuda.set_sync_debug_mode)"]
    rows, failed = [], False
    steps = 8
    for variant, train in sync_variants(ctx, steps, batch=32):
        train(1)  # warm-up
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                train(steps)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [w for w in caught if "synchroniz" in str(w.message)]
        places: dict[str, int] = {}
        for w in syncs:
            place = f"{Path(w.filename).name}:{w.lineno}"
            places[place] = places.get(place, 0) + 1
        per_update = len(syncs) / steps
        failed |= per_update >= 1  # one logging boundary in `steps` updates: fewer than one per update
        rows.append([variant, str(len(syncs)), f"{per_update:.1f}", ", ".join(f"{p} x{n}" for p, n in places.items())])
    return ("fail" if failed else "pass", ["variant", "synchronisations", "per update", "where"], rows,
            [f"BERT-base, bf16, {steps} updates with one logging boundary (logging_steps {steps}), fine-tuning "
             "(sequence classification) and pretraining (MLM + DRP); pass: fewer than one synchronisation per "
             "update."])


CHECKS: dict[str, Callable] = {"tasks": check_tasks, "cpu_equal": check_cpu_equal,
                               "padding_free_equal": check_padding_free_equal, "sharding": check_sharding,
                               "memory": check_memory, "throughput": check_throughput, "host_syncs": check_host_syncs}


class Context:
    def __init__(self, out: Path, cuda: bool, steps: int) -> None:
        self.out, self.cuda, self.steps = out, cuda, steps
        self.corpus = out / "pretrain_corpus.jsonl"  # 40 linked documents of 150 words
        write_corpus(self.corpus, documents=40, words_per_document=150)
        self.model = tiny_model(out, self.corpus)
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def markdown(report: dict) -> str:
    lines = [f"# GPU check: {report['machine']}", "", f"{report['mode']}; {report['seconds']:.0f} s in all.", ""]
    skipped = [name for name, result in report["checks"].items() if result["status"].startswith("skipped")]
    if skipped:
        lines += [f"Skipped (need CUDA): {', '.join(skipped)}.", ""]
    for name, result in report["checks"].items():
        lines += [f"## {name}: {result['status']} ({result['seconds']:.0f} s)", ""]
        if result.get("error"):
            lines += ["```", result["error"], "```", ""]
        if result["rows"]:
            lines += ["| " + " | ".join(result["header"]) + " |", "|" + "|".join("---" for _ in result["header"]) + "|"]
            lines += ["| " + " | ".join(row) + " |" for row in result["rows"]] + [""]
        lines += [note for note in result["notes"]] + ([""] if result["notes"] else [])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu_smoke", action="store_true", help="tiny shapes on the CPU; GPU-only parts skipped")
    parser.add_argument("--only", default=",".join(CHECKS), help=f"comma-separated subset of: {', '.join(CHECKS)}")
    parser.add_argument("--steps", type=int, default=None, help="updates per task run (default 10; smoke 2)")
    parser.add_argument("--out", default="gpu_report", help="folder for gpu_report.json / .md")
    opts = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not opts.cpu_smoke
    if not cuda and not opts.cpu_smoke:
        print("gpu_check.py: no CUDA GPU here (torch.cuda.is_available() is False); run it on a GPU machine, "
              "or add --cpu_smoke for the CPU smoke run.", file=sys.stderr)
        sys.exit(2)
    common.quiet()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ctx = Context(out, cuda, opts.steps or (10 if cuda else 2))
    report = {"machine": common.machine(), "mode": "GPU" if cuda else "CPU smoke (--cpu_smoke)", "checks": {}}
    for name in opts.only.split(","):
        if name not in CHECKS:
            parser.error(f"--only {name}: choose from {', '.join(CHECKS)}")
        start = time.perf_counter()
        try:
            status, header, rows, notes = CHECKS[name](ctx)
            result = {"status": status, "header": header, "rows": rows, "notes": notes}
        except Exception:  # a check that crashes is a failed check; the others still run
            result = {"status": "fail", "header": [], "rows": [], "notes": [],
                      "error": traceback.format_exc(limit=-3).strip()}
        result["seconds"] = time.perf_counter() - start
        report["checks"][name] = result
        print(f"{name}: {result['status']} ({result['seconds']:.0f} s)", flush=True)
    report["seconds"] = time.perf_counter() - started
    (out / "gpu_report.json").write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    (out / "gpu_report.md").write_text(text + "\n")
    print(text)
    sys.exit(1 if any(r["status"] == "fail" for r in report["checks"].values()) else 0)


if __name__ == "__main__":
    main()
