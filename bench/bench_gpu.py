"""GPU training throughput and model-FLOPs utilisation (MFU) of the project's loop, BERT-base and
BERT-large shapes, bf16.

    python bench/bench_gpu.py                                  # base + large, seq 384 and 512
    python bench/bench_gpu.py --models large --seq 512 --batch 32 --steps 30
    python bench/bench_gpu.py --peak_tflops 362                # a GPU missing from PEAK_BF16_TFLOPS
    python bench/bench_gpu.py --torch_compile                  # opt-in; compare with and without

The models are randomly initialised from `BertConfig` (nothing is downloaded; speed does not
depend on the weights) and trained through the real `Engine.train` with bf16 autocast, fused
AdamW and SDPA attention, on full-length sequences (MRQA windows are mostly full, and MFU counts
real tokens only). The first `--warmup` updates are not timed.

    FLOPs per update = 6 x non-embedding parameters x tokens              (matmuls, fwd + bwd)
                     + 12 x layers x hidden x seq_len x tokens            (attention scores and
                                                                           weighted sum, fwd + bwd)
    MFU = FLOPs per second / the GPU's dense bf16 peak

Needs CUDA; on a machine without it this script stops with one line saying so.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import torch  # noqa: E402

from linkbert.core.args import TrainingArguments  # noqa: E402
from linkbert.core.distributed import DistState  # noqa: E402
from linkbert.core.engine import Engine  # noqa: E402
from linkbert.core.task import Task, TaskContext  # noqa: E402
from linkbert.core.throughput import PEAK_BF16_TFLOPS, non_embedding_parameters, peak_tflops  # noqa: E402, F401

MODELS = {  # BERT's published shapes; LinkBERT-base/-large share them (vocabulary aside)
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}
MFU_TARGET = {"large": 0.45}


class FixedLengthTask(Task):
    """Just enough task for `Engine.train`: features are already full-length token ids."""

    name = "bench_gpu"

    def collator(self, ctx):
        return lambda rows: {k: torch.tensor([row[k] for row in rows]) for k in rows[0]}


def flops_per_update(model, config, seq_len: int, tokens: int) -> float:
    return (6 * non_embedding_parameters(model) * tokens
            + 12 * config.num_hidden_layers * config.hidden_size * seq_len * tokens)


def synthetic_features(n: int, seq_len: int, vocab_size: int, seed: int = 0):
    import datasets

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab_size, (n, seq_len), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    return datasets.Dataset.from_dict({
        "input_ids": ids.tolist(), "attention_mask": [[1] * seq_len] * n,
        "token_type_ids": [[0] * seq_len] * n, "labels": torch.randint(0, 2, (n,), generator=g).tolist()})


def measure(model_name: str, seq_len: int, batch: int, steps: int, warmup: int, compile_: bool,
            workers: int) -> dict:
    """Updates per second, samples per second and FLOP/s of `Engine.train` for one shape."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=30522, max_position_embeddings=512, num_labels=2, **MODELS[model_name])
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    if model.config._attn_implementation != "sdpa":
        raise SystemExit(f"expected SDPA attention, the model uses {model.config._attn_implementation!r}")
    out = Path(common.WORKDIR) / "out"
    args = TrainingArguments(output_dir=str(out), bf16=True, per_device_train_batch_size=batch,
                             learning_rate=1e-5, save_strategy="no", disable_tqdm=True,
                             torch_compile=compile_, dataloader_num_workers=workers, padding_free=False)
    engine = Engine(model, FixedLengthTask(None, None, args, None), TaskContext(None, seq_len), args, DistState(args))
    features = synthetic_features(max(steps, warmup) * batch, seq_len, config.vocab_size)

    def run(updates: int) -> float:
        engine.state = common.TrainState()
        engine.args = dataclasses.replace(args, max_steps=updates)  # the arguments are frozen
        common.sync()
        start = common.time.perf_counter()
        engine.train(features, seed=args.seed)
        common.sync()
        return common.time.perf_counter() - start

    run(warmup)  # compilation, cuDNN/cuBLAS heuristics, allocator growth
    seconds = run(steps)
    tokens = batch * seq_len
    result = {"updates/s": steps / seconds, "samples/s": steps * batch / seconds,
              "flops/s": steps * flops_per_update(model, config, seq_len, tokens) / seconds,
              "params": sum(p.numel() for p in model.parameters()),
              "memory_gib": torch.cuda.max_memory_allocated() / 2**30}
    engine = model = None  # free the GPU memory before the next shape
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="base,large", help="comma-separated: base, large")
    parser.add_argument("--seq", default="384,512", help="comma-separated sequence lengths")
    parser.add_argument("--batch", type=int, default=32, help="micro-batch (per update)")
    parser.add_argument("--steps", type=int, default=20, help="timed updates per shape")
    parser.add_argument("--warmup", type=int, default=5, help="untimed updates first")
    parser.add_argument("--peak_tflops", type=float, default=None, help="override the GPU's dense bf16 peak")
    parser.add_argument("--torch_compile", action="store_true", help="torch.compile the model (opt-in flag)")
    parser.add_argument("--dataloader_num_workers", type=int, default=2, help="collation off the main thread")
    opts = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"bench_gpu.py needs a CUDA GPU, and torch.cuda.is_available() is False here (torch "
              f"{torch.__version__}). Run it on a GPU machine; on CPU use bench_train.py, bench_eval.py "
              f"and bench_engine_overhead.py.", file=sys.stderr)
        sys.exit(2)
    common.quiet()

    name = torch.cuda.get_device_name()
    peak = opts.peak_tflops or peak_tflops(name)
    print(f"{common.machine()}; dense bf16 peak "
          f"{f'{peak:.0f} TFLOP/s' if peak else 'unknown (give --peak_tflops)'}")
    rows, misses = [], []
    for model_name in opts.models.split(","):
        for seq_len in (int(s) for s in opts.seq.split(",")):
            r = measure(model_name, seq_len, opts.batch, opts.steps, opts.warmup, opts.torch_compile,
                        opts.dataloader_num_workers)
            mfu = r["flops/s"] / (peak * 1e12) if peak else None
            rows.append([f"BERT-{model_name} ({r['params'] / 1e6:.0f}M)", str(seq_len), str(opts.batch),
                         f"{r['samples/s']:.1f}", f"{r['samples/s'] * seq_len:.0f}", f"{r['flops/s'] / 1e12:.0f}",
                         f"{100 * mfu:.1f}%" if mfu is not None else "-", f"{r['memory_gib']:.1f}"])
            target = MFU_TARGET.get(model_name)
            if mfu is not None and target and mfu < target:
                misses.append(f"BERT-{model_name} at {seq_len}: {100 * mfu:.1f}% < {100 * target:.0f}%")
    common.print_table(
        f"GPU training, bf16{', torch.compile' if opts.torch_compile else ''}",
        ["model", "seq", "batch", "samples/s", "tokens/s", "model TFLOP/s", "MFU", "peak memory GiB"], rows,
        [f"{opts.steps} timed updates after {opts.warmup} warm-up updates, Engine.train, fused AdamW, SDPA."])
    if peak and "large" in opts.models:
        print("MFU target >= 45% for BERT-large: " + ("met." if not misses else "missed: " + "; ".join(misses)))


if __name__ == "__main__":
    main()
