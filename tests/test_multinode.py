"""Several nodes, on one machine: the command the launcher prints for `--nodes 2` (torchrun with
c10d rendezvous), started twice over 127.0.0.1 as two "nodes" of one process each, trains what one
process trains with the same global batch; pre-empted (SIGTERM to every rank) it writes one
checkpoint and, started again, resumes exactly. (The SLURM form: tests/test_slurm.py.)

Weights agree up to float summation order (see tests/test_distributed.py: dropout off, one
seeded order dealt out to the ranks)."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, assert_same_weights, run_task, sample_dir

from linkbert.seqcls.run_seqcls import SeqClsTask

CHEMPROT = sample_dir("chemprot_hf")
WEIGHT_ATOL = 1e-5
STEPS, SAVE_EVERY = 24, 8


def flags(model: str, out: Path, batch: int) -> list[str]:
    return ["--model_name_or_path", model, "--train_file", str(CHEMPROT / "train.json"),
            "--validation_file", str(CHEMPROT / "dev.json"), "--do_train", "--metric_name", "PRF1",
            "--max_steps", str(STEPS), "--learning_rate", "5e-3", "--adam_epsilon", "1e-6", "--logging_steps", "4",
            "--save_strategy", "steps", "--save_steps", str(SAVE_EVERY), "--disable_tqdm",
            "--per_device_train_batch_size", str(batch), "--output_dir", str(out)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_command(tmp_path: Path, argv: list[str], out: Path) -> list[str]:
    """The command the launcher's dry run prints for a run of 2 nodes x 1 CPU process."""
    plan = tmp_path / f"{out.name}.plan.json"
    plan.write_text(json.dumps({"runs": [{"label": out.name, "folder": str(out), "argv": argv}]}))
    printed = subprocess.run([sys.executable, "-m", "linkbert.launch", "plan", str(plan), "--dry-run", "--nodes", "2",
                              "--gpus-per-node", "0", "--nproc_per_node", "1", "--rdzv-endpoint",
                              f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=120, check=True)
    lines = printed.stdout.splitlines()
    assert lines[0].startswith("# start each command on each of the 2 nodes"), printed.stdout
    (command,) = [line for line in lines if not line.startswith("#")]
    return shlex.split(command)


def start_two_nodes(command: list[str], logs: Path) -> list[subprocess.CompletedProcess]:
    """Both agents at once (each waits for the other at the rendezvous); their outcomes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    logs.mkdir(parents=True, exist_ok=True)
    agents = [subprocess.Popen(command, env=env, stdout=open(logs / f"node{i}.out", "w"),  # noqa: SIM115
                               stderr=subprocess.STDOUT) for i in range(2)]
    codes = [agent.wait(timeout=240) for agent in agents]
    return [subprocess.CompletedProcess(command, code, (logs / f"node{i}.out").read_text())
            for i, code in enumerate(codes)]


@pytest.fixture(scope="module")
def model(tiny_model) -> str:
    return tiny_model(sorted(CHEMPROT.glob("*.json")), dropout=0.0)


@pytest.fixture(scope="module")
def one_process(model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one_process") / "run"
    run_task(SeqClsTask, flags(model, out, batch=8))
    return out


def test_two_torchrun_agents_as_two_nodes_end_with_the_one_process_weights(model, one_process, tmp_path):
    out = tmp_path / "two_nodes"
    command = node_command(tmp_path, [sys.executable, "-u", "-m", "linkbert.seqcls.run_seqcls",
                                      *flags(model, out, batch=4)], out)
    assert command[1:10] == ["-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                             "--rdzv-backend", "c10d", "--rdzv-endpoint"]
    ended = start_two_nodes(command, tmp_path / "logs")
    assert [e.returncode for e in ended] == [0, 0], "\n".join(e.stdout[-3000:] for e in ended)
    assert_same_weights(out, one_process, atol=WEIGHT_ATOL)


def test_preempting_every_rank_of_two_nodes_checkpoints_once_and_resumes_exactly(model, one_process, tmp_path):
    out = tmp_path / "preempted"
    worker = str(REPO / "tests" / "dist_preempt_worker.py")
    argv = [sys.executable, worker, str(SAVE_EVERY), *flags(model, out, batch=4)]
    command = node_command(tmp_path, argv, out)
    first = start_two_nodes(command, tmp_path / "logs1")
    text = "\n".join(e.stdout for e in first)
    assert all(e.returncode != 0 for e in first), text[-3000:]
    # Every rank stopped after the same update (the ranks' stop votes are read one update late),
    # and one checkpoint of it was written: beside the periodic checkpoint-SAVE_EVERY, one more.
    stops = re.findall(r"SIGTERM received: stopped after update (\d+), checkpoint (\S+) written", text)
    assert len(stops) == 2 and stops[0] == stops[1], text[-3000:]
    stop = int(stops[0][0])
    assert SAVE_EVERY < stop < STEPS and Path(stops[0][1]) == out / f"checkpoint-{stop}"
    steps = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert steps == [SAVE_EVERY, stop], steps
    assert not (out / "model.safetensors").exists()

    # The same command again (no --overwrite_output_dir): it resumes from that checkpoint.
    second = start_two_nodes(command, tmp_path / "logs2")
    assert [e.returncode for e in second] == [0, 0], "\n".join(e.stdout[-3000:] for e in second)
    assert f"resuming from {out / f'checkpoint-{stop}'}" in "\n".join(e.stdout for e in second)
    assert_same_weights(out, one_process, atol=WEIGHT_ATOL)
