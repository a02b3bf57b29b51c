"""The engine's cost over a bare PyTorch loop, on identical batches.

    python bench/bench_engine_overhead.py --threads 1   # MiniLM, RE shape, ~2.5 min here
    python bench/bench_engine_overhead.py --quick        # tiny model: a smoke run (a tiny step
                                                         # makes any fixed cost look large)

The bare loop is what a minimal fine-tuning script does per update: forward, backward, clip the
gradient norm, AdamW step (the same fused AdamW), scheduler step, zero the gradients, over
batches collated beforehand. The engine runs `Engine.train` over the same features in the same
order, so it also pays for reading rows from the Arrow table, collating, its bookkeeping and the
fp16/accumulation logic. A second bare loop measures the noise floor of the machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import torch  # noqa: E402

from linkbert.core.schedule import epoch_permutations, sampler_seed  # noqa: E402

TARGET = 0.03


def engine_batches(setup: common.Setup) -> list[dict]:
    """The engine's first-epoch batches, collated by the engine's own collator."""
    args, features = setup.engine.args, setup.train
    order = epoch_permutations(len(features), sampler_seed(args.seed), 1)[0]
    size, device = args.per_device_train_batch_size, setup.engine.device
    return [{k: v.to(device) for k, v in setup.engine.feeder.collate([features[i] for i in order[s:s + size]]).items()}
            for s in range(0, len(order), size)]


def bare_loop(model: torch.nn.Module, batches: list[dict], lr: float, max_grad_norm: float) -> None:
    from transformers import get_scheduler

    on_gpu = torch.cuda.is_available()  # bf16 there (no gradient scaler to mirror), fp32 on CPU
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=len(batches))
    model.train()
    for batch in batches:
        with torch.autocast("cuda" if on_gpu else "cpu", dtype=torch.bfloat16, enabled=on_gpu):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()  # wait for the last step, as the engine does when it reports the loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_flags(parser)
    common.add_real_data_flag(parser)
    parser.set_defaults(repeats=5)
    parser.add_argument("--steps", type=int, default=None, help="updates per run (default 3)")
    opts = parser.parse_args()
    common.apply_common_flags(opts)

    shape = common.SHAPES["re"]
    steps = opts.steps or 3
    data = common.write_data(shape, n_train=steps * shape.train_batch, n_dev=8)
    model_dir = common.model_path(opts.quick, [data])
    common.header(opts.quick, model_dir)
    setup = common.prepare(model_dir, data, shape, ["--bf16"] if torch.cuda.is_available() else [])
    batches = engine_batches(setup)
    args, model = setup.engine.args, setup.engine.model  # one model for all runs: same compute
    run_bare = lambda: bare_loop(model, batches, args.learning_rate, args.max_grad_norm)
    common.train_epoch(setup, max_steps=1)  # warm-up
    run_bare()

    times = common.interleaved({"engine": lambda: common.train_epoch(setup), "bare": run_bare,
                                "bare (again)": run_bare}, opts.repeats)
    bare = times["bare"]
    rows = [["bare loop", f"{common.statistics.median(bare.wall) / steps:.3f}", "0", "0"]]
    for name, label in (("engine", "Engine.train"), ("bare (again)", "bare loop, second copy (noise floor)")):
        t = times[name]
        rows.append([label, f"{common.statistics.median(t.wall) / steps:.3f}", overhead_cell(bare.wall, t.wall),
                     overhead_cell(bare.cpu, t.cpu)])
    common.print_table(
        f"Engine overhead, {shape.title}",
        ["loop", "s/update", "overhead, wall clock: median (range)", "overhead, CPU time: median (range)"], rows,
        [f"{steps} updates per run ({common.length_summary(setup.train)}), dynamic padding, fp32 on CPU "
         f"(bf16 on a GPU); {opts.repeats} alternating repeats. Overhead = loop time / bare time - 1, median "
         f"(min-max) over repeats."])
    verdicts = []
    for clock in ("wall", "cpu"):
        overhead = overhead_of(getattr(bare, clock), getattr(times["engine"], clock))
        verdict = "met" if overhead <= TARGET else f"missed by {100 * (overhead - TARGET):.1f} points"
        verdicts.append(f"{'wall clock' if clock == 'wall' else 'CPU time'} {100 * overhead:+.1f}% ({verdict})")
    print(f"Target <= {100 * TARGET:.0f}% overhead: " + "; ".join(verdicts) + ".")


def overhead_of(bare: list[float], loop: list[float]) -> float:
    return common.statistics.median(t / b for t, b in zip(loop, bare)) - 1


def overhead_cell(bare: list[float], loop: list[float]) -> str:
    each = [100 * (t / b - 1) for t, b in zip(loop, bare)]
    return f"{100 * overhead_of(bare, loop):+.1f}% ({min(each):+.1f} to {max(each):+.1f})"

if __name__ == "__main__":
    main()
