"""Launching many runs: the run scripts' task blocks, seed sweeps, grids.

    bash run_examples_blurb_biolinkbert-base.sh                          # here, one after another
    PARALLEL=1 bash run_examples_blurb_biolinkbert-base.sh               # here, one run per GPU
    bash run_examples_blurb_biolinkbert-base.sh --backend slurm --partition gpu --time 12:00:00
    python -m linkbert.launch status runs/                               # done / running / queued / failed

`plan.py` turns a run script's blocks into runs, `local.py` and `slurm.py` run them,
`process.py` is one attempt of one run, `state.py` what became of each (launch.json).
From Python: `launch(runs, backend="slurm", slurm=SlurmOptions(...))` with a list of `Run`s.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterator
from dataclasses import replace
from typing import Callable

from ..core.errors import RESUME_COMMAND_VARIABLE
from .local import BUSY, NOT_RUN, run_parallel, run_sequential
from .plan import Run
from .process import INTERRUPTED
from .slurm import SlurmOptions, submit
from .state import read_state, slurm_queue

__all__ = ["Run", "SlurmOptions", "launch"]

WAIT_LINE = "# wait until the runs above have finished"


def dry_run_lines(runs: list[Run]) -> list[str]:
    """The commands, one per line, with a wait line where a run needs every run above it."""
    lines = []
    for i, run in enumerate(runs):
        above = [r.folder for r in runs[:i]]
        if above and sorted(run.after) == sorted(above):
            lines.append(WAIT_LINE)
        lines.append(" ".join(shlex.quote(a) for a in run.argv))
    return lines


def launch(runs: list[Run], *, backend: str = "local", dry_run: bool = False, gpus: list[str] | None = None,
           gpus_per_run: int = 1, slurm: SlurmOptions | None = None, say: Callable[[str], None] = print,
           resume: str = "") -> int:
    """Runs (local) or submits (slurm) the runs, skipping those already done with the same command
    (and, on SLURM, those still in the queue). Returns 0, 1 if a local run failed, or 130 if one was
    interrupted (Ctrl-C, SIGTERM) and none failed. `gpus`: run locally side by side, each on
    `gpus_per_run` of them; None: one after another. `resume`: the command that launched them,
    which resumes them (said on an interruption)."""
    if dry_run and backend == "local":
        for line in dry_run_lines(runs):
            say(line)
        return 0
    done, queued, todo = _what_is_left(runs, slurm_queue() if backend == "slurm" else None, say)
    if backend == "slurm":
        submit(todo, slurm or SlurmOptions(), queued, dry_run=dry_run, say=say)
        return 0
    results = dict(done)
    try:
        with resume_hint(resume):
            if gpus is None:
                run_sequential(todo, results, say)
            else:
                run_parallel(todo, results, gpus, say, per_run=gpus_per_run)
    except KeyboardInterrupt:
        say(resume_line(resume))
        return 130
    return _summary(runs, results, set(done), say, resume)


@contextlib.contextmanager
def resume_hint(resume: str) -> Iterator[None]:
    """The runs started meanwhile name `resume` in their own interruption message (their own command
    would start a script's run afresh: it has --overwrite_output_dir)."""
    before = os.environ.get(RESUME_COMMAND_VARIABLE)
    if resume:
        os.environ[RESUME_COMMAND_VARIABLE] = resume
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RESUME_COMMAND_VARIABLE, None)
        else:
            os.environ[RESUME_COMMAND_VARIABLE] = before


def resume_line(resume: str) -> str:
    return f"interrupted; to resume, run:  {resume or 'the same command again'}"


def _what_is_left(runs: list[Run], queue: dict[str, str] | None, say: Callable[[str], None]
                  ) -> tuple[dict[str, object], dict[str, str], list[Run]]:
    """(runs done with the same command: exit status 0, runs still in the SLURM queue: job id,
    the runs to launch, waiting only for runs of this launch or still in the queue)."""
    done: dict[str, object] = {}
    queued: dict[str, str] = {}
    todo: list[Run] = []
    launched = {r.folder for r in runs}
    for run in runs:
        previous = read_state(run.folder)
        same = previous.get("argv") == run.argv
        newer = _newer_input(run, previous, done, launched)
        if same and previous.get("state") == "done" and newer:
            say(f"again   {run.label}  (done earlier, but {newer} has ended since or runs again: it reads it)")
            todo.append(run)
        elif same and previous.get("state") == "done":
            say(f"done    {run.label}  (finished earlier with the same command; skipped: delete "
                f"{run.folder}/launch.json to run it again)")
            done[run.folder] = 0
        elif same and queue is not None and previous.get("job_id") in queue and previous.get("state") != "failed":
            say(f"queued  {run.label}  job {previous['job_id']} is still in the queue; left alone")
            queued[run.folder] = previous["job_id"]
        else:
            todo.append(run)
    # A prerequisite outside this launch (only some tasks named) or already done is not waited for.
    known = {r.folder for r in todo} | set(queued)
    return done, queued, [replace(run, after=[d for d in run.after if d in known]) for run in todo]


def _newer_input(run: Run, previous: dict, done: dict[str, object], launched: set[str]) -> str | None:
    """A run of this launch that this run reads (a sweep's pick reads every configuration it
    waits for; MMLU loads MedQA's folder) and that is not done (it runs again now, or is queued)
    or ended after this run started: this run must then run again. A run that only waits for
    another (a `wait_for_tasks_above` line) is not run again for it."""
    for folder in run.after:
        if folder not in launched or not (run.after_any or folder in run.argv):
            continue
        if folder not in done:
            return folder
        ended = read_state(folder).get("ended")
        if ended is not None and (previous.get("started") is None or ended > previous["started"]):
            return folder
    return None


def _summary(runs: list[Run], results: dict[str, object], done: set[str], say: Callable[[str], None],
             resume: str = "") -> int:
    say("=== summary")
    failed = interrupted = 0
    for run in runs:
        code = results.get(run.folder)
        if run.folder in done:
            say(f"  ok      {run.label}  {run.folder}  (done earlier)")
        elif code == 0:
            say(f"  ok      {run.label}  {run.folder}")
        elif code == BUSY:
            say(f"  BUSY    {run.label}  (another process is writing it; left alone)")
        elif code == NOT_RUN:
            failed += 1
            say(f"  SKIPPED {run.label}  (a run it waits for failed)")
        elif code in INTERRUPTED:  # Ctrl-C or SIGTERM: it checkpointed and stopped; a relaunch resumes it
            interrupted += 1
            say(f"  interrupted  {run.label}  (exit {code}; stopped at its last checkpoint, {run.folder}/log.txt)")
        else:
            failed += 1
            say(f"  FAILED  {run.label}  (exit {code}; see {run.folder}/log.txt)")
    if interrupted:
        say(resume_line(resume))
    return 1 if failed else 130 if interrupted else 0
