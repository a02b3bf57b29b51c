"""A run owns its output folder: nothing of another run is lost, mixed in or resumed from.

`RunFolder` (end of this file), created once per run, is the only code that locks, opens (fresh,
resume, finished or refused), sets aside, writes into and scans a run folder; the engine and the
tasks are handed one. No torch at import (the launcher imports this module).

- A run folder is recognised, never assumed: a folder that is a repository (it has a .git, or is
  or holds the current one) or that holds the run's inputs (its data files; for a training run,
  the model it starts from) is refused before anything is written. Every name a run writes is
  recorded in `.linkbert-files.json`; --overwrite_output_dir and `launch prune` touch only those
  (and, for folders of older versions, the names this project writes), naming what they leave.
- A lock file (`.linkbert-run.lock`, naming pid, host and start time) is held for the run's
  whole life; a second run into the folder is refused; the lock of a dead process on this host
  is recognised as stale and taken over.
- `--overwrite_output_dir` on a training run sets the previous run's files aside, moved (never
  deleted) into `previous_runs/<UTC time>/`, where neither a resume, the checkpoint rotation nor
  `collect_results.py` reads them. The move happens only once every check has passed, so a run
  that fails leaves the folder as it found it. Only the user deletes them
  (`python -m linkbert.launch prune`, `previous_runs_to_prune`).
- Provenance per phase: a training run writes `run_args.json`/`env.json`; an evaluation or
  prediction-only run into a folder whose record is another phase's writes
  `evaluate_run_args.json`/`evaluate_env.json` instead, and it refuses to replace existing
  results without `--overwrite_output_dir`.
- Run identity: the arguments that determine the trained weights, the task, the label list and
  the model's shape. Every checkpoint carries it (`run_identity.json`); a resume compares it
  first and refuses another run's checkpoint in one line naming the difference; rotation deletes
  only checkpoints of the current run.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import logging
import os
import shlex
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import IO, Callable, Optional

from .errors import UserError
from .results import share_as_umask

logger = logging.getLogger("linkbert")

LOCK_FILE = ".linkbert-run.lock"
LOG_FILE = "log.txt"  # the run's output, as the run scripts and the launcher write it
LAUNCH_RECORD_FILE = "launch.json"  # the launcher's record of the run's attempts (linkbert.launch)
LAUNCH_LOCK_FILE = ".linkbert-launch.lock"  # held by the launcher process of a run's attempt
PREVIOUS_RUNS_DIR = "previous_runs"
IDENTITY_FILE = "run_identity.json"
# The names a run wrote into its folder (a JSON list): what --overwrite_output_dir may set aside
# and `launch prune` may delete. In a set-aside folder it lists what was moved there.
MANIFEST_FILE = ".linkbert-files.json"
# Neither part of a run's results nor set aside: the run script tees its log into log.txt while
# the run starts (moving it would move the file being written); launch.json is the launcher's
# record of the run's attempts (linkbert.launch), which a resumed attempt continues.
KEPT_IN_PLACE = {LOG_FILE, LAUNCH_RECORD_FILE, LOCK_FILE, LAUNCH_LOCK_FILE, PREVIOUS_RUNS_DIR, MANIFEST_FILE}
# What this project writes into a run folder, for folders written before the manifest existed:
# results, predictions, provenance, the saved model and tokenizer, checkpoints.
RUN_FILE_PATTERNS = (
    "*results.json", "*_predictions.jsonl", "*_predictions.json", "*nbest_predictions.json", "*run_args.json",
    "*env.json", "trainer_state.json", IDENTITY_FILE, "checkpoint-*", ".tmp-checkpoint-*", "best_model",
    "model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
)  # not `runs`/`wandb` (a reporter's folders): too common a name for a folder of one's own; the manifest has them

# Arguments that do not change the trained weights: a resume may differ in them.
NOT_IDENTITY = {
    "output_dir", "overwrite_output_dir", "do_eval", "do_predict", "validation_file", "test_file",
    "max_eval_samples", "max_predict_samples", "per_device_eval_batch_size", "evaluation_strategy",
    "eval_strategy", "eval_steps", "logging_steps", "logging_first_step", "save_strategy", "save_steps",
    "save_total_limit", "resume_from_checkpoint", "load_best_model_at_end", "metric_for_best_model",
    "greater_is_better", "report_to", "run_name", "logging_dir", "disable_tqdm", "dataloader_num_workers",
    "preprocessing_num_workers", "overwrite_cache", "cache_dir", "use_auth_token", "local_rank",
    "fp16_opt_level", "tf32", "use_cpu", "no_cuda", "torch_compile", "allow_untrained_head",
    "push_to_hub", "hub_model_id", "hub_private_repo", "hub_token", "hub_strategy",
    # task flags that only change scoring or post-processing
    "metric_name", "return_macro_metrics", "return_entity_level_metrics", "n_best_size",
    "max_answer_length", "save_nbest", "null_score_diff_threshold", "task_name",
}
MODEL_SHAPE_KEYS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size")


# -- the lock -------------------------------------------------------------------------------
def pid_alive(pid: Optional[int]) -> bool:
    """Whether a process of this machine is running (a pid of 0 or none: no)."""
    if not pid or not isinstance(pid, int) or pid < 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def lock_holder(folder: str | Path, name: str = LOCK_FILE) -> Optional[dict]:
    """Who holds a folder's lock, when a live process does ({pid, host, started}); None when no
    one does (no lock, or the lock of a dead process on this host)."""
    try:
        holder = json.loads((Path(folder) / name).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"pid": None, "host": None, "started": None}  # unreadable: being written, or damaged
    if not isinstance(holder, dict):
        return {"pid": None, "host": None, "started": None}
    if holder.get("host") == socket.gethostname() and not pid_alive(holder.get("pid")):
        return None
    return holder


class RunLock:
    """`with RunLock(folder):` holds the folder's lock (created atomically) for the block."""

    def __init__(self, folder: str | Path, name: str = LOCK_FILE) -> None:
        self.path = Path(folder) / name
        self.held = self.created = False

    def acquire(self) -> "RunLock":
        try:
            return self._acquire()
        except OSError as e:
            raise UserError("output_dir_not_writable", f"cannot be created or written ({e.strerror}); choose "
                            "another --output_dir", path=self.path.parent) from None

    def _acquire(self) -> "RunLock":
        self.created = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                other = self._read_holder()
                if other and other.get("host") == holder["host"] and not pid_alive(other.get("pid")):
                    logger.warning("%s: stale lock of process %s (no longer running) taken over",
                                   self.path, other.get("pid"))
                    self.path.unlink(missing_ok=True)
                    continue
                who = (f"process {other.get('pid')} on {other.get('host')}, started {other.get('started')}"
                       if other else "an unreadable lock file")
                raise UserError("output_dir_locked", f"another run is using this folder ({who}); wait for it, "
                                f"choose another --output_dir, or delete {LOCK_FILE} if that run is dead",
                                path=self.path.parent) from None
            with os.fdopen(fd, "w") as f:
                json.dump(holder, f)
            self.held = True
            return self
        raise UserError("output_dir_locked", f"could not take the lock {self.path}", path=self.path.parent)

    def _read_holder(self) -> Optional[dict]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
            if self.created:  # a run that wrote nothing leaves no folder behind
                try:
                    self.path.parent.rmdir()
                except OSError:
                    pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# -- the launcher's record and the run's log ------------------------------------------------------
def read_launch_record(output_dir: str | Path) -> dict:
    try:
        return json.loads((Path(output_dir) / LAUNCH_RECORD_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_launch_record(output_dir: str | Path, **fields) -> dict:
    """Merge `fields` into the run's launch.json (atomically: a temporary file, then a rename)."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state = {**read_launch_record(folder), **fields, "updated": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = folder / f".{LAUNCH_RECORD_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    tmp.replace(folder / LAUNCH_RECORD_FILE)
    return state


def open_log(output_dir: str | Path, append: bool) -> IO[bytes]:
    """The run's log.txt for the launcher to write the run's output into: added to, or started
    afresh (a fresh start of the run)."""
    return open(Path(output_dir) / LOG_FILE, "ab" if append else "wb")  # noqa: SIM115 (closed by the caller)


def last_log_line(output_dir: str | Path) -> str:
    """The last non-empty line of the run's log (what a failure said last)."""
    try:
        with open(Path(output_dir) / LOG_FILE, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.rsplit("\r", 1)[-1].strip() for line in tail.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else ""


# -- what a run may write into a folder -----------------------------------------------------
def phase(args) -> str:
    return "train" if args.do_train else "evaluate"


def result_names(args) -> list[str]:
    """The result files an evaluation/prediction-only run writes."""
    prefixes = [p for p, on in (("eval", args.do_eval), ("predict", args.do_predict)) if on]
    return [f"{p}_{kind}" for p in prefixes for kind in ("results.json", "predictions.jsonl")]


def provenance_names(output_dir: str | Path, args) -> tuple[str, str]:
    """(run_args file, env file) for this run: the folder's own record, unless that record is
    another phase's (a prediction-only run into a training folder keeps the training record)."""
    current = Path(output_dir) / "run_args.json"
    mine = phase(args)
    if current.exists():
        try:
            recorded = json.loads(current.read_text()).get("phase", "train")
        except (OSError, ValueError, AttributeError):
            recorded = "unknown"
        if recorded != mine:
            return f"{mine}_run_args.json", f"{mine}_env.json"
    return "run_args.json", "env.json"


def check_results_not_replaced(output_dir: str | Path, args) -> None:
    """An evaluation/prediction-only run never replaces existing results silently."""
    if args.do_train or args.overwrite_output_dir:
        return
    found = [n for n in result_names(args) if (Path(output_dir) / n).exists()]
    if found:
        raise UserError("results_exist", f"already holds {', '.join(found)} of an earlier run; add "
                        "--overwrite_output_dir to set them aside (moved to previous_runs/) and write new ones, "
                        "or choose another --output_dir", path=output_dir)


def _is_nested_run(path: Path) -> bool:
    """A folder of its own run inside this one (e.g. the run scripts' seed<N>/): not ours to move."""
    return path.is_dir() and not path.is_symlink() and any((path / n).exists() for n in ("run_args.json", LOCK_FILE))


# -- which folders may be run folders, and which of their files a run wrote -------------------------
def _repository_root(start: Path) -> Optional[Path]:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def refuse_unsafe_folder(output_dir: str | Path, inputs: dict[str, str]) -> None:
    """A folder that is a repository (it has a .git, or it is or holds the current repository),
    or that holds one of the run's inputs (`inputs`: flag -> path), is never a run folder: a run
    would mix its files with them and --overwrite_output_dir would set them aside. Refused
    before anything is written."""
    out = Path(output_dir).resolve()
    repository = _repository_root(Path.cwd().resolve())
    if (out / ".git").exists() or (repository is not None and (out == repository or out in repository.parents)):
        raise UserError("output_dir_unsafe", "is a repository (it has a .git, or holds the current one), not a "
                        "run folder; give --output_dir a folder of its own, e.g. runs/NAME", path=output_dir)
    for flag, value in inputs.items():
        path = Path(value).resolve()
        if path == out or out in path.parents:
            raise UserError("output_dir_unsafe", f"holds this run's input ({flag} {value}); give --output_dir a "
                            "folder of its own, e.g. runs/NAME", path=output_dir)


def _manifest(folder: Path) -> list[str]:
    try:
        names = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def record_written(folder: str | Path, names: list[str]) -> None:
    """Add `names` (entries directly in `folder`) to the folder's manifest of what a run wrote."""
    folder = Path(folder)
    known = _manifest(folder)
    added = [n for n in names if n not in known and n not in KEPT_IN_PLACE]
    if added:
        tmp = folder / f".{MANIFEST_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(known + added) + "\n")
        os.replace(tmp, folder / MANIFEST_FILE)


def written_by_a_run(name: str, manifest: list[str]) -> bool:
    return name in manifest or any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_FILE_PATTERNS)


def run_entries(output_dir: str | Path) -> tuple[list[Path], list[Path]]:
    """(what a run wrote into the folder, what else is there), neither holding the files kept in
    place (log, launcher record, lock, previous_runs/) nor a run folder of its own inside it."""
    out = Path(output_dir)
    manifest = _manifest(out)
    ours: list[Path] = []
    others: list[Path] = []
    for p in sorted(out.iterdir()):
        if p.name in KEPT_IN_PLACE or _is_nested_run(p):
            continue
        (ours if written_by_a_run(p.name, manifest) else others).append(p)
    return ours, others


def set_aside(output_dir: str | Path, names: Optional[list[str]] = None, keep: frozenset[Path] = frozenset(),
              copy: tuple[str, ...] = ()) -> Optional[Path]:
    """Move what a previous run wrote (all of it, or only `names`, never `keep`) into
    previous_runs/<UTC time>/, whose manifest then lists what was moved; the files `copy` go there
    as copies. Anything else in the folder stays where it is and is named in one line. Returns
    that folder, or None if nothing moved."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    ours, others = run_entries(out)
    if names is not None:
        ours = [p for p in ours if p.name in names]
    entries = [p for p in ours if p.resolve() not in keep]
    if others and names is None:
        logger.warning("--overwrite_output_dir: left in place, not written by a run: %s",
                       ", ".join(p.name for p in others))
    if not entries:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = out / PREVIOUS_RUNS_DIR / stamp
    n = 1
    while target.exists():
        n += 1
        target = out / PREVIOUS_RUNS_DIR / f"{stamp}-{n}"
    target.mkdir(parents=True)
    copied = [out / n for n in copy if (out / n).is_file()]
    if names is None and (out / MANIFEST_FILE).exists():  # the whole run moves: its manifest with it
        entries.append(out / MANIFEST_FILE)
    else:
        record_written(target, [p.name for p in entries + copied])
    for p in copied:
        shutil.copy2(p, target / p.name)
    for p in entries:
        os.replace(p, target / p.name)
    logger.warning("--overwrite_output_dir: the previous run's files (%d) were moved to %s (nothing deleted; "
                   "`python -m linkbert.launch prune %s --keep N` deletes all but the newest N)",
                   len(entries), target, out)
    return target


def _set_aside_order(folder: Path) -> tuple[str, int]:
    # <stamp> before <stamp>-2 before <stamp>-10 (several set aside within one second)
    stamp, _, n = folder.name.partition("-")
    return stamp, int(n) if n.isdigit() else 1


def previous_runs_to_prune(root: str | Path, keep: int) -> list[Path]:
    """In every previous_runs/ folder under `root`, the set-aside runs older than the newest `keep`."""
    old: list[Path] = []
    for folder in sorted(Path(root).rglob(PREVIOUS_RUNS_DIR)):
        if folder.is_dir() and not folder.is_symlink():
            runs = sorted((p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()), key=_set_aside_order)
            old += runs[:max(len(runs) - keep, 0)]
    return old


def prune_set_aside(folder: Path, dry_run: bool = False) -> tuple[int, list[str]]:
    """Delete what a run wrote in one set-aside folder (and the folder, once empty). Returns the
    bytes freed and the names left because no run wrote them (set aside by an older version)."""
    manifest = _manifest(folder)
    ours = [p for p in folder.iterdir() if written_by_a_run(p.name, manifest)]
    others = sorted(p.name for p in folder.iterdir() if p not in ours and p.name != MANIFEST_FILE)
    size = sum(p.stat().st_size if not p.is_dir() or p.is_symlink() else folder_bytes(p) for p in ours)
    if not dry_run:
        for p in ours:
            remove_entry(p)
        if not others:
            (folder / MANIFEST_FILE).unlink(missing_ok=True)
            folder.rmdir()
    return size, others


def remove_entry(path: Path) -> None:
    """Delete a file or a folder (a link is unlinked, never followed)."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


# -- run identity ---------------------------------------------------------------------------
def run_identity(task, arguments: dict, model, world_size: int, train_sha256: Optional[str]) -> dict:
    """What makes two training runs the same run (JSON-able, compared key by key)."""
    config = model.config
    return {
        "task": task.name,
        "head": type(model).__name__,
        "labels": {str(k): v for k, v in sorted((getattr(config, "id2label", None) or {}).items())},
        "problem_type": getattr(config, "problem_type", None),
        "model_shape": {k: getattr(config, k, None) for k in MODEL_SHAPE_KEYS},
        "arguments": {k: v for k, v in sorted(arguments.items()) if k not in NOT_IDENTITY},
        "processes": world_size,
        "train_sha256": train_sha256,
    }


def identity_difference(expected: dict, found: dict) -> Optional[str]:
    """The first difference between two identities, in words; None if they are the same."""
    expected, found = json.loads(json.dumps(expected, default=str)), json.loads(json.dumps(found, default=str))
    for key in [*expected, *(k for k in found if k not in expected)]:  # task and labels first
        a, b = expected.get(key), found.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(a.keys() | b.keys()):
                if a.get(sub) != b.get(sub):
                    return f"{key} {sub}: this run has {a.get(sub)!r}, the checkpoint {b.get(sub)!r}"
        return f"{key}: this run has {a!r}, the checkpoint {b!r}"
    return None


def write_identity(folder: str | Path, identity: Optional[dict]) -> None:
    if identity is not None:
        from .results import write_json

        write_json(Path(folder) / IDENTITY_FILE, identity)


def read_identity(folder: str | Path) -> Optional[dict]:
    try:
        return json.loads((Path(folder) / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return None


def is_own_checkpoint(folder: str | Path, identity: Optional[dict]) -> bool:
    """Whether a checkpoint belongs to this run (rotation deletes only those)."""
    return identity is None or identity_difference(identity, read_identity(folder) or {}) is None


def check_resume(folder: str | Path, identity: dict, model, state_fields: set[str], max_steps: int = -1) -> None:
    """Everything a resume will load, checked before anything is written: the run identity
    first, then each file whole and of the right shape (the AdamW moments of each parameter), and
    the update it holds within the run's. Any problem is one `bad_checkpoint` line."""
    folder = Path(folder)

    def bad(what: str) -> UserError:
        return UserError("bad_checkpoint", f"{what}; give another --resume_from_checkpoint, or start afresh "
                         "with --overwrite_output_dir", path=folder)

    found = read_identity(folder)
    if found is None:
        raise bad(f"has no readable {IDENTITY_FILE}, so it cannot be shown to belong to this run")
    difference = identity_difference(identity, found)
    if difference:
        raise bad(f"belongs to another run ({difference})")
    check_weights(folder / "model.safetensors", model, bad)
    _check_optimizer_moments(_check_state_files(folder, bad)["optimizer.pt"], model, bad)
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError) as e:
        raise bad(f"trainer_state.json is unreadable or truncated ({e})") from None
    if not isinstance(state, dict):
        raise bad("trainer_state.json is not an object")
    unknown = sorted(state.keys() - state_fields)
    if unknown:
        raise bad(f"trainer_state.json has unknown key(s) {', '.join(unknown)}")
    step = state.get("global_step")
    if not isinstance(step, int) or step < 0 or (max_steps > 0 and step > max_steps):
        raise bad(f"trainer_state.json is at update {step!r}, not one of this run's 0-{max_steps if max_steps > 0 else 'N'}")


def _check_optimizer_moments(saved: dict, model, bad) -> None:
    """Each AdamW moment is shaped as the parameter it belongs to (numbered in the optimizer's
    group order, or named: FSDP2): an optimizer.pt of another model is refused, not loaded."""
    from .optim import named_parameter_groups

    in_order = [named for group in named_parameter_groups(model) for named in group]
    by_name = dict(in_order)
    state = saved.get("state")
    if not isinstance(state, dict):
        raise bad("optimizer.pt holds no optimizer state")
    for key, moments in state.items():
        name, param = (key, by_name.get(key)) if isinstance(key, str) else (
            in_order[key] if isinstance(key, int) and 0 <= key < len(in_order) else (key, None))
        if param is None:
            raise bad(f"optimizer.pt holds moments for parameter {key!r}, which this model does not have "
                      f"({len(in_order)} parameters): it was written for another model")
        for moment, value in (moments.items() if isinstance(moments, dict) else ()):
            shape = tuple(getattr(value, "shape", ()))
            if moment.startswith("exp_avg") and shape != tuple(param.shape):
                raise bad(f"optimizer.pt: {moment} of {name} is shaped {shape}, the parameter {tuple(param.shape)}: "
                          "it was written for another model")


def _check_state_files(folder: Path, bad) -> dict[str, dict]:
    """Each torch file of a checkpoint loads (weights only) and holds a dictionary; returns them."""
    import torch

    loaded: dict[str, dict] = {}
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pt", "scaler.pt", "pending_grads.pt"):
        path = folder / name
        if name in ("scaler.pt", "pending_grads.pt") and not path.exists():
            continue
        try:
            value = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as e:  # noqa: BLE001 (truncated, empty, a blocked pickle: torch raises many kinds)
            detail = str(e).splitlines()[0][:120] if str(e) else "empty"
            raise bad(f"{name} cannot be loaded ({type(e).__name__}: {detail})") from None
        if not isinstance(value, dict):
            raise bad(f"{name} holds a {type(value).__name__}, not a state dictionary")
        loaded[name] = value
    return loaded


def check_weights(path: Path, model, bad) -> dict:
    """The tensors of a saved model, checked to be exactly the model's (names and shapes)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise bad(f"{path.name} is unreadable or truncated ({str(e).splitlines()[0][:120]})") from None
    state = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    # Tied weights (an MLM decoder tied to the word embeddings) are saved once, under one name.
    saved_storage = {state[k].data_ptr() for k in state.keys() & weights.keys()}
    missing = sorted(k for k in expected.keys() - weights.keys() if state[k].data_ptr() not in saved_storage)
    unexpected = sorted(weights.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & weights.keys() if tuple(weights[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("lacks", missing), ("has unknown", unexpected), ("has wrong shapes of", wrong))
                 if keys]
        raise bad(f"{path.name} {'; '.join(parts)}")
    return weights


def finished_training(output_dir: str | Path, identity: dict) -> bool:
    """Whether the folder holds this run's finished training (model, results and identity):
    a rerun then evaluates that model instead of training again. Another run's is an error."""
    out = Path(output_dir)
    if not ((out / "train_results.json").exists() and (out / "model.safetensors").exists()
            and (out / IDENTITY_FILE).exists()):
        return False
    difference = identity_difference(identity, read_identity(out) or {})
    if difference:
        raise UserError("output_dir_not_empty", f"holds the finished training of another run ({difference}); add "
                        "--overwrite_output_dir to set it aside and train afresh, or choose another --output_dir",
                        path=out)
    return True


def remove_stale_temporaries(output_dir: str | Path) -> None:
    """Temporary checkpoint folders of a killed run are removed (a link is unlinked, never followed)."""
    for p in Path(output_dir).glob(".tmp-checkpoint-*"):
        if p.is_symlink() or not p.is_dir():
            p.unlink(missing_ok=True)
        else:
            shutil.rmtree(p, ignore_errors=True)


# How the writers below Python say "no space": safetensors quotes the OS error; torch.save's C++
# stream writer only says that its stream failed, so for those the disk's free space decides.
NO_SPACE_WORDS = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")
STREAM_FAILED_WORDS = ("basic_ios::clear", "unexpected pos", "PytorchStreamWriter failed")
NEARLY_FULL = 64 * 2**20  # bytes free on the disk when a stream write failed for want of space


def is_disk_full(e: BaseException, folder: Optional[Path] = None) -> bool:
    """Whether a failed write failed for want of space; call it before removing what was being
    written (a half-written file holds the last free bytes)."""
    if e.__cause__ is not None or e.__context__ is not None:  # a library's error about a failed write
        inner = e.__cause__ or e.__context__
        if inner is not e and inner is not None and is_disk_full(inner, folder):
            return True
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    if any(words in text for words in NO_SPACE_WORDS):
        return True
    if folder is None or not any(words in text for words in STREAM_FAILED_WORDS):
        return False
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL
    except OSError:
        return False


# -- checkpoints (what a resume reads; the engine writes them through `RunFolder`) ------------
CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
NEEDED_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", STATE_FILE, "rng_state.pt")
# In a checkpoint written only for the run to resume from (a SIGTERM/SIGINT stop between the
# checkpoints --save_strategy asks for): the run removes it once it finished.
RESUME_ONLY_FILE = ".linkbert-resume-only"


def sorted_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints (renamed into place only once written), oldest first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir()
             and p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def check_checkpoint(path: str | Path) -> Path:
    folder = Path(path)
    missing = [f for f in NEEDED_FILES if not (folder / f).exists()]
    if missing:
        raise UserError("bad_checkpoint", f"not a complete checkpoint (missing {', '.join(missing)}); "
                        "give another checkpoint or start without --resume_from_checkpoint", path=path)
    return folder


def temporary_folder(folder: Path) -> Path:
    """A fresh temporary folder beside `folder`: created, never reused (an existing one could be
    a planted link, followed to write elsewhere)."""
    return Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))


def is_resume_only(checkpoint: Path) -> bool:
    """Whether a checkpoint was written only for the run to resume from (by a signal's stop),
    not because --save_strategy asked for it."""
    return (checkpoint / RESUME_ONLY_FILE).exists()


def rotate_checkpoints(output_dir: str | Path, limit: Optional[int], keep_also: Optional[str] = None,
                       identity: Optional[dict] = None) -> None:
    """Delete all but the newest `limit` checkpoints --save_strategy wrote for this run, as HF's
    --save_total_limit (and keep `keep_also`, the best model's folder); a checkpoint written only
    to resume from goes once a newer one exists. Another run's checkpoints (another `identity`)
    are not ours to delete."""
    checkpoints = [c for c in sorted_checkpoints(output_dir) if is_own_checkpoint(c, identity)]
    scheduled = [c for c in checkpoints if not is_resume_only(c)]
    keep = set(checkpoints[-1:]) | set(scheduled[-limit:] if limit and limit > 0 else scheduled)
    if keep_also:
        keep.add(Path(keep_also))
    for old in checkpoints:
        if old not in keep:
            shutil.rmtree(old, ignore_errors=True)


def disk_use(output_dir: str | Path) -> str:
    """One line: what the run folder holds (its checkpoints among it) and what its previous_runs/
    holds, with the command that frees the latter."""
    out = Path(output_dir)
    aside = out / PREVIOUS_RUNS_DIR
    runs = [p for p in aside.iterdir() if p.is_dir()] if aside.is_dir() and not aside.is_symlink() else []
    aside_bytes = folder_bytes(aside) if runs else 0
    checkpoints = sorted_checkpoints(out)
    line = (f"Disk: {out} holds {mib(folder_bytes(out) - aside_bytes)} ({len(checkpoints)} checkpoint(s): "
            f"{mib(sum(folder_bytes(c) for c in checkpoints))})")
    if not runs:
        return line + f"; nothing set aside in {PREVIOUS_RUNS_DIR}/"
    return line + (f"; {PREVIOUS_RUNS_DIR}/ holds {mib(aside_bytes)} more ({len(runs)} set-aside run(s); "
                   f"`python -m linkbert.launch prune {shlex.quote(str(out))} --keep 0` deletes them)")


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def disk_full(what: str, need_mib: int, folder: Path) -> UserError:
    """The one message of a full disk: what could not be written, and what a rerun resumes from."""
    last = sorted_checkpoints(folder)
    return UserError("disk_full", f"no space left to write {what} (about {need_mib} MiB needed); what was being "
                     "written was removed. Free space and rerun the same command: it resumes from "
                     f"{last[-1].name if last else 'the start (no checkpoint yet)'}", path=folder)


# -- the run folder --------------------------------------------------------------------------
def probe_writable(folder: Path) -> None:
    """Create the folder if need be, then write and remove a file in it; `OSError` if it cannot
    (the output folder and the datasets cache are checked so, before any work)."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-test-{os.getpid()}"
    probe.write_text("")
    probe.unlink()


class RunFolder:
    """A run's output folder, created once per run: the only code that locks it, decides what a
    run does with it (fresh, resume, finished, refuse), sets a previous run aside, writes into it
    (recording each name in its manifest) and scans it. The engine and the tasks are given one and
    never see its path. Writes are rank 0's (`is_main`); the other ranks' are no-ops."""

    def __init__(self, path: str | Path, is_main: bool = True) -> None:
        self.path = Path(path)
        self.is_main = is_main
        self.lock = RunLock(self.path)

    @classmethod
    def for_args(cls, args, is_main: bool = True) -> "RunFolder":
        """The run folder the parsed arguments name (--output_dir)."""
        return cls(args.output_dir, is_main)

    def __str__(self) -> str:
        return str(self.path)

    # -- opening: every check before anything is written ---------------------------------
    def open(self, args, inputs: dict[str, str]) -> Optional[str]:
        """Refuse a folder that is not a run's, take the lock, apply the original's rules:
        training into a non-empty folder without --overwrite_output_dir resumes from its last
        checkpoint if it has one, and is refused otherwise. Returns the checkpoint to resume from."""
        refuse_unsafe_folder(self.path, inputs)
        self.lock.acquire()
        out, resume = self.path, args.resume_from_checkpoint
        if args.do_train and out.is_dir() and not args.overwrite_output_dir and not resume:
            contents = [p for p in out.iterdir() if p.name not in KEPT_IN_PLACE]
            checkpoints = sorted_checkpoints(out)
            if checkpoints:
                resume = str(checkpoints[-1])
                logger.info("%s holds checkpoints and --overwrite_output_dir is not given: resuming from %s",
                            out, resume)
            elif contents and not (out / IDENTITY_FILE).exists():  # a finished run (checked later) reruns
                raise UserError("output_dir_not_empty", "is not empty and holds no checkpoint; add "
                                "--overwrite_output_dir to write over it, or choose another --output_dir", path=out)
        self._check_writable()
        if resume and args.do_train:
            check_checkpoint(resume)
        check_results_not_replaced(out, args)
        return resume

    def _check_writable(self) -> None:
        try:
            probe_writable(self.path)
        except OSError as e:
            raise UserError("output_dir_not_writable", f"cannot be written ({e.strerror}); choose another "
                            "--output_dir", path=self.path) from None

    def close(self) -> None:
        self.lock.release()

    def finished_training(self, args, identity: dict) -> bool:
        """Whether this training run is a rerun of the finished training the folder holds: it then
        evaluates that model instead of training again. Not with --overwrite_output_dir (set
        aside, trained afresh) nor --resume_from_checkpoint (resumed from that checkpoint)."""
        return bool(args.do_train and not args.overwrite_output_dir and not args.resume_from_checkpoint
                    and finished_training(self.path, identity))

    def finished_weights(self, model) -> dict:
        """The finished training's weights, checked to be exactly the model's."""
        return check_weights(self.path / "model.safetensors", model, lambda what: UserError(
            "bad_checkpoint", f"{what}; rerun with --overwrite_output_dir to train afresh", path=self.path))

    # -- starting: the first writes --------------------------------------------------------
    def start(self, args, resume: Optional[str], run_args: dict, env: dict) -> None:
        """Set the previous run's files aside (--overwrite_output_dir), then write the provenance
        of this phase."""
        if not self.is_main:
            return
        run_args_name, env_name = provenance_names(self.path, args)
        if args.overwrite_output_dir:
            if args.do_train:
                set_aside(self.path, keep=frozenset({Path(resume).resolve()}) if resume else frozenset())
            else:
                from .results import drop_metrics

                prefixes = [p for p, on in (("eval", args.do_eval), ("predict", args.do_predict)) if on]
                if set_aside(self.path, [*result_names(args), run_args_name, env_name], copy=("all_results.json",)):
                    for prefix in prefixes:  # their results went aside: all_results.json must not show them
                        drop_metrics(self.path, prefix)
        remove_stale_temporaries(self.path)
        self.write_json(run_args_name, run_args)
        self.write_json(env_name, env)

    # -- writing ----------------------------------------------------------------------------
    def record(self, *names: str) -> None:
        if self.is_main:
            record_written(self.path, list(names))

    def write_json(self, name: str, obj) -> None:
        from .results import write_json

        if self.is_main:
            write_json(self.path / name, obj)
            self.record(name)

    def write_jsonl(self, name: str, records) -> None:
        from .results import write_jsonl

        if self.is_main:
            write_jsonl(self.path / name, records)
            self.record(name)

    def write_text(self, name: str, text: str) -> None:
        from .results import write_text

        if self.is_main:
            write_text(self.path / name, text)
            self.record(name)

    def read_json(self, name: str):
        from .results import read_json

        return read_json(self.path / name)

    def save_metrics(self, prefix: str, metrics: dict, record: dict) -> None:
        from .results import save_metrics

        if self.is_main:
            save_metrics(self.path, prefix, metrics, record)
            self.record(f"{prefix}_results.json", "all_results.json")

    def write_model(self, save: Callable[[Path], None], what: str, need_mib: int, into: str = "") -> Path:
        """`save(path)` writes a model folder (every rank takes part) into the run folder itself,
        or its subfolder `into`; a full disk is the one `disk_full` error."""
        target = self.path / into if into else self.path
        before = set(os.listdir(self.path)) if self.is_main else set()
        try:
            save(target)
        except Exception as e:
            if not is_disk_full(e, self.path):
                raise
            if self.is_main:  # what this write added (a lone config.json): a half model is no model
                for name in set(os.listdir(self.path)) - before:
                    remove_entry(self.path / name)
            raise disk_full(what, need_mib, self.path) from None
        if self.is_main:
            self.record(*([into] if into else sorted(set(os.listdir(self.path)) - before)))
        return target

    def write_identity(self, identity: Optional[dict]) -> None:
        if self.is_main and identity is not None:
            self.write_json(IDENTITY_FILE, identity)

    def reporter_folders(self, report_to: str, logging_dir: Optional[str]) -> None:
        """The folders a reporter writes into this one (TensorBoard's runs/, wandb's wandb/)."""
        names = {"tensorboard": [] if logging_dir else ["runs"], "wandb": ["wandb"]}.get(report_to, [])
        self.record(*names)

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        return sorted_checkpoints(self.path)

    def write_checkpoint(self, step: int, write: Callable[[Path], None], share: Callable, need_mib: int,
                         keep: Optional[int], keep_also: Optional[str], identity: Optional[dict],
                         resume_only: bool = False) -> Path:
        """checkpoint-`step`, written by `write(tmp)` into a fresh temporary folder (rank 0 makes
        it, `share` gives its name to every rank) and renamed into place once complete; then the
        rotation (keep the newest `keep` of this run's, and `keep_also`). `resume_only`: written by
        a signal's stop, not --save_strategy (removed once the run finished). A full disk removes
        the temporary folder and is the one `disk_full` error."""
        folder = self.path / f"{CHECKPOINT_PREFIX}{step}"
        tmp = Path(share(str(temporary_folder(folder)) if self.is_main else None))
        try:
            write(tmp)
            if self.is_main:
                if resume_only:
                    (tmp / RESUME_ONLY_FILE).write_text("written by a SIGTERM/SIGINT stop, only to resume from; "
                                                        "removed once the run finished\n")
                share_as_umask(tmp)  # mkdtemp made it 0700
                if folder.exists():
                    shutil.rmtree(folder)
                os.replace(tmp, folder)
        except BaseException as e:
            full = is_disk_full(e, self.path)  # before the half-written files free their space
            if self.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            if full:
                raise disk_full(folder.name, need_mib, self.path) from None
            raise
        if self.is_main:
            rotate_checkpoints(self.path, keep, keep_also, identity)
        return folder

    # -- the end ------------------------------------------------------------------------------
    def finish(self, trained: bool) -> None:
        """The run's end (rank 0): once the folder holds this run's finished training (`trained`:
        a training run got this far), its checkpoints written only to resume from are removed;
        then one line says what the folder and its previous_runs/ hold."""
        if not self.is_main:
            return
        identity = read_identity(self.path) if trained else None
        for checkpoint in sorted_checkpoints(self.path) if identity is not None else []:
            if is_resume_only(checkpoint) and is_own_checkpoint(checkpoint, identity):
                remove_entry(checkpoint)
                logger.info("Removed %s: written by a stop only to resume from, and the run has finished",
                            checkpoint.name)
        try:
            logger.info("%s", disk_use(self.path))
        except OSError as e:  # a file that vanished while counted: a finished run does not fail over a log line
            logger.info("Disk: %s could not be measured (%s)", self.path, e)

    def best_model_weights(self, recorded: Optional[str]) -> Optional[dict]:
        """The best dev model's weights (--load_best_model_at_end) from the folder the training state
        recorded; None when none was saved or it is gone."""
        if not recorded or not Path(recorded).is_dir():
            return None
        from safetensors.torch import load_file

        return load_file(Path(recorded) / "model.safetensors")


BEST_MODEL_DIR = "best_model"
