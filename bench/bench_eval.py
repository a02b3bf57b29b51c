"""Evaluation throughput: the original's evaluation against the project's.

    python bench/bench_eval.py --threads 1   # MiniLM, RE and PubMedQA shapes, ~1 min here
    python bench/bench_eval.py --quick       # tiny random BERT: a smoke run

- original: every example padded to max_seq_length, batches of 8 in file order (fp32, as the
  original evaluated every labelled task);
- project: dynamic padding, batches of 8 formed by length and put back into file order.

Both go through `Engine.predict` (features that all have the same length keep file order) on
the same model, and the table shows the largest logit difference between the two: padding is
masked, so it must be float rounding only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import np  # noqa: E402

EXAMPLES = {"re": 128, "pubmedqa": 32}


def bench_shape(shape: common.Shape, model_dir: str, data: Path, repeats: int) -> None:
    original = common.prepare(model_dir, data, shape, ["--pad_to_max_length"])
    project = common.prepare(model_dir, data, shape, [])
    project.engine.model = original.engine.model  # one model: identical weights and compute
    runs = {"original": lambda: original.engine.predict(original.dev),
            "project": lambda: project.engine.predict(project.dev)}
    for run in runs.values():
        run()  # warm-up
    times = common.interleaved(runs, repeats)
    theirs, ours = times["original"].result, times["project"].result
    diff = np.abs(np.stack(theirs) - np.stack(ours)).max()
    same = (original.task.prediction_records(theirs, original.examples, original.dev, original.engine.ctx)
            == project.task.prediction_records(ours, project.examples, project.dev, project.engine.ctx))
    n = len(project.dev)
    rows = [[label, f"{n / common.statistics.median(times[name].wall):.1f}",
             *common.speedup_cells(times["original"], times[name])]
            for name, label in (("original", "original (pad to max, batch 8, file order)"),
                                ("project", "project (dynamic padding, batch 8 by length)"))]
    common.print_table(
        f"Evaluation, {shape.title.split(', batch')[0]}",
        ["variant", "examples/s", *common.SPEEDUP_HEADER], rows,
        [f"{n} {common.data_kind(shape)} examples ({common.length_summary(project.dev)}), {repeats} alternating repeats; "
         f"largest |logit difference| {diff:.1e}, predicted labels identical: {same}."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_flags(parser)
    common.add_real_data_flag(parser)
    parser.add_argument("--shapes", default="re,pubmedqa", help="comma-separated: re, pubmedqa")
    opts = parser.parse_args()
    common.apply_common_flags(opts)

    shapes = [common.SHAPES[k] for k in opts.shapes.split(",")]
    data = {s.key: common.write_data(s, n_train=s.train_batch, n_dev=EXAMPLES[s.key] // (4 if opts.quick else 1))
            for s in shapes}
    model_dir = common.model_path(opts.quick, list(data.values()))
    common.header(opts.quick, model_dir)
    for shape in shapes:
        bench_shape(shape, model_dir, data[shape.key], opts.repeats)


if __name__ == "__main__":
    main()
