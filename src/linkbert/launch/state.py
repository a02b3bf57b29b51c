"""What became of each run: `launch.json` in its output folder, and `status`.

The launcher writes `<run folder>/launch.json` when it queues or starts a run and when the run
ends: the command, the state (queued / running / done / failed / interrupted), the exit status,
the SLURM job id and the number of attempts. Relaunching the same runs reads it back: a run that
finished with the same command is skipped; one queued or running under a SLURM job that is still
in the queue is left alone; any other is run again, resuming from its last checkpoint when an
earlier attempt of the same command left one.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
from pathlib import Path

# launch.json and log.txt are run files like any other: read and written by core/rundir.py.
from ..core.rundir import LAUNCH_RECORD_FILE as STATE_FILE
from ..core.rundir import LOG_FILE, pid_alive, sorted_checkpoints
from ..core.rundir import last_log_line as last_line
from ..core.rundir import read_launch_record as read_state
from ..core.rundir import write_launch_record as write_state

__all__ = ["LOG_FILE", "STATE_FILE", "current_state", "last_checkpoint", "last_line", "read_state", "slurm_queue",
           "status_lines", "write_state"]


def last_checkpoint(folder: str | Path) -> Path | None:
    """The newest complete checkpoint (the engine renames one into place only once written)."""
    checkpoints = sorted_checkpoints(folder)
    return checkpoints[-1] if checkpoints else None


def slurm_queue() -> dict[str, str] | None:
    """{job id: state} of this user's jobs in the SLURM queue (array tasks one by one), or None
    where there is no `squeue` or it does not answer."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", f"--user={getpass.getuser()}", "--array", "--noheader", "--format=%i|%T"],
                             capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)


def current_state(state: dict, queue: dict[str, str] | None) -> tuple[str, str]:
    """(state, detail) of a run from its launch.json, checked against the SLURM queue: a run marked
    queued or running whose job is no longer there did not end on its own."""
    name = state.get("state", "unknown")
    job = state.get("job_id")
    detail = f"job {job}" if job else ""
    if job and queue is not None and job in queue and name != "done":  # e.g. interrupted, then requeued
        name = "running" if queue[job] in ("RUNNING", "COMPLETING") else "queued"
        detail = f"job {job}, {queue[job].lower()}"
    elif name in ("queued", "running") and job and queue is not None:
        how = "before starting (a run it needs failed, or it was cancelled)" if name == "queued" \
            else "without finishing (cancelled, or its node failed)"
        return "failed", f"job {job} left the queue {how}"
    elif name == "running" and not job and state.get("host") == socket.gethostname() and not pid_alive(state.get("pid")):
        return "interrupted", "its process is gone (the launcher was stopped, or the machine restarted)"
    if state.get("attempts", 0) > 1:
        detail = ", ".join(filter(None, [detail, f"attempt {state['attempts']}"]))
    return name, detail


def status_lines(root: str | Path) -> list[tuple[str, str, str]]:
    """(state, output folder, detail) of every run under `root` that the launcher knows."""
    root = Path(root)
    folders = sorted(p.parent for p in root.rglob(STATE_FILE)) if root.is_dir() else []
    states = {folder: read_state(folder) for folder in folders}
    queue = slurm_queue() if any(s.get("job_id") for s in states.values()) else None
    rows = []
    for folder, state in states.items():
        name, detail = current_state(state, queue)
        if name in ("failed", "interrupted"):
            code = state.get("exit_code")
            said = last_line(folder)
            detail = "; ".join(filter(None, [detail, f"exit {code}" if code is not None else "",
                                             state.get("error", ""), said]))
            checkpoint = last_checkpoint(folder)
            if name == "interrupted" and checkpoint is not None:
                detail += f" (resumes from {checkpoint.name})"
        rows.append((name, str(folder), detail))
    return rows
