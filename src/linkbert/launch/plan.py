"""What to run: a run script's task blocks (or any list of runs) turned into `Run`s.

A run script (`run_examples_*.sh`) declares one block per task with `add_task KIND TASK
[settings] FLAGS...`; `scripts/run_lib.sh` hands the blocks to `python -m linkbert.launch script`
unchanged (as separate arguments, never through `eval`). Here each block becomes one run per seed:

    python -u -m <module of KIND> --model_name_or_path MODEL --train_file DATA/KIND/TASK/train.json
        --validation_file .../dev.json --test_file .../test.json FLAGS --output_dir OUT/TASK/MODEL

A `pretrain` block (run_examples_pretrain_linkbert.sh) names its starting model and corpus in
its flags and becomes `python -u -m linkbert.pretrain.run_pretrain FLAGS --output_dir OUT/TASK`.

With every switch off the flags are exactly the block's. The switches (environment variables):
SMOKE=1 appends short-run limits and writes under runs/smoke/; SEEDS="1 2 3" makes one run per
seed in <run folder>/seed<N>, replacing the block's --seed; RESUMABLE=1 checkpoints every epoch
and drops --overwrite_output_dir (training runs only).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..core.errors import UserError
from ..tasks import MODULES  # the module that runs each kind of task block
DEFAULT_SMOKE_FLAGS = "--max_steps 20 --max_train_samples 200 --max_eval_samples 100 --max_predict_samples 100"
BLOCK, BARRIER = "::task", "::wait"  # markers run_lib.sh puts between blocks (never a flag)
PRETRAIN = "pretrain"  # the block kind of pretraining runs (not a fine-tuning task of linkbert.tasks)
PRETRAIN_MODULE = "linkbert.pretrain.run_pretrain"


@dataclass
class Run:
    """One command with its own run folder (`folder`, formerly `output_dir`: what the command's
    --output_dir names). `after`: the run folders of the runs it needs
    first (it starts only once they succeeded; with `after_any`, once they ended however).
    `cpu_only`: it needs no GPU (a pick-the-best step): on SLURM one CPU and no GPU, with
    PARALLEL=1 it runs beside the GPU runs without taking a GPU."""

    label: str
    folder: str
    argv: list[str]
    task: str = ""
    after: list[str] = field(default_factory=list)
    after_any: bool = False
    cpu_only: bool = False

    @property
    def trains(self) -> bool:
        return "--do_train" in self.argv


@dataclass(frozen=True)
class Processes:
    """The shape of one run: `nodes` machines, `per_node` processes on each (one per GPU, or gloo
    processes on CPU), `gpus` GPUs asked of SLURM per node. One process runs the command as it is;
    more run it under torchrun (locally) or as one SLURM task per process (slurm.py)."""

    nodes: int = 1
    per_node: int = 1
    gpus: int = 1

    @property
    def total(self) -> int:
        return self.nodes * self.per_node


def torchrun_argv(argv: list[str], shape: Processes, endpoint: str, run_id: str) -> list[str]:
    """`python [-u] -m MODULE ARGS` (or `python SCRIPT.py ARGS`) under torchrun: on one node
    `--standalone`; on several the command every node runs, meeting at `endpoint` (HOST:PORT of
    the first node) through torchrun's c10d rendezvous, where the agents agree on the node ranks."""
    python, rest = argv[0], list(argv[1:])
    while rest[:1] == ["-u"]:  # an interpreter flag torchrun does not take (its workers log line by line)
        rest = rest[1:]
    if not ((rest[:1] == ["-m"] and len(rest) > 1) or (rest and rest[0].endswith(".py"))):
        raise UserError("bad_flag_value", f"several processes per run: cannot start '{shlex.join(argv[:3])}' "
                        "under torchrun; a run's command must be `python -m MODULE ...` or `python SCRIPT.py ...`")
    if shape.nodes == 1:
        launcher = ["--standalone", "--nproc_per_node", str(shape.per_node)]
    else:
        launcher = ["--nnodes", str(shape.nodes), "--nproc_per_node", str(shape.per_node), "--rdzv-backend", "c10d",
                    "--rdzv-endpoint", endpoint, "--rdzv-id", run_id]
    return [python, "-m", "torch.distributed.run", *launcher, *rest]


@dataclass
class Switches:
    smoke: bool = False
    resumable: bool = False
    seeds: list[str] = field(default_factory=list)
    smoke_flags: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Switches:
        source = os.environ if env is None else env
        return cls(smoke=source.get("SMOKE", "0") == "1", resumable=source.get("RESUMABLE", "0") == "1",
                   seeds=source.get("SEEDS", "").split(),
                   smoke_flags=(source.get("SMOKE_FLAGS") or DEFAULT_SMOKE_FLAGS).split())


@dataclass
class Block:
    kind: str
    name: str
    flags: list[str]
    data: str = ""
    splits: tuple[str, str, str] = ("train", "dev", "test")
    out: str = ""
    from_run: str = ""
    after_barrier: bool = False  # a `wait_for_tasks_above` line stands before it


def parse_blocks(tokens: list[str]) -> list[Block]:
    """The markers and arguments run_lib.sh passes: `::task KIND TASK [key=value...] FLAGS...`
    per block, `::wait` for `wait_for_tasks_above`."""
    blocks: list[Block] = []
    barrier = False
    i = 0
    while i < len(tokens):
        if tokens[i] == BARRIER:
            barrier, i = True, i + 1
            continue
        if tokens[i] != BLOCK or i + 2 >= len(tokens):
            raise UserError("bad_flag_value",
                            f"malformed task block at {tokens[i:i + 3]} (expected `{BLOCK} KIND TASK ...`)")
        kind, name = tokens[i + 1], tokens[i + 2]
        i += 3
        if kind not in MODULES and kind != PRETRAIN:
            raise UserError("bad_flag_value", f"add_task {name}: unknown task kind '{kind}' "
                            f"({', '.join([*MODULES, PRETRAIN])})")
        block = Block(kind=kind, name=name, flags=[], data=f"{kind}/{name}", out=name, after_barrier=barrier)
        barrier = False
        while i < len(tokens) and tokens[i] not in (BLOCK, BARRIER) and not tokens[i].startswith("-"):
            key, sep, value = tokens[i].partition("=")
            if not sep or key not in ("data", "splits", "out", "from_run"):
                raise UserError("bad_flag_value", f"add_task {name}: unknown setting '{tokens[i]}' "
                                "(data=, splits=, out=, from_run=)")
            if key == "splits":
                names = value.split()
                if len(names) != 3:
                    raise UserError("bad_flag_value", f"add_task {name}: splits needs three names, got '{value}'")
                block.splits = (names[0], names[1], names[2])
            else:
                setattr(block, key, value)
            i += 1
        while i < len(tokens) and tokens[i] not in (BLOCK, BARRIER):
            block.flags.append(tokens[i])
            i += 1
        blocks.append(block)
    return blocks


def script_blocks(script: str | Path) -> list[Block]:
    """The task blocks of a run script (`run_examples_*.sh`), read from its text: each `add_task`
    line with its backslash continuations, split as bash splits words (variables are not
    expanded: the fine-tuning blocks name none; the pretraining blocks' corpus and shared flags
    stay as written), and each `wait_for_tasks_above`. What the demo and the tests
    take the paper's hyper-parameters from, so that the script stays the one place they are written."""
    text = Path(script).read_text().replace("\\\n", " ")
    tokens: list[str] = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["add_task"]:
            tokens += [BLOCK, *words[1:]]
        elif words == ["wait_for_tasks_above"]:
            tokens.append(BARRIER)
    return parse_blocks(tokens)


def adjust_flags(flags: list[str], seed: str | None, switches: Switches) -> list[str]:
    """The block's flags after the switches, each change documented in the module docstring."""
    training = "--do_train" in flags
    resumable = switches.resumable and training
    out: list[str] = []
    i = 0
    while i < len(flags):
        flag = flags[i]
        if (flag == "--seed" and seed is not None) or (flag == "--save_strategy" and resumable):
            i += 2  # the flag and its value
            continue
        if flag == "--overwrite_output_dir" and resumable:
            i += 1
            continue
        out.append(flag)
        i += 1
    if seed is not None:
        out += ["--seed", seed]
    if resumable:
        out += ["--save_strategy", "epoch", "--save_total_limit", "1"]
    if switches.smoke:
        out += switches.smoke_flags
    return out


def runs_from_blocks(blocks: list[Block], *, python: str, model: str, model_path: str, data_dir: str,
                     out_dir: str, switches: Switches) -> list[Run]:
    """One run per block and seed. A block after `wait_for_tasks_above` needs every run above it;
    one with `from_run=TASK` loads (and so needs) that task's run with the same model and seed."""
    runs: list[Run] = []
    by_task_seed: dict[tuple[str, str | None], Run] = {}
    seeds: list[str | None] = list(switches.seeds) or [None]
    for block in blocks:
        above = [r.folder for r in runs] if block.after_barrier else []
        if block.kind == PRETRAIN:
            runs.append(_pretrain_run(block, python, out_dir, switches, above))
            continue
        module = MODULES[block.kind]
        files = [f"{data_dir}/{block.data}/{split}.json" for split in block.splits]
        for seed in seeds:
            folder = f"{out_dir}/{block.out}/{model}" + (f"/seed{seed}" if seed is not None else "")
            model_arg, after = model_path, list(above)
            if block.from_run:
                model_arg = f"{out_dir}/{block.from_run}/{model}" + (f"/seed{seed}" if seed is not None else "")
                parent = by_task_seed.get((block.from_run, seed))
                if parent is not None and parent.folder not in after:
                    after.append(parent.folder)
            argv = [python, "-u", "-m", module, "--model_name_or_path", model_arg,
                    "--train_file", files[0], "--validation_file", files[1], "--test_file", files[2],
                    *adjust_flags(block.flags, seed, switches), "--output_dir", folder]
            label = block.name + (f" (seed {seed})" if seed is not None else "")
            run = Run(label=label, folder=folder, argv=argv, task=block.name, after=after)
            runs.append(run)
            by_task_seed[(block.name, seed)] = run
    return runs


def _pretrain_run(block: Block, python: str, out_dir: str, switches: Switches, after: list[str]) -> Run:
    """A pretraining block: its own model and corpus flags, one run whatever SEEDS says, and its
    own step checkpoints (RESUMABLE's epoch checkpoints would replace them)."""
    folder = f"{out_dir}/{block.out}"
    flags = adjust_flags(block.flags, None, replace(switches, resumable=False))
    return Run(label=block.name, folder=folder, task=block.name, after=after,
               argv=[python, "-u", "-m", PRETRAIN_MODULE, *flags, "--output_dir", folder])


PLAN_FILE_SHAPE = '{"runs": [{"label", "folder", "argv", "after", "after_any", "cpu_only"}, ...]}'


def plan_file_runs(path: str | Path) -> list[Run]:
    """The runs a JSON plan file lists (PLAN_FILE_SHAPE). A run's folder is its "folder" key, or
    "output_dir" as plan files written before the rename name it."""
    try:
        listed = json.loads(Path(path).read_text())["runs"]
        return [Run(label=r.get("label", _plan_folder(r)), folder=_plan_folder(r), argv=list(r["argv"]),
                    after=list(r.get("after", [])), after_any=bool(r.get("after_any", False)),
                    cpu_only=bool(r.get("cpu_only", False))) for r in listed]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError("bad_flag_value", f"not a plan file ({type(e).__name__}: {e}); expected "
                        '{"runs": [{"folder": ..., "argv": [...]}, ...]}', path=path) from None


def _plan_folder(listed: dict) -> str:
    return str(listed["folder"] if "folder" in listed else listed["output_dir"])


def data_files(runs: list[Run]) -> list[str]:
    """The data files the runs read, in order, each once."""
    seen: dict[str, None] = {}
    for run in runs:
        for flag in ("--train_file", "--validation_file", "--test_file", "--corpus_file"):
            if flag in run.argv:
                seen.setdefault(run.argv[run.argv.index(flag) + 1], None)
    return list(seen)


def display_path(path: Path, cwd: Path | None = None) -> str:
    """A path as the user should type it from where they stand: relative when it lies below the
    current folder, absolute otherwise."""
    cwd = (cwd or Path.cwd()).resolve()
    path = path.resolve()
    try:
        rel = path.relative_to(cwd)
    except ValueError:
        return str(path)
    return str(rel) if str(rel) != "." else "."
