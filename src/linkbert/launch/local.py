"""The local backend: runs one after another (output on the terminal and in each log.txt), or
with GPUs side by side, each pinned with CUDA_VISIBLE_DEVICES to one GPU (or to --nproc_per_node
of them, for its torchrun) (output in log.txt only).
A run starts once the runs it needs have succeeded; if one of them failed it is not run."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import Callable

from ..core.errors import UserError
from .plan import Run
from .process import RunBusy, RunProcess

NOT_RUN = "not run"  # result of a run whose prerequisite failed
BUSY = "busy"  # result of a run another live process is writing (left alone)


def gpu_list(env: Mapping[str, str] | None = None) -> list[str]:
    """GPUS, else CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists."""
    source = os.environ if env is None else env
    gpus = source.get("GPUS") or source.get("CUDA_VISIBLE_DEVICES") or ""
    if not gpus.strip() and shutil.which("nvidia-smi"):
        listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                                capture_output=True, text=True, check=False)
        gpus = listed.stdout if listed.returncode == 0 else ""
    return gpus.replace(",", " ").split()


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _blocked(run: Run, results: dict[str, object]) -> str | None:
    """The prerequisite that failed, if any (with after_any, none blocks)."""
    if run.after_any:
        return None
    return next((d for d in run.after if d in results and results[d] != 0), None)  # BUSY: not finished


def run_sequential(runs: list[Run], results: dict[str, object], say: Callable[[str], None] = print) -> None:
    for run in runs:
        failed = _blocked(run, results)
        if failed:
            results[run.folder] = NOT_RUN
            say(f"=== {_stamp()} {run.label}: skipped, it waits for {failed}, which did not succeed")
            continue
        try:
            process = RunProcess(run, echo=True)
        except RunBusy as e:
            results[run.folder] = BUSY
            say(f"=== {_stamp()} {run.label}: skipped, {e}; left alone")
            continue
        say(f"=== {_stamp()} {run.label} -> {run.folder}")
        try:
            results[run.folder] = process.wait()
        except KeyboardInterrupt:
            # The run got the Ctrl-C too (same process group): it checkpoints and stops.
            process.wait()
            say(f"{run.label} stopped at its checkpoint")  # launch() then names the command that resumes
            raise


def run_parallel(runs: list[Run], results: dict[str, object], gpus: list[str],
                 say: Callable[[str], None] = print, per_run: int = 1) -> None:
    if not gpus:
        raise UserError("unsupported_setup", "PARALLEL=1 found no GPU: set GPUS (e.g. GPUS=\"0 1 2 3\")")
    if per_run > len(gpus):
        raise UserError("unsupported_setup", f"PARALLEL=1 with {per_run} processes per run needs {per_run} GPUs; "
                        f"GPUS lists {len(gpus)}")
    say(f"running on GPUs: {' '.join(gpus)} ({per_run} per run; logs in each run's log.txt)")
    free = list(gpus)
    pending = list(runs)
    running: dict[str, tuple[RunProcess, str]] = {}
    ended: queue.Queue[str] = queue.Queue()
    try:
        while pending or running:
            _start_ready(pending, results, free, running, ended, say, per_run)
            if not running:
                continue
            folder = ended.get()
            process, gpu = running.pop(folder)
            code = process.wait()
            results[folder] = code
            if gpu:
                free += gpu.split(",")
            say(f"=== {_stamp()} {process.run.label} on {_where(gpu)}: "
                + ("done" if code == 0 else f"FAILED (exit {code})"))
    except KeyboardInterrupt:
        for process, _ in running.values():
            process.stop()
        for process, _ in running.values():
            process.wait()
        say("stopped the runs in progress at their checkpoints")  # launch() then names the command that resumes
        raise


def _where(gpu: str) -> str:
    return f"GPU {gpu}" if gpu else "the CPU"  # gpu: one, or several joined by commas


def _start_ready(pending: list[Run], results: dict[str, object], free: list[str],
                 running: dict[str, tuple[RunProcess, str]], ended: queue.Queue[str],
                 say: Callable[[str], None], per_run: int = 1) -> None:
    """Start every pending run whose prerequisites ended, each on `per_run` free GPUs (a CPU-only
    step, such as a sweep's pick, on none); skip those whose prerequisite failed."""
    for run in list(pending):
        failed = _blocked(run, results)
        if failed:
            pending.remove(run)
            results[run.folder] = NOT_RUN
            say(f"=== {_stamp()} {run.label}: skipped, it waits for {failed}, which did not succeed")
            continue
        if (len(free) < per_run and not run.cpu_only) or any(d not in results for d in run.after):
            continue
        gpu = "" if run.cpu_only else ",".join(free.pop(0) for _ in range(per_run))
        pending.remove(run)
        try:
            process = RunProcess(run, echo=False, own_group=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu})
        except RunBusy as e:
            results[run.folder] = BUSY
            free.extend([gpu] if gpu else [])
            say(f"=== {_stamp()} {run.label}: skipped, {e}; left alone")
            continue
        say(f"=== {_stamp()} {run.label} on {_where(gpu)} -> {run.folder}/log.txt")
        running[run.folder] = (process, gpu)
        _notify_when_ended(process, run.folder, ended)


def _notify_when_ended(process: RunProcess, folder: str, ended: queue.Queue[str]) -> None:
    def notify() -> None:
        process.wait()
        ended.put(folder)

    threading.Thread(target=notify, daemon=True).start()
