"""The model card (`README.md`) of an output folder, written where a run finishes.

    ModelCard.load(out / "README.md").data.eval_results   # == the folder's result files

Everything on the card is read back from the folder's own files, so the card says what the
folder holds: the base model, the task and its data (`run_args.json`, `env.json`), the
hyper-parameters, the dev and test scores (`eval_results.json`, `predict_results.json`) as the
card's `model-index`, the paper's number beside ours where the paper has one (the table of
`scripts/collect_results.py`), the software versions and the lock (`linkbert.env.lock_record`),
the command, and the LinkBERT citation. A pretraining folder's card says what corpus it was
pretrained on and with which relation settings.

The metadata is built with `huggingface_hub.ModelCardData` / `EvalResult`; `card_scores` and
`folder_scores` give both sides of the round trip the tests check.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

from .results import read_json_or_none, write_text

CARD = "README.md"
SPLITS = {"eval": "validation", "predict": "test"}  # result-file prefix -> model-index dataset split
# Result-file entries that are bookkeeping, not scores: left out of the model-index.
NOT_SCORES = ("_runtime", "_samples", "_samples_per_second", "_steps_per_second", "_duplicate_ids")
PIPELINE = {"qa": "question-answering", "seqcls": "text-classification", "ner": "token-classification",
            "mc": "multiple-choice", "pretrain": "fill-mask"}
KIND = {"ner": "tokcls"}  # a task's name -> its kind in linkbert.tasks, where they differ
# The run arguments shown as hyper-parameters (the task's own flags are shown too).
HYPER_PARAMETERS = (
    "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
    "lr_scheduler_type", "warmup_ratio", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon",
    "optim", "max_grad_norm", "max_seq_length", "seed", "fp16", "bf16", "from_scratch")
PRETRAIN_SETTINGS = (
    "corpus_file", "relation_probabilities", "linked_sampling", "mlm_probability", "mlm_loss_weight",
    "whole_word_masking", "masking", "segment_length", "validation_split_percentage")
CITATION = """@InProceedings{yasunaga2022linkbert,
  author =  {Michihiro Yasunaga and Jure Leskovec and Percy Liang},
  title =   {LinkBERT: Pretraining Language Models with Document Links},
  year =    {2022},
  booktitle = {Association for Computational Linguistics (ACL)},
}"""
REPO = Path(__file__).resolve().parents[3]


def score_entries(results: dict) -> dict[str, float]:
    """The scores of one result file (`eval_f1` -> 0.5): numbers, bookkeeping left out."""
    return {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and not k.endswith(NOT_SCORES)}


def folder_scores(out: str | Path) -> dict[tuple[str, str], float]:
    """(split, metric) -> value of the folder's dev and test result files."""
    scores = {}
    for prefix, split in SPLITS.items():
        for key, value in score_entries(read_json_or_none(Path(out) / f"{prefix}_results.json") or {}).items():
            scores[split, key.removeprefix(f"{prefix}_")] = value
    return scores


def card_scores(card) -> dict[tuple[str, str], float]:
    """(split, metric) -> value of a loaded card's model-index."""
    return {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results or []}


def collect_results_module() -> Optional[Any]:
    """scripts/collect_results.py, which holds the paper's numbers (None without the repository)."""
    path = REPO / "scripts" / "collect_results.py"
    if not path.is_file():
        return None
    name = "linkbert_collect_results"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


def registry_task(task_name: str, out: Path, run_args: dict):
    """The paper's task this run is (linkbert.tasks), from the run folder's path `out`
    (runs/<task>/...) or else the data folder; None for other data."""
    from linkbert.tasks import TASKS

    for part in reversed(out.parts):
        if part in TASKS:
            return TASKS[part]
    kind = KIND.get(task_name, task_name)
    fewshot = (run_args.get("train_fraction") or 1) < 1
    for flag in ("train_file", "validation_file", "test_file"):
        folder = Path(run_args.get(flag) or "").parent.as_posix()
        found = [t for t in TASKS.values() if t.kind == kind and folder.endswith(t.data)]
        if found:
            return next((t for t in found if t.benchmark.endswith("few-shot") == fewshot), found[0])
    return None


def paper_number(info, base_model: str, out: Path) -> Optional[str]:
    """The paper's number for this task and model, as printed there. The model is named by the base
    model, else (as collect_results.py does) by the run folder: runs/<task>/<model>[/seed<N>]."""
    module = collect_results_module()
    if info is None or module is None:
        return None
    for name in (Path(base_model.rstrip("/")).name, out.name, out.parent.name):
        row = module.paper_model(name)
        if row is not None:
            return module.PAPER.get(row, {}).get(info.name)
    return None


def command(task_name: str, argv: list[str]) -> str:
    """The command that made the folder (the recorded argv; a token is recorded hidden)."""
    from linkbert.tasks import MODULES

    modules = {**MODULES, "pretrain": "linkbert.pretrain.run_pretrain"}
    module = modules.get(KIND.get(task_name, task_name), f"linkbert.{task_name}")
    args = argv[1:] if argv and argv[0].endswith(".py") else argv
    return f"python -m {module} {shlex.join(str(a) for a in args)}"


def is_hub_id(name: str) -> bool:
    from .hub import looks_like_path

    return bool(name) and not Path(name).expanduser().exists() and not looks_like_path(name)


def eval_results(task_name: str, dataset: tuple[str, str], scores: dict) -> list:
    from huggingface_hub import EvalResult

    dataset_type, dataset_name = dataset
    return [EvalResult(task_type=PIPELINE.get(task_name, task_name), dataset_type=dataset_type,
                       dataset_name=dataset_name, dataset_split=split, metric_type=metric, metric_value=value,
                       metric_name=metric)
            for (split, metric), value in scores.items()]


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _scores_section(scores: dict, info, paper: Optional[str]) -> str:
    if not scores:
        return "No dev or test scores in this folder (a training-only run)."
    rows = [(split, metric, value) for (split, metric), value in scores.items()]
    text = _table(rows, ("split", "metric", "value"))
    if info is not None:
        ours = scores.get(("test", info.metric))
        shown = None if ours is None else round(ours if info.percent else 100 * ours, 2)
        text += (f"\n\nThe paper's number (Yasunaga et al., ACL 2022) for {info.label}, test {info.metric}, in percent: "
                 f"{paper if paper is not None else 'none for this model'}; this run: "
                 f"{shown if shown is not None else 'no test score'}.")
    return text


def _software_section(env: dict, lock: dict) -> str:
    rows = [(name, env.get(name)) for name in ("python", "torch", "transformers", "datasets", "cuda", "device",
                                               "git_commit")]
    rows += [("lock", lock.get("lock")), ("lock sha256", lock.get("sha256")),
             ("differences from the lock", "; ".join(lock.get("drift") or []) or
              ("none" if lock.get("drift") is not None else None))]
    return _table(rows, ("", ""))


def card_body(title: str, sections: list[tuple[str, str]]) -> str:
    return f"# {title}\n\n" + "\n\n".join(f"## {name}\n\n{text}" for name, text in sections) + "\n"


def build_card(out: str | Path, task_name: str, task_flags: tuple[str, ...] = ()):
    """The folder's ModelCard, from its files."""
    from huggingface_hub import ModelCard, ModelCardData

    from linkbert.env import lock_record

    out = Path(out)
    run_args = read_json_or_none(out / "run_args.json") or {}
    env = read_json_or_none(out / "env.json") or {}
    base = str(run_args.get("model_name_or_path") or "")
    info = registry_task(task_name, out, run_args)
    pretraining = task_name == "pretrain"
    if pretraining:
        corpus = str(run_args.get("corpus_file") or "")
        dataset = (Path(corpus).stem or "corpus", f"linked corpus {Path(corpus).name}")
    else:
        dataset = (info.name, info.label) if info else (Path(str(run_args.get("train_file") or run_args.get(
            "test_file") or run_args.get("validation_file") or "data")).parent.name, "local data")
    scores = folder_scores(out)
    data = ModelCardData(
        base_model=base if is_hub_id(base) and not run_args.get("from_scratch") else None,
        library_name="transformers", pipeline_tag=PIPELINE.get(task_name), tags=["linkbert", task_name],
        model_name=out.name, eval_results=eval_results(task_name, dataset, scores) or None)
    hyper = [(k, run_args.get(k)) for k in (*HYPER_PARAMETERS, *task_flags) if k in run_args]
    what = (f"pretrained (MLM + document relation prediction) from `{base}`" if pretraining else
            f"`{base}` fine-tuned on {info.label + ' (' + info.benchmark + ')' if info else 'local data'}")
    sections = [("Model", f"{what}, with the `linkbert` reproduction of LinkBERT's code.\n\n" + _table(
        [("base model", base), ("task", task_name), ("dataset", f"{dataset[1]} (`{dataset[0]}`)")] +
        [(f"{split} file", f"{f['path']} (sha256 {f['sha256']})") for split, f in (env.get("data_files") or {}).items()],
        ("", "")))]
    if pretraining:
        identity = read_json_or_none(out / "run_identity.json") or {}
        settings = [(k, run_args.get(k)) for k in PRETRAIN_SETTINGS] + [("corpus sha256", identity.get("train_sha256"))]
        sections.append(("Pretraining", "Corpus and relation settings (contiguous, random, linked segment B):\n\n"
                         + _table(settings, ("setting", "value"))))
    sections += [("Results", _scores_section(scores, info, paper_number(info, base, out))),
                 ("Hyper-parameters", _table(hyper, ("argument", "value"))),
                 ("Command", f"```bash\n{command(task_name, run_args.get('argv') or [])}\n```"),
                 ("Software", _software_section(env, lock_record())),
                 ("Citation", f"```bibtex\n{CITATION}\n```")]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + card_body(out.name, sections))


def write_card(out: str | Path, task_name: str, task_flags: tuple[str, ...] = ()) -> Path:
    """Write the folder's card (atomically) and return its path."""
    path = Path(out) / CARD
    write_text(path, str(build_card(out, task_name, task_flags)))
    return path


def finish_run(task, folder, repo_id: Optional[str]) -> None:
    """Where a run has finished (every result file written): rank 0 writes the card through the
    run folder (so --overwrite_output_dir knows it as a run file), then pushes."""
    from dataclasses import fields

    from .push import push

    if not folder.is_main:
        return
    folder.write_text(CARD, str(build_card(folder.path, task.name, tuple(f.name for f in fields(task.arguments)))))
    if repo_id is not None:
        push(folder.path, task.training_args, repo_id)
