"""--padding_free against the project's defaults and the original configuration, training and
evaluation, on the RE, PubMedQA and QA shapes.

    python bench/bench_padding_free.py --threads 1     # MiniLM (22M), three shapes, ~6 min here
    python bench/bench_padding_free.py --quick         # tiny random BERT: a smoke run
    python bench/bench_padding_free.py --shapes re --repeats 5

Every variant drives the real `Engine.train` / `Engine.predict` with the real `SeqClsTask` over
the same synthetic examples (same weights, same seeded order), so time ratios are throughput
ratios. Variants:

- original: every sequence padded to max_seq_length, fp32 on CPU (fp16 on a GPU), the
  per-parameter AdamW loop of transformers 4.9.1;
- project defaults: dynamic padding (to a multiple of 8 under fp16/bf16), fused AdamW. The QA
  task pads its windows to max_seq_length by default (as the original), so on the QA shape the
  defaults are padded to max length too;
- --padding_free: the defaults with the model computing on real tokens only.

The QA shape runs through the sequence-classification head: the encoder is the same, and the
span head's cost (one hidden x 2 matrix) is negligible. Evaluation also reports the largest
difference between the padding-free and the default logits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from linkbert.core import padding_free  # noqa: E402

STEPS = {"re": 3, "pubmedqa": 2, "qa": 2}  # updates per variant and repeat
EVAL_EXAMPLES = {"re": 128, "pubmedqa": 32, "qa": 48}
TARGET_RE = 1.8  # over the project's defaults, training, RE shape
#: --padding_free with the attention path it had before the length buckets (one SDPA call per
#: sequence on the CPU, also in evaluation), run with `padding_free.CPU_BUCKETS` off.
PER_SEQUENCE = "--padding_free, SDPA per sequence (before the buckets)"
NOISE = "--padding_free again (noise floor)"


def variants(shape: common.Shape, on_gpu: bool) -> dict[str, tuple[list[str], type]]:
    default_padding = ["--pad_to_max_length"] if shape.key == "qa" else []
    return {
        f"original (pad to max, {'fp16' if on_gpu else 'fp32'}, per-parameter AdamW)":
            (["--pad_to_max_length"], common.OriginalOptimizerDist),
        "project defaults" + (" (QA: pad to max, fused AdamW)" if default_padding else
                              " (dynamic padding, fused AdamW)"): (default_padding, common.DistState),
        "--padding_free": (["--padding_free"], common.DistState),
        PER_SEQUENCE: (["--padding_free"], common.DistState),
        NOISE: (["--padding_free"], common.DistState),
    }


def as_variant(name: str, run: Callable[[], object]) -> Callable[[], object]:
    """`run`, with the CPU attention path of variant `name`."""
    def wrapped():
        padding_free.CPU_BUCKETS = name != PER_SEQUENCE
        try:
            return run()
        finally:
            padding_free.CPU_BUCKETS = True
    return wrapped


def comparison_note(times: dict) -> str:
    """The buckets against the path before them, beside the noise floor (the same variant twice)."""
    packed, before, again = times["--padding_free"], times[PER_SEQUENCE], times[NOISE]
    return (f"--padding_free (length buckets where no attention dropout applies) over SDPA per sequence everywhere, "
            f"CPU time: "
            f"{common.speedup_cells(before, packed)[1]}; noise floor (--padding_free against itself): "
            f"{common.speedup_cells(again, packed)[1]}.")


def bench_shape(shape: common.Shape, model_dir: str, data: Path, steps: int, repeats: int) -> dict:
    setups = {name: common.prepare(model_dir, data, shape, flags, dist_cls)
              for name, (flags, dist_cls) in variants(shape, common.torch.cuda.is_available()).items()}
    names = list(setups)
    evaluation = bench_evaluation(shape, setups, repeats)  # first: every variant holds the same weights
    counters = {}
    for name, setup in setups.items():
        common.train_epoch(setup, max_steps=1)  # warm-up: lazy initialisation, first kernels
        setup.engine.feeder.collate = counters[name] = common.CountingCollator(setup.engine.feeder.collate)

    train = common.interleaved({n: as_variant(n, lambda s=s: common.train_epoch(s)) for n, s in setups.items()},
                               repeats)
    samples = steps * shape.train_batch
    rows = []
    for name, t in train.items():
        wall, c = common.statistics.median(t.wall), counters[name]
        rows.append([name, f"{wall / steps:.2f}", f"{samples / wall:.1f}", f"{c.real / repeats / wall:.0f}",
                     f"{100 * (1 - c.real / c.padded):.0f}%", *common.speedup_cells(train[names[0]], t),
                     *common.speedup_cells(train[names[1]], t)[1:]])
    common.print_table(
        f"Training, {shape.title}",
        ["variant", "s/update", "samples/s", "real tokens/s", "padding", *common.SPEEDUP_HEADER,
         "over the defaults, CPU time: median (range)"], rows,
        [f"{samples} {common.data_kind(shape)} examples ({common.length_summary(setups[names[2]].train)}), one epoch of "
         f"{steps} updates per variant and repeat, {repeats} alternating repeats; {common.machine()}.",
         comparison_note(train)])

    common.print_table(*evaluation)
    return train


def bench_evaluation(shape: common.Shape, setups: dict, repeats: int) -> tuple:
    """Evaluation speed of every variant (same weights), and the largest difference between the
    padding-free and the default logits. Returns the table for `common.print_table`."""
    names = list(setups)
    for name, setup in setups.items():
        as_variant(name, lambda s=setup: s.engine.predict(s.dev))()  # warm-up
    times = common.interleaved({n: as_variant(n, lambda s=s: s.engine.predict(s.dev)) for n, s in setups.items()},
                               repeats)
    gap = float(np.abs(np.stack(times[names[1]].result) - np.stack(times[names[2]].result)).max())
    n = len(setups[names[1]].dev)
    rows = [[name, f"{n / common.statistics.median(t.wall):.1f}", *common.speedup_cells(times[names[0]], t),
             *common.speedup_cells(times[names[1]], t)[1:]] for name, t in times.items()]
    return (f"Evaluation, {shape.title}",
            ["variant", "examples/s", *common.SPEEDUP_HEADER, "over the defaults, CPU time: median (range)"], rows,
            [f"{n} {common.data_kind(shape)} examples, batch 8 by length, {repeats} alternating repeats; largest |logit "
             f"difference| padding-free vs defaults {gap:.1e}.", comparison_note(times)])


def bench_attention(repeats: int) -> None:
    """The CPU choice of `padding_free`: attention over the packed sequences of one RE batch
    (MiniLM's 12 heads x 32), forward + backward, by four correct means: length buckets (what
    the module does on CPU), SDPA per sequence (what it did before), re-padding for attention
    only (one masked SDPA), and SDPA on a jagged nested tensor (what it does on CUDA)."""
    import torch

    from linkbert.core import padding_free

    shape = common.SHAPES["re"]
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(np.log(shape.median_tokens), shape.sigma, shape.train_batch), 8,
                      shape.max_seq_length).astype(int).tolist()
    heads, dim, total, longest = 12, 32, sum(lengths), max(lengths)
    cu = torch.tensor([0, *np.cumsum(lengths).tolist()])
    mask = torch.arange(longest)[None] < torch.tensor(lengths)[:, None]
    index = mask.flatten().nonzero().squeeze(1)

    def repadded(q, k, v, p):
        def pad(x):  # [heads, T, d] -> [B, heads, L, d]
            out = x.new_zeros(len(lengths) * longest, heads, dim).index_copy(0, index, x.transpose(0, 1))
            return out.view(len(lengths), longest, heads, dim).transpose(1, 2)
        out = torch.nn.functional.scaled_dot_product_attention(pad(q), pad(k), pad(v), attn_mask=mask[:, None, None],
                                                               dropout_p=p)
        return out.transpose(1, 2).reshape(-1, heads, dim).index_select(0, index).transpose(0, 1)

    buckets = padding_free.plan_buckets(lengths)
    means = {"SDPA per sequence (CPU path before the buckets)": lambda q, k, v, p:
                 padding_free._per_sequence_attention(q, k, v, lengths, p, None),
             f"length buckets, one masked SDPA each (CPU path; {len(buckets.shapes)} here)": lambda q, k, v, p:
                 padding_free._bucketed_attention(q, k, v, buckets, p, None),
             "re-padded, one masked SDPA": repadded,
             "nested tensor SDPA (CUDA path)": lambda q, k, v, p: padding_free._nested_attention(
                 q, k, v, cu, lengths, p, None)}
    # HF's projections: [T, heads, d] in memory, seen as [heads, T, d]
    qkv = [torch.randn(total, heads, dim).transpose(0, 1).requires_grad_() for _ in range(3)]
    rows = []
    for dropout in (0.0, 0.1):
        def step(f):
            def run():
                for _ in range(10):
                    f(*qkv, dropout).sum().backward()
            return run
        times = common.interleaved({name: step(f) for name, f in means.items()}, repeats + 1)
        cpu = {name: t.cpu[1:] for name, t in times.items()}  # the first repeat warms up
        first = cpu[next(iter(means))]
        rows += [[name, f"{dropout}", f"{1000 * common.statistics.median(c) / 10:.1f}",
                  f"{common.median_ratio(c, first):.2f}x"] for name, c in cpu.items()]
    common.print_table("CPU attention over one packed RE batch (forward + backward)",
                       ["means", "dropout", "ms per call, CPU time", "time / per-sequence time"], rows,
                       [f"{len(lengths)} sequences, {total} tokens (longest {longest}), {heads} heads x {dim}; "
                        f"{repeats} alternating repeats of 10 calls after one warm-up; {common.machine()}."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_flags(parser)
    common.add_real_data_flag(parser)
    parser.add_argument("--shapes", default="re,pubmedqa,qa", help="comma-separated: re, pubmedqa, qa")
    opts = parser.parse_args()
    common.apply_common_flags(opts)

    shapes = [common.SHAPES[k] for k in opts.shapes.split(",")]
    steps = {s.key: 2 if opts.quick else STEPS[s.key] for s in shapes}
    data = {s.key: common.write_data(s, n_train=steps[s.key] * s.train_batch,
                                     n_dev=16 if opts.quick else EVAL_EXAMPLES[s.key]) for s in shapes}
    model_dir = common.model_path(opts.quick, list(data.values()))
    common.header(opts.quick, model_dir)
    bench_attention(opts.repeats)
    results = {s.key: bench_shape(s, model_dir, data[s.key], steps[s.key], opts.repeats) for s in shapes}

    clock = common.primary_clock()
    for key, times in results.items():
        original, defaults, packed = list(times.values())[:3]
        over_defaults = common.median_ratio(getattr(defaults, clock), getattr(packed, clock))
        over_original = common.median_ratio(getattr(original, clock), getattr(packed, clock))
        verdict = ""
        if key == "re":
            verdict = " (target >= 1.8x: " + ("met)" if over_defaults >= TARGET_RE else
                                               f"missed by {TARGET_RE - over_defaults:.2f}x)")
        print(f"{key}: --padding_free trains {over_defaults:.2f}x as fast as the defaults{verdict} and "
              f"{over_original:.2f}x as fast as the original, by {'CPU time' if clock == 'cpu' else 'wall clock'}.")


if __name__ == "__main__":
    main()
