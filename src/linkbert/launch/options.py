"""The launcher's flags (backend, SLURM resources), shared by `python -m linkbert.launch` and
`python -m linkbert.sweep`, and the call that hands a list of runs to the chosen backend."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace

from ..core.errors import UserError
from . import launch
from .local import gpu_list
from .plan import Processes, Run, torchrun_argv
from .slurm import SlurmOptions


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", "--dry_run", action="store_true",
                        help="print the commands (local) or the job scripts (slurm); run and submit nothing")
    parser.add_argument("--backend", choices=("local", "slurm"), default="local",
                        help="local: here (one after another, or one per GPU with PARALLEL=1); slurm: one job per run")
    shape = parser.add_argument_group("processes per run (fine-tuning, sweeps, pretraining alike)")
    shape.add_argument("--nodes", type=int, default=1,
                       help="machines per run (default 1); more than one: --backend slurm, or --dry-run for the "
                            "torchrun command to start on each")
    shape.add_argument("--gpus-per-node", "--gpus-per-run", dest="gpus_per_node", type=int,
                       help="GPUs per node, one process each (default: --nproc_per_node's count, else 1); 0: CPU")
    shape.add_argument("--nproc_per_node", "--nproc-per-node", dest="nproc_per_node", type=int,
                       help="processes per node (default: one per GPU of --gpus-per-node); locally torchrun "
                            "--nproc_per_node, on SLURM one task each")
    shape.add_argument("--rdzv-endpoint", default="HEAD_NODE:29500", metavar="HOST:PORT",
                       help="local --nodes > 1: where the nodes' torchrun agents meet (the first node)")
    group = parser.add_argument_group("SLURM (--backend slurm; each value per run)")
    group.add_argument("--partition")
    group.add_argument("--account")
    group.add_argument("--qos")
    group.add_argument("--time", default="24:00:00", help="time limit of each job (default 24:00:00)")
    group.add_argument("--cpus-per-run", type=int, default=8, help="CPUs per process (default 8)")
    group.add_argument("--mem", help="memory per run, e.g. 64G (default: the partition's)")
    group.add_argument("--signal-lead", type=int, default=300, metavar="SECONDS",
                       help="SLURM warns the run this long before its time limit or pre-emption; it "
                            "checkpoints and is requeued (default 300)")
    group.add_argument("--max-requeues", type=int, default=10, help="give up on a run requeued more often")
    group.add_argument("--slurm-log-dir", help="submitit's job logs (default OUT_DIR/.slurm)")
    group.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="one more #SBATCH --KEY=VALUE (repeatable), e.g. --sbatch constraint=a100")


def processes(args: argparse.Namespace) -> Processes:
    """The run shape the flags ask for: one process per GPU unless --nproc_per_node says otherwise."""
    for flag, value in (("--nodes", args.nodes), ("--nproc_per_node", args.nproc_per_node)):
        if value is not None and value < 1:
            raise UserError("bad_flag_value", f"{flag} {value}: give 1 or more")
    if args.gpus_per_node is not None and args.gpus_per_node < 0:
        raise UserError("bad_flag_value", f"--gpus-per-node {args.gpus_per_node}: give 0 (CPU) or more")
    per_node = args.nproc_per_node or args.gpus_per_node or 1
    gpus = args.gpus_per_node if args.gpus_per_node is not None else (args.nproc_per_node or 1)
    return Processes(nodes=args.nodes, per_node=per_node, gpus=gpus)


def slurm_options(args: argparse.Namespace, out_dir: str) -> SlurmOptions:
    return SlurmOptions(partition=args.partition, account=args.account, qos=args.qos, time=args.time,
                        processes=processes(args), cpus=args.cpus_per_run, mem=args.mem,
                        signal_lead=args.signal_lead, max_requeues=args.max_requeues,
                        log_dir=args.slurm_log_dir or f"{out_dir}/.slurm", extra=args.sbatch)


def under_torchrun(runs: list[Run], shape: Processes, endpoint: str) -> list[Run]:
    """The local backend's runs of several processes: each command under torchrun (a CPU-only
    step, such as a sweep's pick, stays one process)."""
    if shape.total == 1:
        return runs
    return [run if run.cpu_only else replace(run, argv=torchrun_argv(run.argv, shape, endpoint, _run_id(run)))
            for run in runs]


def _run_id(run: Run) -> str:
    """torchrun's --rdzv-id: the same on every node, distinct per run."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", run.folder).strip("_")


def run_launch(runs: list[Run], args: argparse.Namespace, out_dir: str, env: dict, resume: str = "") -> int:
    """`resume`: the command that launched the runs (shown, should they be interrupted)."""
    shape = processes(args)
    if args.backend == "local":
        if shape.nodes > 1 and not args.dry_run:
            raise UserError("unsupported_setup", f"--nodes {shape.nodes} with --backend local: submit with "
                            "--backend slurm, or start the command --dry-run prints on each node yourself")
        runs = under_torchrun(runs, shape, args.rdzv_endpoint)
        if shape.nodes > 1:
            print(f"# start each command on each of the {shape.nodes} nodes, at once ({args.rdzv_endpoint}: "
                  "the first node's address and a free port; torchrun's agents agree on the node ranks)")
    parallel = env.get("PARALLEL", "0") == "1" and args.backend == "local"
    return launch(runs, backend=args.backend, dry_run=args.dry_run, gpus=gpu_list(env) if parallel else None,
                  gpus_per_run=shape.per_node, slurm=slurm_options(args, out_dir), resume=resume)
