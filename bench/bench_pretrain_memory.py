"""Pretraining input building: peak memory against corpus size, memory-mapped token store against
the tokens copied into memory (the store before it), in one run.

    python bench/bench_pretrain_memory.py            # 4k, 8k, 16k documents of 400 words, ~5 minutes
    python bench/bench_pretrain_memory.py --quick    # 1k, 2k, 4k documents: a smoke run

For each corpus size and each store, a fresh child process (its own empty `datasets` cache) runs
the real path of a pretraining run up to training: the corpus checked (`read_corpus`), documents
tokenised (`datasets.map`), the token store, the training inputs built (`build_features`, dynamic
masks) and their statistics (`describe_features`). A thread samples the child's anonymous
resident memory (`RssAnon`: what cannot be paged back to a file; pages of memory-mapped files
are left out, the kernel drops them under pressure) every 10 ms; `VmHWM` (all resident memory,
file pages included) is reported beside it. The table gives the slope of the peak against the
corpus, in bytes per token and per document (least squares over the sizes), for both stores.
What remains in the memory-mapped slope is per document: the link graph (ids, links, in-degrees,
each document's linked-document sampler) and the token offsets.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS_PER_DOCUMENT = 400
LINKS_PER_DOCUMENT = 5


def write_corpus(path: Path, documents: int) -> int:
    """A seeded synthetic linked corpus; returns its number of words (one token each here)."""
    rng = random.Random(documents)
    vocabulary = [f"w{i}" for i in range(2000)]
    with open(path, "w", encoding="utf-8") as f:
        for d in range(documents):
            text = " ".join(rng.choices(vocabulary, k=WORDS_PER_DOCUMENT))
            links = [f"d{j}" for j in rng.sample(range(documents), LINKS_PER_DOCUMENT) if j != d]
            f.write(json.dumps({"id": f"d{d}", "title": f"Document {d}", "text": text, "links": links}) + "\n")
    return documents * WORDS_PER_DOCUMENT


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def child(corpus: str, model: str, store: str) -> None:
    """One pretraining run's input building; prints its peak memory as JSON."""
    peak = {"anon": status_kib("RssAnon")}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak["anon"] = max(peak["anon"], status_kib("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    import datasets
    import numpy as np

    from linkbert.core.args import parse_args
    from linkbert.core.run import build_features, resolve_context
    from linkbert.pretrain.inputs import SegmentStore
    from linkbert.pretrain.run_pretrain import PretrainArguments, PretrainTask

    datasets.disable_progress_bars()
    start_anon = status_kib("RssAnon")
    argv = ["--model_name_or_path", model, "--corpus_file", corpus, "--output_dir", str(Path(corpus).parent / "out"),
            "--do_train", "--max_seq_length", "128", "--validation_split_percentage", "0"]
    task = PretrainTask(*parse_args(PretrainArguments, argv))
    examples, checked = task.load_examples(["train"])
    if store == "in_memory":  # the previous store: every token copied into memory (int32 + bool)
        s = task.store
        task.store = SegmentStore(np.array(s.tokens), np.array(s.word_start), s.offsets, s.segment_length)
    ctx, _ = resolve_context(task, checked)
    features = build_features(task, ctx, "train", examples["train"], training=True)
    description = task.describe_features("train", features)
    done.set()
    sampler.join()
    peak["anon"] = max(peak["anon"], status_kib("RssAnon"))
    print(json.dumps({"peak_anon_kib": peak["anon"], "start_anon_kib": start_anon, "hwm_kib": status_kib("VmHWM"),
                      "inputs": description["inputs"], "documents": len(task.graph)}))


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller corpora (a smoke run)")
    parser.add_argument("--child", nargs=3, metavar=("CORPUS", "MODEL", "STORE"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        child(*opts.child)
        return
    from linkbert.tiny import build_tiny_model

    sizes = [1000, 2000, 4000] if opts.quick else [4000, 8000, 16000]
    work = Path(tempfile.mkdtemp(prefix="linkbert-bench-memory-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    model = str(build_tiny_model(work / "model", [" ".join(f"w{i}" for i in range(2000))]))
    results: dict[str, list[dict]] = {"memory_mapped": [], "in_memory": []}
    tokens: list[int] = []
    for documents in sizes:
        folder = work / f"corpus{documents}"
        folder.mkdir()
        tokens.append(write_corpus(folder / "corpus.jsonl", documents))
        for store in results:  # alternate the stores at each size
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                   "HF_DATASETS_CACHE": str(folder / f"cache_{store}"), "OMP_NUM_THREADS": "1"}
            started = time.time()
            done = subprocess.run([sys.executable, __file__, "--child", str(folder / "corpus.jsonl"), model, store],
                                  env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"child failed: {done.stderr[-3000:]}")
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            measured["seconds"] = round(time.time() - started, 1)
            results[store].append(measured)
    print(f"Peak memory of pretraining input building (seq 128, {WORDS_PER_DOCUMENT} tokens and "
          f"{LINKS_PER_DOCUMENT} links a document; child processes, fresh caches)\n")
    print("| store | documents | tokens | inputs | peak RssAnon MiB | VmHWM MiB | s |")
    print("|---|---|---|---|---|---|---|")
    for store, rows in results.items():
        for n, t, r in zip(sizes, tokens, rows):
            print(f"| {store} | {n} | {t / 1e6:.1f} M | {r['inputs']} | {r['peak_anon_kib'] / 1024:.1f} | "
                  f"{r['hwm_kib'] / 1024:.1f} | {r['seconds']} |")
    print("\n| store | peak RssAnon slope, bytes/token | bytes/document | VmHWM slope, bytes/token |")
    print("|---|---|---|---|")
    slopes = {}
    for store, rows in results.items():
        anon = slope(tokens, [r["peak_anon_kib"] * 1024 for r in rows])
        hwm = slope(tokens, [r["hwm_kib"] * 1024 for r in rows])
        slopes[store] = anon
        print(f"| {store} | {anon:.2f} | {anon * WORDS_PER_DOCUMENT:.0f} | {hwm:.2f} |")
    ratio = slopes["in_memory"] / slopes["memory_mapped"] if slopes["memory_mapped"] > 0 else float("inf")
    print(f"\nGrowth of anonymous memory with the corpus, in-memory / memory-mapped store: {ratio:.1f}x "
          f"({slopes['in_memory'] - slopes['memory_mapped']:.2f} bytes/token saved; the in-memory store "
          "itself holds 5, the rest is further copies on that path, not broken down here)")


if __name__ == "__main__":
    main()
