"""The SLURM backend, on submitit (facebookincubator/submitit).

One job per run; the runs that wait for nothing go in one job array. Every job asks SLURM for an
advance warning (`--signal USR2@LEAD`, `--signal-lead` seconds before its time limit or
pre-emption): submitit catches it in the job, we stop the run with SIGTERM (the engine finishes
its update and writes a checkpoint), submitit requeues the job (`scontrol requeue`), and the next
attempt resumes from that checkpoint. A run that needs others waits for them with a SLURM
dependency (`afterok`, or `afterany` for a step that reads whatever they left, such as picking
the best of a sweep), and is cancelled by SLURM if one of them fails. The run's output goes to
`<run folder>/log.txt`; submitit's own log of each job to `<log_dir>/<job id>/`.

A run of several processes (`--nodes N --gpus-per-node G`, or `--nproc_per_node P`) is one job of
N nodes with one SLURM task per process (srun starts them all), each given the environment
torchrun would give it (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR = the first node, MASTER_PORT;
submitit's TorchDistributedEnvironment): no torchrun agent between SLURM and the ranks, so SLURM's
signals reach every rank directly. Task 0 does what a one-process job does (log.txt, launch.json,
the checkpoint-and-requeue on SLURM's warning); the other tasks run their rank with the same
command (resuming from the same checkpoint) and write to submitit's log of their task. On the
warning task 0 stops its rank with SIGTERM; the engine's stop vote stops every rank after the
same update, one checkpoint is written, and SLURM requeues the whole job.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..core.errors import UserError
from .plan import Processes, Run
from .process import INTERRUPTED, RunProcess, attempt_argv
from .state import last_line, read_state, write_state


@dataclass
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = "24:00:00"
    processes: Processes = field(default_factory=Processes)  # nodes, tasks and GPUs per node
    cpus: int = 8  # per task
    mem: str | None = None
    signal_lead: int = 300
    max_requeues: int = 10
    log_dir: str = "runs/.slurm"
    extra: list[str] = field(default_factory=list)  # KEY=VALUE, each one more #SBATCH --KEY=VALUE


def minutes(time_limit: str) -> int:
    """SLURM's time formats (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in whole minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+(?::\d+){0,2})", time_limit.strip())
    if not match:
        raise UserError("bad_flag_value", f"--time {time_limit!r}: use minutes, HH:MM:SS or D-HH:MM:SS")
    parts = [int(x) for x in match.group(2).split(":")]
    days, hours, mins, secs = 0, 0, 0, 0
    if match.group(1) is not None:  # D-HH[:MM[:SS]]
        days = int(match.group(1))
        hours, mins, secs = (parts + [0, 0])[:3]
    elif len(parts) == 3:  # HH:MM:SS
        hours, mins, secs = parts
    else:  # MM or MM:SS
        mins, secs = (parts + [0])[:2]
    return max(days * 1440 + hours * 60 + mins + (1 if secs else 0), 1)


class SlurmJob:
    """What each SLURM job runs (pickled by submitit): one attempt of the run; on SLURM's advance
    warning, stop it at a checkpoint and requeue the same job."""

    def __init__(self, run: Run, cwd: str) -> None:
        self.run, self.cwd = run, cwd
        self._process: RunProcess | None = None

    def __getstate__(self) -> dict:
        return {"run": self.run, "cwd": self.cwd}

    def __setstate__(self, state: dict) -> None:
        self.run, self.cwd = state["run"], state["cwd"]
        self._process = None

    def __call__(self) -> int:
        os.chdir(self.cwd)  # the run's paths are as the user wrote them, from where they launched
        env = os.environ
        if int(env.get("SLURM_NTASKS", "1")) > 1:
            import submitit

            # Each GPU stays visible: the engine takes cuda:LOCAL_RANK, as under torchrun.
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
            # Rank 0 runs on the first node, where srun was started: its address, which works where
            # SLURM's node names are not host names.
            env["MASTER_ADDR"] = env.get("SLURM_LAUNCH_NODE_IPADDR") or env["MASTER_ADDR"]
            if env["RANK"] != "0":
                return self._other_rank()
        job = env.get("SLURM_JOB_ID")
        if env.get("SLURM_ARRAY_TASK_ID"):
            job = f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
        self._process = RunProcess(self.run, echo=True, job_id=job, backend="slurm")
        code = self._process.wait()
        if code != 0:
            raise RuntimeError(f"{self.run.label} failed (exit {code}): {last_line(self.run.folder)}")
        return 0

    def _other_rank(self) -> int:
        """A rank other than 0: the same attempt (the same checkpoint to resume from), its output
        in submitit's log of this task; launch.json and log.txt are task 0's."""
        import subprocess

        from .process import _ignore_preemption_signal

        argv, _ = attempt_argv(self.run)
        code = subprocess.run(argv, preexec_fn=_ignore_preemption_signal, check=False).returncode  # noqa: PLW1509
        if code != 0 and code not in INTERRUPTED:  # stopped with the others: task 0 requeues the job
            raise RuntimeError(f"{self.run.label}: rank {os.environ['RANK']} failed (exit {code})")
        return 0

    def checkpoint(self):
        """Called by submitit on the advance warning: checkpoint, then let submitit requeue."""
        import submitit

        if self._process is not None:
            self._process.stop()
            self._process.wait()
        return submitit.helpers.DelayedSubmission(SlurmJob(self.run, self.cwd))


def _executor(options: SlurmOptions, name: str, dependency: str | None, cpu_only: bool = False):
    """A submitit executor for one job (or one array); `cpu_only`: one CPU and no GPU."""
    import submitit

    extra: dict[str, object] = {"requeue": True, "kill_on_invalid_dep": "yes"}
    for item in options.extra:
        key, sep, value = item.partition("=")
        extra[key.lstrip("-")] = value if sep else True
    shape = Processes(gpus=0) if cpu_only else options.processes
    params: dict[str, object] = {"time": minutes(options.time), "cpus_per_task": 1 if cpu_only else options.cpus,
                                 "nodes": shape.nodes, "ntasks_per_node": shape.per_node,
                                 "signal_delay_s": options.signal_lead, "job_name": name,
                                 "stderr_to_stdout": True, "additional_parameters": extra}
    for key in ("partition", "account", "qos", "mem"):
        if getattr(options, key):
            params[key] = getattr(options, key)
    if shape.gpus:
        params["gpus_per_node"] = shape.gpus
    if shape.total > 1:  # a rank that fails ends the others (they would wait for it in a collective)
        params["srun_args"] = ["--kill-on-bad-exit=1"]
    if dependency:
        params["dependency"] = dependency
    executor = submitit.SlurmExecutor(folder=Path(options.log_dir) / "%j", max_num_timeout=options.max_requeues)
    executor.update_parameters(**params)
    return executor


def _job_name(run: Run) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run.label).strip("_") or "linkbert"


def _dependency(run: Run, jobs: dict[str, str]) -> str | None:
    needed = [jobs[d] for d in run.after if d in jobs]
    if not needed:
        return None
    return ("afterany:" if run.after_any else "afterok:") + ":".join(needed)


def submit(runs: list[Run], options: SlurmOptions, jobs: dict[str, str], *, dry_run: bool,
           say: Callable[[str], None] = print) -> dict[str, str]:
    """Submits the runs (in order; `jobs` holds the job ids of runs already in the queue that
    some of them need) and returns {output folder: job id}. With dry_run, prints the job scripts."""
    if options.signal_lead * 2 > minutes(options.time) * 60:
        raise UserError("conflicting_flags", f"--signal-lead {options.signal_lead} s is not well under --time "
                        f"{options.time}: each job would be warned (and requeued) soon after it starts; "
                        "give a longer --time or a shorter --signal-lead")
    if dry_run:
        _print_job_scripts(runs, options, say)
        return {}
    if shutil.which("sbatch") is None:
        raise UserError("unsupported_setup", "--backend slurm needs SLURM's sbatch, which is not on this "
                        "machine: run on the cluster's login node, or use --backend local")
    from submitit.core.utils import FailedJobError

    jobs = dict(jobs)
    for run in runs:
        _mark_queued(run)
    try:
        _submit_all(runs, options, jobs, say)
    except FailedJobError as e:
        said = str(e).strip().splitlines()[-1] if str(e).strip() else "no reason given"
        for run in runs:
            if run.folder not in jobs:
                write_state(run.folder, state="failed", error=f"not submitted: {said}")
        raise UserError("bad_flag_value", f"sbatch refused the job ({said}); check --partition, --account, "
                        f"--qos, --time and --sbatch. Submitted before that: "
                        f"{sum(r.folder in jobs for r in runs)} job(s)") from None
    return jobs


def _submit_all(runs: list[Run], options: SlurmOptions, jobs: dict[str, str], say: Callable[[str], None]) -> None:
    """Submits into `jobs` (output folder -> job id): first one array of the GPU runs that wait
    for nothing, then each other run with its dependency on jobs already known."""
    cwd = os.getcwd()
    planned = {r.folder for r in runs}
    free = [r for r in runs if not r.cpu_only and not any(d in jobs or d in planned for d in r.after)]
    if free:
        executor = _executor(options, "linkbert" if len(free) > 1 else _job_name(free[0]), None)
        with executor.batch():  # one job array for the runs that wait for nothing
            submitted = [executor.submit(SlurmJob(run, cwd)) for run in free]
        for run, job in zip(free, submitted):
            jobs[run.folder] = _record_job(run, job.job_id, say)
    for run in runs:
        if run not in free:
            executor = _executor(options, _job_name(run), _dependency(run, jobs), run.cpu_only)
            jobs[run.folder] = _record_job(run, executor.submit(SlurmJob(run, cwd)).job_id, say)


def _print_job_scripts(runs: list[Run], options: SlurmOptions, say: Callable[[str], None]) -> None:
    shape = options.processes
    for run in runs:
        executor = _executor(options, _job_name(run), _dependency(run, {d: f"<job of {d}>" for d in run.after}),
                             run.cpu_only)
        say(f"# {run.label}: {' '.join(run.argv)}")
        if shape.total > 1 and not run.cpu_only:
            say(f"# on each of the {shape.nodes} node(s): {shape.per_node} task(s), one per process, each running "
                f"the command above with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE={shape.total}, "
                "MASTER_ADDR=<first node>, MASTER_PORT)")
        say(executor._make_submission_file_text(executor._submitit_command_str, "dry-run"))


def _mark_queued(run: Run) -> None:
    previous = read_state(run.folder)
    attempts = previous.get("attempts", 0) if previous.get("argv") == run.argv else 0
    write_state(run.folder, label=run.label, argv=run.argv, state="queued", job_id=None, backend="slurm",
                exit_code=None, attempts=attempts, error=None)


def _record_job(run: Run, job_id: str, say: Callable[[str], None]) -> str:
    # The job may already have started and written its id (and state) itself: add only the id.
    write_state(run.folder, job_id=job_id)
    say(f"queued  {run.label}  job {job_id}  log {run.folder}/log.txt")
    return job_id
