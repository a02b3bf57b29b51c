"""The paper's tasks in one table: run name -> task module, data folder, the metric reported.

The run scripts (`run_examples_*.sh`), the launcher, the demo, `scripts/collect_results.py` and
the tests name these tasks; this is the one place their module, data folder and reported metric
are written down. Their hyper-parameters are written in one place too, the run scripts' blocks
(the user's to edit): `linkbert.launch.plan.script_blocks` reads them for the demo and the tests.

    >>> from linkbert.tasks import TASKS
    >>> TASKS["chemprot_hf"].module, TASKS["chemprot_hf"].data, TASKS["chemprot_hf"].metric
    ('linkbert.seqcls.run_seqcls', 'seqcls/chemprot_hf', 'F1')

`metric` is the result key without its `predict_`/`eval_` prefix; `metric_name` the
`--metric_name` flag a sequence-classification run gives for it (the original scripts' names;
none: the default, accuracy).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core.task import Task

# Task kind -> the module a run starts (`python -m MODULE`), and the Task class it defines.
MODULES = {
    "seqcls": "linkbert.seqcls.run_seqcls",
    "tokcls": "linkbert.tokcls.run_ner",
    "qa": "linkbert.qa.run_qa",
    "mc": "linkbert.mc.run_multiple_choice",
}
TASK_CLASSES = {"seqcls": "SeqClsTask", "tokcls": "NerTask", "qa": "QATask", "mc": "MultipleChoiceTask"}


def task_class(kind: str) -> type[Task]:
    """The Task class of a kind's module, imported on first use (the table itself imports no torch)."""
    return getattr(importlib.import_module(MODULES[kind]), TASK_CLASSES[kind])


@dataclass(frozen=True)
class TaskInfo:
    name: str          # run folder name under runs/ (and, by default, the data folder's name)
    kind: str          # a key of MODULES
    benchmark: str     # MRQA | BLURB | MedQA | MMLU | MRQA few-shot | MRQA distracting
    label: str         # the paper's name for it
    metric: str        # result key without its predict_/eval_ prefix
    group: str = ""    # BLURB task type (the BLURB score averages within each group first)
    metric_name: str = ""  # --metric_name (sequence classification only)
    data_folder: str = ""  # under data/, when not KIND/NAME
    splits: tuple[str, str, str] = ("train", "dev", "test")  # its files there (train, validation, test)

    @property
    def module(self) -> str:
        return MODULES[self.kind]

    @property
    def data(self) -> str:
        """The folder under data/ that holds its train/dev/test.json."""
        return self.data_folder or f"{self.kind}/{self.name}"

    @property
    def task_class(self) -> type[Task]:
        return task_class(self.kind)

    @property
    def percent(self) -> bool:
        """QA result files hold percent (as the original's SQuAD metric); the others fractions."""
        return self.kind == "qa"


def _mrqa(name: str, label: str) -> TaskInfo:
    return TaskInfo(name, "qa", "MRQA", label, "f1")


def _blurb(name: str, kind: str, label: str, metric: str, group: str, metric_name: str = "") -> TaskInfo:
    return TaskInfo(name, kind, "BLURB", label, metric, group, metric_name)


def _few_shot(data_name: str, label: str) -> TaskInfo:
    """10% of an MRQA set's training questions (--train_fraction 0.1), tested on the whole test split."""
    return TaskInfo(f"{data_name}_fewshot10", "qa", "MRQA few-shot", label, "f1", data_folder=f"qa/{data_name}")


_ALL = [
    _mrqa("hotpot_hf", "HotpotQA"), _mrqa("triviaqa_hf", "TriviaQA"), _mrqa("searchqa_hf", "SearchQA"),
    _mrqa("naturalqa_hf", "NaturalQ"), _mrqa("newsqa_hf", "NewsQA"), _mrqa("squad_hf", "SQuAD"),
    _blurb("BC5CDR-chem_hf", "tokcls", "BC5-chem", "f1", "NER"),
    _blurb("BC5CDR-disease_hf", "tokcls", "BC5-disease", "f1", "NER"),
    _blurb("NCBI-disease_hf", "tokcls", "NCBI-disease", "f1", "NER"),
    _blurb("BC2GM_hf", "tokcls", "BC2GM", "f1", "NER"),
    _blurb("JNLPBA_hf", "tokcls", "JNLPBA", "f1", "NER"),
    _blurb("ebmnlp_hf", "tokcls", "EBM PICO", "macro_f1", "PICO"),
    _blurb("chemprot_hf", "seqcls", "ChemProt", "F1", "relation extraction", "PRF1"),
    _blurb("DDI_hf", "seqcls", "DDI", "F1", "relation extraction", "PRF1"),
    _blurb("GAD_hf", "seqcls", "GAD", "F1", "relation extraction", "PRF1"),
    _blurb("BIOSSES_hf", "seqcls", "BIOSSES", "pearsonr", "sentence similarity", "pearsonr"),
    _blurb("HoC_hf", "seqcls", "HoC", "F1", "document classification", "hoc"),
    _blurb("pubmedqa_hf", "seqcls", "PubMedQA", "accuracy", "question answering"),
    _blurb("bioasq_hf", "seqcls", "BioASQ", "accuracy", "question answering"),
    TaskInfo("medqa_usmle_hf", "mc", "MedQA", "MedQA-USMLE", "accuracy"),
    # Evaluation only, of the MedQA model (the paper's Table 3): no training split.
    TaskInfo("mmlu_professional_medicine_eval", "mc", "MMLU", "MMLU prof. medicine", "accuracy",
             data_folder="mc/mmlu_hf/professional_medicine", splits=("dev", "val", "test")),
    # The paper's other MRQA tables (the release has no code for them; see README).
    _few_shot("hotpot_hf", "HotpotQA"), _few_shot("triviaqa_hf", "TriviaQA"),
    _few_shot("naturalqa_hf", "NaturalQ"), _few_shot("squad_hf", "SQuAD"),
    TaskInfo("squad_distract_hf", "qa", "MRQA distracting", "SQuAD + 1-2 distracting docs", "f1"),
]
TASKS: dict[str, TaskInfo] = {task.name: task for task in _ALL}


def of_benchmark(benchmark: str) -> list[TaskInfo]:
    """The tasks of one benchmark, in the paper's table order."""
    return [task for task in _ALL if task.benchmark == benchmark]


def release_data_files() -> list[str]:
    """The files of the original release's preprocessed data (what scripts/download_data.sh
    unpacks into data/), relative to data/: those of the MRQA, BLURB, MedQA and MMLU tasks (the
    few-shot runs read the MRQA folders; the distracting-documents set and GLUE are built here)."""
    files: dict[str, None] = {}
    for task in _ALL:
        if task.benchmark in ("MRQA", "BLURB", "MedQA", "MMLU"):
            files.update((f"{task.data}/{split}.json", None) for split in task.splits)
    return list(files)
