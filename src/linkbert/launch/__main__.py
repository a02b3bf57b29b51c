"""python -m linkbert.launch {script,plan,status,prune}

    python -m linkbert.launch status runs/                 # each run: done / running / queued / failed
    python -m linkbert.launch plan sweep.json [options]    # runs listed in a JSON file (a sweep)
    python -m linkbert.launch prune runs/ --keep 1         # delete all but the newest previous_runs/ entry
    (script: what scripts/run_lib.sh calls for a run_examples_*.sh script; see bash SCRIPT --help)

A plan file: {"runs": [{"label": ..., "folder": ..., "argv": [...], "after": [run folders],
"after_any": false, "cpu_only": false}, ...]} (plan.plan_file_runs reads it).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn

from ..core.errors import UserError
from .options import add_backend_flags, run_launch
from .plan import (
    PLAN_FILE_SHAPE,
    PRETRAIN,
    Block,
    Run,
    Switches,
    data_files,
    display_path,
    parse_blocks,
    plan_file_runs,
    runs_from_blocks,
)
from ..core.rundir import previous_runs_to_prune, prune_set_aside
from .state import status_lines


class Parser(argparse.ArgumentParser):
    """Errors as one `error [kind]` line and a pointer to --help (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        kind = "unknown_flag" if "unrecognized arguments" in message else "bad_flag_value"
        if kind == "unknown_flag":
            flags = [f for f in message.split(": ", 1)[-1].split() if f.startswith("-")]
            known = [o for a in self._actions for o in a.option_strings]
            hints = [difflib.get_close_matches(f, known, n=1, cutoff=0.75) for f in flags]
            message += "".join(f" (did you mean {h[0]}?)" for h in hints if h)
        print(f"error [{kind}]: {self.prog}: {message}; try --help", file=sys.stderr)
        sys.exit(2)


# -- a run_examples_*.sh script -----------------------------------------------------------------
def script_main(argv: list[str], env: dict) -> int:
    script = Path(argv[0])
    options, tokens = argv[1:], []
    if "--" in options:
        cut = options.index("--")
        options, tokens = options[:cut], options[cut + 1:]
    blocks = parse_blocks(tokens)
    repo = script.resolve().parent
    smoke = env.get("SMOKE", "0") == "1"
    data_dir = env.get("DATA_DIR") or display_path(repo / "data")
    out_dir = env.get("OUT_DIR") or display_path(repo / ("runs/smoke" if smoke else "runs"))
    python = env.get("PYTHON") or sys.executable  # the launcher's own, e.g. the repository's .venv

    parser = Parser(prog=f"bash {script.name}", formatter_class=argparse.RawDescriptionHelpFormatter,
                    usage=f"bash {script.name} [--dry-run] [--backend local|slurm] [SLURM options] [TASK ...]",
                    description=f"Runs the task blocks of {script.name} (all of them unless some are named), with "
                    "the original LinkBERT hyper-parameters; each run's output goes to OUT_DIR/TASK/MODEL, its log "
                    f"to log.txt there.\n\ntasks: {' '.join(b.name for b in blocks)}",
                    epilog="switches (environment): DRY_RUN=1 SMOKE=1 RESUMABLE=1 SEEDS=\"1 2 3\" PARALLEL=1 "
                    f"GPUS=\"0 1\"\npaths (environment): MODEL_PATH DATA_DIR={data_dir} OUT_DIR={out_dir} "
                    f"PYTHON={python}\nSee the README (Running the paper's experiments, On a cluster).")
    parser.add_argument("tasks", nargs="*", metavar="TASK", help="only these tasks")
    parser.add_argument("--model", required=True, help=argparse.SUPPRESS)
    parser.add_argument("--model-path", required=True, help=argparse.SUPPRESS)
    add_backend_flags(parser)
    args = parser.parse_args(options)
    args.dry_run = args.dry_run or env.get("DRY_RUN", "0") == "1"

    known = [b.name for b in blocks]
    unknown = [t for t in args.tasks if t not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        print(f"error [bad_flag_value]: {script.name}: no task '{unknown[0]}' in this script"
              + (f" (did you mean {close[0]}?)" if close else "") + f"; its tasks: {' '.join(known)}", file=sys.stderr)
        return 2
    wanted: list[Block] = [b for b in blocks if not args.tasks or b.name in args.tasks]
    switches = Switches.from_env(env)
    runs = runs_from_blocks(wanted, python=python, model=args.model, model_path=args.model_path,
                            data_dir=data_dir, out_dir=out_dir, switches=switches)

    if not _data_present(runs, wanted, args.dry_run, script, repo, env):
        return 1
    if not args.dry_run:
        print(f"model {args.model} ({args.model_path}), data {data_dir}, output {out_dir}; backend {args.backend}; "
              f"SMOKE={env.get('SMOKE', '0')} RESUMABLE={env.get('RESUMABLE', '0')} SEEDS='{env.get('SEEDS', '')}' "
              f"PARALLEL={env.get('PARALLEL', '0')}")
    code = run_launch(runs, args, out_dir, env, resume=script_command(argv[0], options, env))
    if not args.dry_run:
        if args.backend == "slurm":
            print(f"Follow them:  python -m linkbert.launch status {out_dir}")
        if any(b.kind != PRETRAIN for b in wanted):
            print(f"Results beside the paper's:  python {display_path(repo / 'scripts' / 'collect_results.py')} "
                  f"{out_dir}")
    if code == 1:
        print(f"{script.name}: some runs failed", file=sys.stderr)
    return code


# The switches a run script reads from the environment, repeated in the command that resumes it.
SCRIPT_SWITCHES = ("MODEL", "MODEL_PATH", "DATA_DIR", "OUT_DIR", "PYTHON", "SMOKE", "SMOKE_FLAGS", "RESUMABLE",
                   "SEEDS", "PARALLEL", "GPUS")


def script_command(script: str, options: list[str], env: dict) -> str:
    """The command the user typed for a run script (its switches and arguments; run_lib.sh's own
    --model/--model-path left out): running it again resumes what was interrupted."""
    words, skip = [], False
    for option in options:
        if not skip and option not in ("--model", "--model-path"):
            words.append(option)
        skip = option in ("--model", "--model-path") and not skip
    switches = [f"{name}={shlex.quote(env[name])}" for name in SCRIPT_SWITCHES if env.get(name)]
    return " ".join([*switches, "bash", shlex.quote(script), *map(shlex.quote, words)])


def _data_present(runs: list[Run], wanted: list[Block], dry_run: bool, script: Path, repo: Path, env: dict) -> bool:
    """False, after saying which, if data files the runs read are missing (a dry run only notes it)."""
    missing = [f for f in data_files(runs) if not Path(f).is_file()]
    if missing and dry_run:
        print(f"# note: {len(missing)} data file(s) missing, e.g. {missing[0]}", file=sys.stderr)
    elif missing:
        data_dir = env.get("DATA_DIR") or display_path(repo / "data")
        print(f"error [missing_file]: {script.name}: {len(missing)} data file(s) missing under {data_dir}:",
              file=sys.stderr)
        for f in missing:
            print(f"  {f}", file=sys.stderr)
        corpora = all(b.kind == PRETRAIN for b in wanted)
        print(corpus_hint(repo) if corpora else fetch_hint(repo, env.get("DATA_DIR")), file=sys.stderr)
        return False
    return True


def corpus_hint(repo: Path) -> str:
    build = f"python {display_path(repo / 'scripts' / 'build_linked_corpus.py')}"
    return (f"Build the linked corpora with:  {build} wikipedia --dump ... --output ...  (or: pubmed --input ...); "
            "then point WIKI_CORPUS / PUBMED_CORPUS at them")


def fetch_hint(repo: Path, data_dir: str | None) -> str:
    """How to get the data, as a command that works from the current folder."""
    fetch = f"bash {display_path(repo / 'scripts' / 'download_data.sh')}"
    samples = (repo / "data" / "samples").resolve()
    resolved = Path(data_dir).resolve() if data_dir else None
    if resolved is not None and (resolved == samples or samples in resolved.parents):
        return (f"{data_dir} holds only the project's small test samples, not every task's files. Use the full "
                f"data: {fetch} (it writes {display_path(repo / 'data')}), then leave DATA_DIR unset, "
                "or name only the tasks the samples have")
    if data_dir:
        return (f"Fetch and preprocess the data with:  DATA_DIR={data_dir} {fetch}\n"
                "(or point DATA_DIR at a folder laid out like data/, or name only the tasks you have)")
    return (f"Fetch and preprocess the data with:  {fetch}\n"
            "(or point DATA_DIR at a folder laid out like data/, or name only the tasks you have)")


# -- a plan file (a sweep) --------------------------------------------------------------------
def plan_main(argv: list[str], env: dict) -> int:
    parser = Parser(prog="python -m linkbert.launch plan", description="Launch the runs listed in a JSON plan.")
    parser.add_argument("plan", help=PLAN_FILE_SHAPE)
    add_backend_flags(parser)
    args = parser.parse_args(argv)
    runs = plan_file_runs(args.plan)
    out_dir = os.path.commonpath([r.folder for r in runs]) if runs else "."
    if out_dir in {r.folder for r in runs}:  # one run: the SLURM logs beside its folder, not in it
        out_dir = os.path.dirname(out_dir) or "."
    return run_launch(runs, args, out_dir, env, resume=shlex.join(["python", "-m", "linkbert.launch", "plan", *argv]))


# -- status -----------------------------------------------------------------------------------
def status_main(argv: list[str]) -> int:
    parser = Parser(prog="python -m linkbert.launch status",
                    description="The state of every launched run under a folder, with a failure's last line.")
    parser.add_argument("folder", nargs="?", default="runs")
    args = parser.parse_args(argv)
    if not Path(args.folder).is_dir():
        raise UserError("missing_file", "no such folder; give the OUT_DIR the runs were launched into (default runs/)",
                        path=args.folder)
    rows = status_lines(args.folder)
    if not rows:
        print(f"no launched runs under {args.folder} (no launch.json below it)")
        return 0
    width = max(len(folder) for _, folder, _ in rows)
    for state, folder, detail in rows:
        print(f"{state:<12} {folder:<{width}}  {detail}".rstrip())
    counts: dict[str, int] = {}
    for state, _, _ in rows:
        counts[state] = counts.get(state, 0) + 1
    print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0


# -- prune --------------------------------------------------------------------------------------
def prune_main(argv: list[str]) -> int:
    parser = Parser(prog="python -m linkbert.launch prune",
                    description="Delete the runs that --overwrite_output_dir set aside in previous_runs/ "
                                "(under every run folder below FOLDER), all but the newest --keep of each.")
    parser.add_argument("folder", nargs="?", default="runs")
    parser.add_argument("--keep", type=int, required=True, help="set-aside runs to keep per run folder (0: none)")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="only list what would be deleted")
    args = parser.parse_args(argv)
    if args.keep < 0:
        raise UserError("bad_flag_value", f"--keep {args.keep}: give 0 or more set-aside runs to keep")
    if not Path(args.folder).is_dir():
        raise UserError("missing_file", "no such folder; give the runs' folder (default runs/)", path=args.folder)
    old = previous_runs_to_prune(args.folder, args.keep)
    total = 0
    for folder in old:
        size, left = prune_set_aside(folder, dry_run=args.dry_run)
        total += size
        print(f"{'would delete' if args.dry_run else 'deleted'}  {folder}  ({size / 2**20:.1f} MiB)"
              + (f"; left, not written by a run: {', '.join(left)}" if left else ""))
        if not args.dry_run:
            with contextlib.suppress(OSError):
                folder.parent.rmdir()  # previous_runs/ itself, once empty
    verb = "would free" if args.dry_run else "freed"
    print(f"{len(old)} set-aside run(s), {verb} {total / 2**20:.1f} MiB" if old
          else f"nothing to delete under {args.folder} (keeping the newest {args.keep} of each previous_runs/)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The launcher's lines and the runs' output (written as bytes) must keep their order in a log file.
    reconfigure = getattr(sys.stdout, "reconfigure", None)  # a TextIOWrapper's (not every stand-in has it)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
    commands = {"script": lambda a: script_main(a, dict(os.environ)), "plan": lambda a: plan_main(a, dict(os.environ)),
                "status": status_main, "prune": prune_main}
    if not argv or argv[0] not in commands:
        print(__doc__.strip())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        return commands[argv[0]](argv[1:])
    except UserError as e:
        print(e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
