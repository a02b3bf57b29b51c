"""CPU training: the defaults until issue 29 (padded batches, torch's SDPA with its `bernoulli_`
attention-dropout masks, `nn.Dropout`) against the project's kernels (`linkbert.core.cpu_attention`:
one compiled softmax-dropout kernel, no mask kept; `cpu_dropout`: the hidden dropout's hash kernel),
padded and `--padding_free`, fp32 and `--bf16`, on the RE, PubMedQA and QA-window shapes.

    python bench/bench_attention_dropout.py --threads 1      # MiniLM, three shapes
    python bench/bench_attention_dropout.py --threads 1 --real_data   # RE from real NCBI-disease sentences
    python bench/bench_attention_dropout.py --quick          # tiny random BERT: a smoke run
    python bench/bench_attention_dropout.py --shapes qa --repeats 5
    python bench/bench_attention_dropout.py --threads 1 --real_data --shapes re --bert_base_shape   # MFU, BERT-base
    python bench/bench_attention_dropout.py --threads 1 --real_data --shapes re --bert_base_shape --defaults_only

Every variant drives the real `Engine.train` over the same examples (same weights, same seeded
order, one epoch), so time ratios are throughput ratios. "before" is the defaults until issue 29:
dynamic padding (`--padding_free false`) with `--attn_implementation torch_sdpa` (what `sdpa` meant
before the kernels). Every row names its padding, since the CPU default now differs by task
(`defaults`): sequence classification is padding-free, QA keeps the original's windows padded to
max length. The QA shape runs through the sequence-classification head; the encoder is the same.
The MFU column is the run's own (`core/throughput.py`: model FLOPs against the matmul peak
`bench_peak.py` measures for the precision).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

STEPS = {"re": 6, "pubmedqa": 2, "qa": 2}  # updates per variant and repeat
BEFORE = "before: padded, torch_sdpa (the defaults until issue 29)"
PADDED, PACKED = "padded, kernels", "--padding_free, kernels"
NOISE = "the defaults again (noise floor)"
TARGET = {"re": "2x", "pubmedqa": "none set", "qa": "1.5x"}  # issue 29, CPU time, one thread


def defaults(shape: common.Shape) -> str:
    """The row that is the project's CPU default for the shape's task: QA keeps its windows padded;
    sequence classification (RE, PubMedQA) is padding-free on the CPU."""
    return PADDED if shape.key == "qa" else PACKED


def variants(shape: common.Shape, defaults_only: bool = False) -> dict[str, list[str]]:
    # Every row names its padding: the CPU default differs by task (`defaults`).
    padded = ["--pad_to_max_length"] if shape.key == "qa" else []  # QA's default pads its windows
    padded += ["--padding_free", "false"]
    packed = ["--padding_free", "true"]
    torch_sdpa = ["--attn_implementation", "torch_sdpa"]
    rows = {
        BEFORE: [*padded, *torch_sdpa],
        PADDED: padded,
        "padded --bf16, torch_sdpa": [*padded, *torch_sdpa, "--bf16"],
        "padded --bf16, kernels": [*padded, "--bf16"],
        "--padding_free, torch_sdpa (SDPA per sequence)": [*packed, *torch_sdpa],
        PACKED: packed,
        "--padding_free --bf16, kernels": [*packed, "--bf16"],
    }
    rows[NOISE] = rows[defaults(shape)]
    if defaults_only:  # the ratio and its noise floor, nothing else
        return {name: flags for name, flags in rows.items() if name in (BEFORE, defaults(shape), NOISE)}
    return rows


def bench_shape(shape: common.Shape, model_dir: str, data: Path, steps: int, repeats: int,
                defaults_only: bool = False) -> dict:
    setups = {name: common.prepare(model_dir, data, shape, flags)
              for name, flags in variants(shape, defaults_only).items()}
    results: dict[str, dict] = {}

    def train(name: str):
        def run():
            setups[name].engine.throughput.total = [0, 0, 0.0, 0.0]  # this epoch's rates only (no warm-up)
            results[name] = common.train_epoch(setups[name])
        return run

    for setup in setups.values():
        common.train_epoch(setup, max_steps=1)  # warm-up: lazy initialisation, the kernels' build
    times = common.interleaved({name: train(name) for name in setups}, repeats)
    samples = steps * shape.train_batch
    rows = []
    for name, t in times.items():
        wall = common.statistics.median(t.wall)
        mfu = results[name].get("train_mfu")
        rows.append([name, f"{wall / steps:.2f}", f"{samples / wall:.1f}",
                     "-" if mfu is None else f"{100 * mfu:.1f}%", *common.speedup_cells(times[BEFORE], t)])
    common.print_table(
        f"Training, {shape.title}", ["variant", "s/update", "samples/s", "MFU", *common.SPEEDUP_HEADER], rows,
        [f"{samples} examples ({common.length_summary(setups[PACKED].train)}), one epoch of {steps} "
         f"updates per variant and repeat, {repeats} alternating repeats; {common.machine()}. The defaults on the "
         f"CPU for this shape's task: '{defaults(shape)}' (and '{NOISE}')."])
    return times


def bert_base_shape(tokenizer_dir: str) -> str:
    """A BERT-base-shaped encoder (768 x 12 layers, LinkBERT-base's shape) with random weights and
    MiniLM's tokenizer: speed and MFU do not depend on the weights."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = Path(common.WORKDIR) / "bert-base-shape"
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    common.torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_flags(parser)
    common.add_real_data_flag(parser)
    parser.add_argument("--shapes", default="re,pubmedqa,qa", help="comma-separated: re, pubmedqa, qa")
    parser.add_argument("--bert_base_shape", action="store_true",
                        help="a random BERT-base-shaped model (MiniLM's tokenizer) instead of MiniLM")
    parser.add_argument("--defaults_only", action="store_true",
                        help="only the rows before, the defaults and the noise floor (a third of the time)")
    opts = parser.parse_args()
    common.apply_common_flags(opts)

    shapes = [common.SHAPES[k] for k in opts.shapes.split(",")]
    steps = {s.key: 2 if opts.quick else STEPS[s.key] for s in shapes}
    data = {s.key: common.write_data(s, n_train=steps[s.key] * s.train_batch, n_dev=8) for s in shapes}
    model_dir = common.model_path(opts.quick, list(data.values()))
    common.header(opts.quick, model_dir)
    if opts.bert_base_shape:
        model_dir = bert_base_shape(model_dir)
        print("Model: random BERT-base shape (768 x 12 layers, 12 heads), MiniLM's tokenizer")
    clock = common.primary_clock()
    for shape in shapes:
        times = bench_shape(shape, model_dir, data[shape.key], steps[shape.key], opts.repeats, opts.defaults_only)
        base = getattr(times[BEFORE], clock)
        summary = ", ".join(f"{name}: {common.median_ratio(base, getattr(t, clock)):.2f}x"
                            for name, t in times.items() if name != BEFORE)
        print(f"{shape.key} over '{BEFORE}', {'CPU time' if clock == 'cpu' else 'wall clock'}: {summary}")
        print(f"{shape.key}: the defaults now ('{defaults(shape)}') train "
              f"{common.median_ratio(base, getattr(times[defaults(shape)], clock)):.2f}x as fast as before "
              f"(target: {TARGET[shape.key]}); the noise floor row: "
              f"{common.median_ratio(base, getattr(times[NOISE], clock)):.2f}x")


if __name__ == "__main__":
    main()
