"""One attempt of one run, as a child process, on any backend.

The command's output goes to `<run folder>/log.txt` (and to the terminal or the SLURM log when
`echo`), its start and end to `launch.json`. When an earlier attempt of the same command left a
checkpoint, the attempt resumes from it (`--resume_from_checkpoint`), whatever the command's
`--overwrite_output_dir` says: that is how a pre-empted or killed run continues.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from ..core.errors import UserError
from ..core.rundir import LAUNCH_LOCK_FILE, LOCK_FILE, RunLock, lock_holder, open_log
from .plan import Run
from .state import last_checkpoint, read_state, write_state

# Exit statuses of a run stopped by a signal (the engine's 143 / 130 after its checkpoint, or
# the signal itself): the run is interrupted, not failed.
INTERRUPTED = {143, 130, -signal.SIGTERM, -signal.SIGINT, -signal.SIGKILL}


class RunBusy(Exception):
    """A live process writes the run already (another launcher's attempt, or the run started by
    hand): this launcher leaves it alone, writing nothing into its folder."""


def writer_of(folder: str | Path) -> str | None:
    """Who is writing the run folder now, in words (None: no live process)."""
    for name, who in ((LAUNCH_LOCK_FILE, "another launcher"), (LOCK_FILE, "a run")):
        holder = lock_holder(folder, name)
        if holder is not None:
            return f"{who} (process {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')})"
    return None


def take_run(folder: str | Path) -> RunLock:
    """The launcher's lock of a run folder, held for one attempt; RunBusy if a live process
    (another launcher, or the run itself started by hand) writes it."""
    lock = RunLock(folder, LAUNCH_LOCK_FILE)
    try:
        lock.acquire()
    except UserError as e:
        if e.kind != "output_dir_locked":
            raise
        raise RunBusy(f"being written by {writer_of(folder) or 'another process'}") from None
    running = lock_holder(folder, LOCK_FILE)
    if running is not None:
        lock.release()
        raise RunBusy(f"being written by {writer_of(folder)}")
    return lock


def attempt_argv(run: Run) -> tuple[list[str], Path | None]:
    """The command for the next attempt, and the checkpoint it resumes from (if any)."""
    previous = read_state(run.folder)
    checkpoint = last_checkpoint(run.folder)
    if (run.trains and checkpoint is not None and previous.get("argv") == run.argv
            and previous.get("state") != "done" and "--resume_from_checkpoint" not in run.argv):
        return [*run.argv, "--resume_from_checkpoint", str(checkpoint)], checkpoint
    return list(run.argv), None


def _ignore_preemption_signal() -> None:
    # Used on SLURM only, where the job process starts its one run before any other thread
    # exists (preexec_fn is unsafe only with threads).
    # SLURM sends its advance warning (USR2) to every process of the job; the launcher's job
    # process handles it by stopping the run with SIGTERM. In the run itself USR2 would kill at once.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class RunProcess:
    """Starts the run's command; `wait()` returns its exit status once it ended and its state is
    written. `stop()` asks it to checkpoint and stop (SIGTERM)."""

    def __init__(self, run: Run, *, echo: bool, env: dict | None = None, own_group: bool = False,
                 job_id: str | None = None, backend: str = "local") -> None:
        self.run, self.own_group = run, own_group
        # One writer per run: a local launcher holds the folder's launcher lock for the attempt (on
        # SLURM the queue says which job runs it; a lock of a dead node could not be told stale).
        self.lock = take_run(run.folder) if backend == "local" else None
        try:
            self._start(echo, env, job_id, backend)
        except BaseException:
            self._release()
            raise

    def _start(self, echo: bool, env: dict | None, job_id: str | None, backend: str) -> None:
        run = self.run
        argv, resumed = attempt_argv(run)
        # The log holds the run its folder holds: a fresh start overwrites it, a resumed run
        # (or one without --overwrite_output_dir, which resumes by itself) adds to it.
        append = resumed is not None or "--overwrite_output_dir" not in argv
        previous = read_state(run.folder)
        attempts = previous.get("attempts", 0) + 1 if previous.get("argv") == run.argv else 1
        write_state(run.folder, label=run.label, argv=run.argv, state="running", exit_code=None,
                    backend=backend, job_id=job_id, attempts=attempts, started=time.time(), ended=None,
                    resumed_from=str(resumed) if resumed else None)
        # Closed by the reaping thread once the run ended.
        self.log: IO[bytes] = open_log(run.folder, append)
        if resumed:
            self.log.write(f"=== launcher: resuming from {resumed}\n".encode())
            self.log.flush()
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE if echo else self.log,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=self.own_group,
                                        preexec_fn=_ignore_preemption_signal if backend == "slurm" else None)  # noqa: PLW1509
        write_state(run.folder, pid=self.process.pid, host=socket.gethostname())
        self.returncode: int | None = None
        self.ended = threading.Event()
        # A thread copies the output and reaps the process, so the main thread only waits on an
        # event (and a signal handler there may call stop() and wait too).
        self._waiter = threading.Thread(target=self._reap, args=(echo,), daemon=True)
        self._waiter.start()

    def _reap(self, echo: bool) -> None:
        if echo:
            assert self.process.stdout is not None
            terminal, output = sys.stdout.buffer, self.process.stdout.fileno()
            for chunk in iter(lambda: os.read(output, 65536), b""):
                self.log.write(chunk)
                self.log.flush()
                terminal.write(chunk)
                terminal.flush()
        code = self.process.wait()
        self.log.close()
        state = "done" if code == 0 else "interrupted" if code in INTERRUPTED else "failed"
        write_state(self.run.folder, state=state, exit_code=code, ended=time.time())
        self._release()
        self.returncode = code
        self.ended.set()

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def wait(self, timeout: float | None = None) -> int | None:
        self.ended.wait(timeout)
        return self.returncode

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Ask the run to finish its update, checkpoint and exit (the engine's SIGTERM handling)."""
        if self.process.poll() is None:
            try:
                if self.own_group:
                    os.killpg(self.process.pid, sig)
                else:
                    self.process.send_signal(sig)
            except ProcessLookupError:
                pass
