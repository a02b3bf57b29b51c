"""Pretraining: input building (documents/s) and training throughput against HF's run_mlm.py recipe.

    python bench/bench_pretrain.py --threads 2   # MiniLM (22M), 128-token inputs, a few minutes
    python bench/bench_pretrain.py --quick       # tiny random BERT: a smoke run in under a minute

Both sides see the same model weights and the same token sequences (the inputs
`linkbert.pretrain` builds from one seeded synthetic linked corpus), the same batch size and
optimizer, and run the same number of updates:
- run_mlm recipe: `BertForMaskedLM` + `DataCollatorForLanguageModeling` (dynamic 15% masking) in
  a plain loop (the `run_mlm_no_trainer.py` steps without accelerate: no Trainer overhead counted),
  MLM only, logits over the whole vocabulary at every position;
- linkbert.pretrain: `LinkBertForPreTraining` (MLM + DRP) through the project's engine, with the
  vocabulary projection only at the masked positions;
- the same with `--padding_free` (the encoder on the real tokens only).
The variants alternate and repeat; the table gives the median of the per-repeat time ratios.
Input building is timed on its own (tokenising the documents, then building the inputs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets the offline, throw-away caches before transformers loads)

import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from linkbert.core.args import parse_args  # noqa: E402
from linkbert.core.distributed import DistState  # noqa: E402
from linkbert.core.engine import Engine  # noqa: E402
from linkbert.core.data import CheckedSplits  # noqa: E402
from linkbert.core.run import build_features, load_model, resolve_context  # noqa: E402
from linkbert.pretrain.run_pretrain import PretrainArguments, PretrainTask  # noqa: E402


def write_corpus(path: Path, documents: int, words_per_document: int) -> None:
    rng = random.Random(0)
    vocabulary = common.WORDS
    with open(path, "w", encoding="utf-8") as f:
        for d in range(documents):
            text = " ".join(rng.choice(vocabulary) for _ in range(words_per_document))
            links = [f"d{j}" for j in rng.sample(range(documents), 5) if j != d]
            f.write(json.dumps({"id": f"d{d}", "title": f"Document {d}", "text": text, "links": links}) + "\n")


def make_task(model: str, corpus: Path, out: Path, seq: int, batch: int, steps: int, *extra: str) -> PretrainTask:
    argv = ["--model_name_or_path", model, "--corpus_file", str(corpus), "--output_dir", str(out), "--do_train",
            "--max_seq_length", str(seq), "--validation_split_percentage", "0", "--per_device_train_batch_size",
            str(batch), "--max_steps", str(steps), "--learning_rate", "1e-4", "--disable_tqdm", "--save_strategy", "no",
            "--logging_steps", str(steps), "--use_cpu", "--padding_free", "false", *extra]  # extra may turn it on
    return PretrainTask(*parse_args(PretrainArguments, argv))


def time_linkbert(task: PretrainTask, features, seed: int) -> tuple[float, float]:
    dist = DistState(task.training_args)
    ctx, config = resolve_context(task, CheckedSplits())
    torch.manual_seed(seed)
    model = load_model(task, config)
    engine = Engine(model, task, ctx, task.training_args, dist)
    wall, cpu = time.perf_counter(), time.process_time()
    engine.train(features, seed=seed)
    return time.perf_counter() - wall, time.process_time() - cpu


def time_run_mlm(task: PretrainTask, tokenizer, features, seed: int) -> tuple[float, float]:
    """HF run_mlm's recipe (as its `_no_trainer` loop, without accelerate): `BertForMaskedLM`,
    `DataCollatorForLanguageModeling`, AdamW, linear schedule, clipping, on the same sequences."""
    from torch.utils.data import DataLoader
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, get_scheduler

    a = task.training_args
    torch.manual_seed(seed)
    model = AutoModelForMaskedLM.from_pretrained(task.model_args.model_name_or_path, dtype=torch.float32)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    sequences = features.select_columns(["input_ids", "token_type_ids"])
    loader = DataLoader(sequences, batch_size=a.per_device_train_batch_size, shuffle=True, collate_fn=collator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=a.learning_rate)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=a.max_steps)
    model.train()
    wall, cpu = time.perf_counter(), time.process_time()
    for step, batch in enumerate(loader):
        if step == a.max_steps:
            break
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_flags(parser)
    parser.add_argument("--seq", type=int, default=128, help="max_seq_length of the inputs")
    parser.add_argument("--batch", type=int, default=16, help="per-device training batch")
    parser.add_argument("--steps", type=int, default=None, help="updates per variant and repeat")
    opts = parser.parse_args()
    common.apply_common_flags(opts)
    folder = Path(common.WORKDIR) / "corpus"
    folder.mkdir()
    corpus = folder / "corpus.json"
    documents = 400 if opts.quick else 2000
    write_corpus(corpus, documents, words_per_document=300)
    model = common.model_path(opts.quick, [folder])
    steps = opts.steps or (4 if opts.quick else 6)
    work = Path(common.WORKDIR)

    task = make_task(model, corpus, work / "out", opts.seq, opts.batch, steps)
    start = time.perf_counter()
    examples, checked = task.load_examples(["train"])
    tokenised = time.perf_counter() - start
    ctx, _ = resolve_context(task, checked)
    start = time.perf_counter()
    features = build_features(task, ctx, "train", examples["train"], training=True)
    built = time.perf_counter() - start
    common.print_table(
        f"Input building: {documents} documents of 300 words -> {len(features)} inputs of {opts.seq} tokens",
        ["step", "documents/s", "inputs/s"],
        [["checking and tokenising the documents", f"{documents / tokenised:,.0f}", "-"],
         ["drawing relations, partners and masks", f"{documents / built:,.0f}", f"{len(features) / built:,.0f}"]])

    features = features.select(range(min(len(features), steps * opts.batch)))
    # Only the training loops are timed (each side's own runtime), alternating which goes first.
    runs = {"run_mlm": lambda: time_run_mlm(task, ctx.tokenizer, features, seed=0),
            "linkbert": lambda: time_linkbert(make_task(model, corpus, work / "lb", opts.seq, opts.batch, steps),
                                              features, seed=0),
            "padding_free": lambda: time_linkbert(make_task(model, corpus, work / "pf", opts.seq, opts.batch, steps,
                                                            "--padding_free"), features, seed=0)}
    timings = {name: common.Timings() for name in runs}
    for repeat in range(opts.repeats):
        names = list(runs)
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # the first variant rotates
            wall, cpu = runs[name]()
            timings[name].wall.append(wall)
            timings[name].cpu.append(cpu)
    base, ours, packed = timings["run_mlm"], timings["linkbert"], timings["padding_free"]
    lengths = [len(ids) for ids in features["input_ids"]]
    name = "tiny random BERT" if opts.quick else "MiniLM-L6-H384"
    samples = steps * opts.batch
    common.print_table(
        f"Pretraining throughput ({name}, {steps} updates of {opts.batch} x {opts.seq} tokens, {opts.repeats} "
        f"repeats, {torch.get_num_threads()} threads, {common.machine()})",
        ["variant", "samples/s (median wall)", *common.SPEEDUP_HEADER],
        [["HF run_mlm recipe: MLM only, full-vocabulary logits",
          f"{samples / statistics.median(base.wall):.1f}", "1.00x", "1.00x"],
         ["linkbert.pretrain: engine, MLM + DRP, logits at masked positions",
          f"{samples / statistics.median(ours.wall):.1f}", *common.speedup_cells(base, ours)],
         ["linkbert.pretrain --padding_free", f"{samples / statistics.median(packed.wall):.1f}",
          *common.speedup_cells(base, packed)]],
        [f"Input lengths: mean {statistics.mean(lengths):.0f} of {opts.seq} tokens. --padding_free over the default, "
         f"CPU time: {common.median_ratio(ours.cpu, packed.cpu):.2f}x (range {common.spread(ours.cpu, packed.cpu)})."])


if __name__ == "__main__":
    main()
