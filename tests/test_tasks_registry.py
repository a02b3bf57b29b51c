"""linkbert.tasks: the one table of the paper's tasks agrees with the run scripts and the samples."""

import importlib
import re

from conftest import REPO, SAMPLES
from linkbert.tasks import MODULES, TASKS, of_benchmark


def queued_runs() -> list[tuple[str, str, list[str]]]:
    """(kind, name, flags) of every `add_task KIND NAME flags...` block of the run scripts."""
    runs = []
    for script in sorted(REPO.glob("run_examples_*.sh")):
        for match in re.finditer(r"^add_task (\S+) (\S+)((?:.*\\\n)*.*)$", script.read_text(), re.M):
            runs.append((match.group(1), match.group(2), match.group(3).split()))
    return runs


def test_every_task_of_the_run_scripts_is_registered_with_its_kind_and_metric():
    runs = queued_runs()
    assert len(runs) >= 20  # the BLURB, MRQA and MedQA scripts (base and large)
    for kind, name, flags in runs:
        options = dict(f.split("=", 1) for f in flags if re.match(r"^(data|out)=", f))
        task = TASKS[options.get("out", name)]  # registered by run folder name
        assert task.kind == kind and task.data == options.get("data", f"{kind}/{name}"), name
        given = flags[flags.index("--metric_name") + 1] if "--metric_name" in flags else ""
        assert given == task.metric_name, name


def test_modules_exist_and_sample_folders_follow_the_data_layout():
    for module in MODULES.values():
        importlib.import_module(module)
    samples = {p.parent.relative_to(SAMPLES).as_posix() for p in SAMPLES.glob("**/test.json")}
    registered = {task.data for task in TASKS.values()}
    assert samples <= registered, samples - registered
    assert [t.label for t in of_benchmark("BLURB")][:2] == ["BC5-chem", "BC5-disease"]
    assert all(t.percent == (t.kind == "qa") for t in TASKS.values())
