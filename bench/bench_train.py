"""Training throughput: the original configuration against the project's defaults and opt-ins.

    python bench/bench_train.py --threads 1   # MiniLM (22M), RE and PubMedQA shapes, ~5 min here
    python bench/bench_train.py --quick       # tiny random BERT: a smoke run in under a minute
    python bench/bench_train.py --shapes re --repeats 5

Every variant drives the real `Engine.train` with the real `SeqClsTask` over one epoch of the
same synthetic examples (same model weights, same seeded order), so the time ratio is the
throughput ratio. Variants:

- original: every example padded to max_seq_length, fp32 on CPU (fp16 on a GPU), the
  per-parameter AdamW loop of transformers 4.9.1, the seeded random order;
- project defaults: dynamic padding (to a multiple of 8 under fp16/bf16), fused AdamW, same order;
- --group_by_length: batches of similar length (seeded; a different but still seeded order);
- --group_by_length --bf16: plus bfloat16 autocast (opt-in; a precision change).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# Updates per variant and repeat (one epoch of updates x batch examples).
STEPS = {"re": 3, "pubmedqa": 2}
TARGET_RE = 3.0


def variants(on_gpu: bool) -> dict[str, tuple[list[str], type]]:
    original = f"original (pad to max, {'fp16' if on_gpu else 'fp32'}, per-parameter AdamW)"
    return {
        original: (["--pad_to_max_length"], common.OriginalOptimizerDist),
        "project defaults (dynamic padding, fused AdamW)": ([], common.DistState),
        "+ --group_by_length": (["--group_by_length"], common.DistState),
        "+ --group_by_length --bf16": (["--group_by_length", "--bf16"], common.DistState),
    }


def bench_shape(shape: common.Shape, model_dir: str, data: Path, steps: int, repeats: int) -> dict[str, common.Timings]:
    setups, counters = {}, {}
    for name, (flags, dist_cls) in variants(common.torch.cuda.is_available()).items():
        setup = common.prepare(model_dir, data, shape, flags, dist_cls)
        common.train_epoch(setup, max_steps=1)  # warm-up: lazy initialisation, first kernels
        setup.engine.feeder.collate = counters[name] = common.CountingCollator(setup.engine.feeder.collate)
        setups[name] = setup

    times = common.interleaved({name: (lambda s=s: common.train_epoch(s)) for name, s in setups.items()}, repeats)
    names = list(times)
    base = times[names[0]]
    samples = steps * shape.train_batch
    rows = []
    for name, t in times.items():
        wall, c = common.statistics.median(t.wall), counters[name]
        rows.append([name, f"{wall / steps:.2f}", f"{samples / wall:.1f}", f"{c.real / repeats / wall:.0f}",
                     f"{100 * (1 - c.real / c.padded):.0f}%", *common.speedup_cells(base, t)])
    common.print_table(
        f"Training, {shape.title}",
        ["variant", "s/update", "samples/s", "real tokens/s", "padding", *common.SPEEDUP_HEADER], rows,
        [f"{samples} {common.data_kind(shape)} examples ({common.length_summary(setups[names[1]].train)}), one epoch of "
         f"{steps} updates per variant and repeat, {repeats} alternating repeats. Speed-up = median over "
         f"repeats of original time / variant time, by wall clock and by this process's CPU time (which "
         f"other load on the machine disturbs less, with one thread); range = min-max over repeats."])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_flags(parser)
    common.add_real_data_flag(parser)
    parser.add_argument("--shapes", default="re,pubmedqa", help="comma-separated: re, pubmedqa")
    parser.add_argument("--steps", type=int, default=None, help="updates per variant and repeat (default per shape)")
    opts = parser.parse_args()
    common.apply_common_flags(opts)

    shapes = [common.SHAPES[k] for k in opts.shapes.split(",")]
    steps = {s.key: opts.steps or (2 if opts.quick else STEPS[s.key]) for s in shapes}
    data = {s.key: common.write_data(s, n_train=steps[s.key] * s.train_batch, n_dev=8) for s in shapes}
    model_dir = common.model_path(opts.quick, list(data.values()))
    common.header(opts.quick, model_dir)
    results = {s.key: bench_shape(s, model_dir, data[s.key], steps[s.key], opts.repeats) for s in shapes}

    if "re" in results:
        base, *others = results["re"].values()
        clock, cells = common.primary_clock(), []
        for label, t in zip(("project defaults", "--group_by_length", "--group_by_length --bf16"), others):
            ratio = common.median_ratio(getattr(base, clock), getattr(t, clock))
            verdict = "met" if ratio >= TARGET_RE else f"missed by {TARGET_RE - ratio:.2f}x"
            cells.append(f"{label} {ratio:.2f}x ({verdict})")
        print(f"Target >= {TARGET_RE:.0f}x on the RE shape, by {'CPU time' if clock == 'cpu' else 'wall clock'}: "
              + "; ".join(cells) + ".")


if __name__ == "__main__":
    main()
