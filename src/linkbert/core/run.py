"""One run of any task, from flags to result files. Task modules call `main(TheirTask)`.

    flags -> output-folder rules -> data checked -> context (tokenizer, length, padding, labels,
          precision: `resolve_context`, once) + model -> features -> [train -> save]
          -> [evaluate dev] -> [predict test] -> result files
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from . import cpu_attention, cpu_dropout, padding_free
from .args import Precision, as_dict, parse_args
from .card import finish_run
from .distributed import DistState
from .parallel import start as start_processes
from .checkpoint import TrainState, load_checkpoint
from .engine import Engine, StopOnSignal, TrainingInterrupted
from .errors import UserError
from .hub import PREFETCH_HINT, check_model_source, refused_for_safety
from .metrics_table import metrics_table
from .push import check_push
from .report import Reporter
from .results import RUN_KEY, environment, hide_token, run_record
from .rundir import STATE_FILE, RunFolder, check_resume, phase, run_identity
from .data import cache_space, check_cache_dir, check_known_labels, end_workers_with_this_process
from .task import CheckedSplits, Labels, Task, TaskContext, batch_pad_multiple, check_best_metric

logger = logging.getLogger("linkbert")



def main(task_cls: type[Task], argv: Optional[list[str]] = None) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO, stream=sys.stdout)
    # Under torchrun every rank meets the same error: rank 0 alone says it, every rank exits 2.
    speaks = os.environ.get("RANK", "0") == "0"
    try:
        with StopOnSignal(outside_training=True):  # SIGTERM in evaluation: a message, not a kill
            run(task_cls, argv)
    except UserError as e:
        if speaks:  # once, on stderr (the run scripts tee stderr into log.txt too)
            print(e, file=sys.stderr)
        sys.exit(2)
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        sys.exit(130 if e.signal_name == "SIGINT" else 143)


def on_main(dist: DistState, decide):
    """Rank 0 decides (inspects the folder: the others would see its first files); every rank
    gets its answer, or raises its UserError."""
    if not dist.is_main:
        outcome = dist.broadcast_object(None)
    else:
        try:
            outcome = ("ok", decide())
        except UserError as e:
            outcome = ("error", e)
        outcome = dist.broadcast_object(outcome)
    if outcome[0] == "error":
        raise outcome[1]
    return outcome[1]


def stay_offline(model_args, args) -> None:
    """Nothing leaves the machine unless the user names a hub model (or asks for wandb): with
    local model folders, `datasets` and the hub client are put offline (they would otherwise
    send requests, e.g. a download count, even for local files)."""
    names = [n for n in (model_args.model_name_or_path, model_args.config_name, model_args.tokenizer_name) if n]
    if args.report_to == "wandb" or args.push_to_hub or not all(Path(n).is_dir() for n in names):
        return
    import datasets
    import huggingface_hub

    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True  # read at each request (is_offline_mode)
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True


def check_model_sources(m) -> bool:
    """Model, config and tokenizer names that cannot load fail here, in a second, before any data is
    read (not after the hub's retries). Returns whether to load from the hub cache only."""
    local_only = False
    for flag, name in (("--model_name_or_path", m.model_name_or_path), ("--config_name", m.config_name),
                       ("--tokenizer_name", m.tokenizer_name)):
        if name:
            local_only |= check_model_source(name, flag, m.cache_dir, m.model_revision, m.trust_remote_code)
    return local_only


def _hub_kwargs(m, local_only: bool = False) -> dict:
    return dict(cache_dir=m.cache_dir, revision=m.model_revision, token=True if m.use_auth_token else None,
                trust_remote_code=m.trust_remote_code, local_files_only=local_only)


def _missing_model(m, e: OSError) -> UserError:
    return UserError("missing_model", f"--model_name_or_path {m.model_name_or_path}: no model folder or hub "
                     f"model of that name could be loaded; {PREFETCH_HINT.replace('NAME', m.model_name_or_path)}."
                     f" Detail: {str(e).splitlines()[0]}")


def load_tokenizer(m, local_only: bool = False):
    """The (fast) tokenizer of the model flags `m`. Tasks that need it before the core resolves
    the context (pretraining tokenises its corpus while loading it) call this too."""
    from transformers import AutoTokenizer

    try:
        with refused_for_safety(m.tokenizer_name or m.model_name_or_path):
            tokenizer = AutoTokenizer.from_pretrained(m.tokenizer_name or m.model_name_or_path,
                                                      **_hub_kwargs(m, local_only))
    except OSError as e:
        raise _missing_model(m, e) from None
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("missing_model", "a fast tokenizer is required (offsets and word ids); "
                        f"{m.tokenizer_name or m.model_name_or_path} has none")
    return tokenizer


def load_config(m, local_only: bool = False):
    from transformers import AutoConfig

    try:
        with refused_for_safety(m.config_name or m.model_name_or_path):
            return AutoConfig.from_pretrained(m.config_name or m.model_name_or_path, **_hub_kwargs(m, local_only))
    except OSError as e:
        raise _missing_model(m, e) from None


def resolve_labels(task: Task, checked: CheckedSplits, config) -> Optional[Labels]:
    """The label space: from the training file (the task decides it), else from the fine-tuned
    model's config (prediction-only); every dev/test label checked against it; the config gets
    the label maps and problem type."""
    if task.label_noun is None:
        return None
    if "train" in checked.kept:
        labels, source = task.label_space(checked.kept["train"]), "the training file"
    else:
        labels = saved_labels(config, task.label_noun, task.model_args.model_name_or_path)
        source = f"the model's labels ({', '.join(map(str, labels.names))})"
    check_known_labels(task, checked, labels, source)
    config.update(labels.config_kwargs())
    return labels


def saved_labels(config, noun: str, model: str) -> Labels:
    """The label space a fine-tuning run saved in its model's config."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        return Labels((), problem)
    names = tuple(config.id2label[i] for i in range(config.num_labels)) if config.id2label else ()
    if problem != "multi_label_classification" and (not names or all(str(n).startswith("LABEL_") for n in names)):
        raise UserError("no_labels_for_prediction", f"the model's config names no {noun}s; predict with the folder a "
                        "training run saved", path=model)
    return Labels(names, problem)


def resolve_max_length(task: Task, config, tokenizer) -> int:
    """--max_seq_length, else the task's default, else the model's; clamped to the position
    embeddings (BioLinkBERT's tokenizer config has no model_max_length)."""
    limit = getattr(config, "max_position_embeddings", None) or tokenizer.model_max_length
    wanted = task.data_args.max_seq_length or task.default_max_seq_length or limit
    if wanted > limit:
        logger.warning("--max_seq_length %d is longer than the model's %d positions: using %d", wanted, limit, limit)
    special = tokenizer.num_special_tokens_to_add(pair=True)
    if min(wanted, limit) <= special:  # the flag's fault, not the data's: every input would be empty
        raise UserError("bad_flag_value", f"--max_seq_length {wanted} leaves no room for text: the tokenizer adds "
                        f"{special} special tokens ([CLS], [SEP]) to an input; give a longer length")
    return min(wanted, limit)


def resolve_context(task: Task, checked: CheckedSplits, local_only: bool = False) -> tuple[TaskContext, Any]:
    """Tokenizer, length, padding, labels and precision, decided once; and the model config
    (loaded once, label maps included)."""
    args = task.training_args
    tokenizer = load_tokenizer(task.model_args, local_only)
    config = load_config(task.model_args, local_only)
    labels = resolve_labels(task, checked, config)
    config.update(task.config_overrides())
    ctx = TaskContext(
        tokenizer=tokenizer, max_seq_length=resolve_max_length(task, config, tokenizer),
        pad_to_max_length=task.data_args.pad_to_max_length or task.pads_to_max_length,
        pad_to_multiple_of=batch_pad_multiple(args), labels=labels, precision=args.precision,
        record_format=checked.record_format)
    return ctx, config


def load_model(task: Task, config, local_only: bool = False):
    """The task's model head on the pretrained weights, in float32."""
    return load_model_and_info(task, config, local_only)[0]


def load_model_and_info(task: Task, config, local_only: bool = False) -> tuple[Any, dict]:
    """The model, and `from_pretrained`'s loading info (its missing and unexpected keys; empty
    under --from_scratch). Nothing is said about them here: the run says where its weights come
    from once it has decided (`weights_source`: a resume or a finished training replaces them)."""
    m = task.model_args
    try:
        with refused_for_safety(m.model_name_or_path):
            if m.from_scratch:
                model, loading = from_config(task.model_class, config, hf_attention(m.attn_implementation)), {}
            else:
                model, loading = load_pretrained(task.model_class, m.model_name_or_path, config=config,
                                                 dtype=torch.float32,
                                                 attn_implementation=hf_attention(m.attn_implementation),
                                                 **_hub_kwargs(m, local_only))
    except OSError as e:
        raise _missing_model(m, e) from None
    cpu_dropout.use_hash_dropout(model)  # with our attention (`sdpa`), the hidden dropout's kernel too
    untrained = loading.get("missing_keys") or []
    if untrained and not task.training_args.do_train and not task.training_args.allow_untrained_head:
        raise UserError("untrained_head", f"--model_name_or_path {m.model_name_or_path} has no trained weights for "
                        f"{', '.join(sorted(untrained)[:3])}{' ...' if len(untrained) > 3 else ''}: without --do_train "
                        "the scores would be chance. Give the fine-tuned folder, or add --allow_untrained_head if "
                        "this is intended")
    return model, loading


def resolve_padding_free(task: Task, model, device: torch.device) -> bool:
    """--padding_free decided once, before the first write, where the device, the task and the
    model are known (`padding_free.default_for`; an unsupported model with the flag fails here).
    The task's arguments then hold the bool that everything after runs on and records."""
    args = task.training_args
    packed = padding_free.default_for(args.padding_free, model, device, task.padding_free_by_default)
    task.training_args = dataclasses.replace(args, padding_free=packed)
    return packed


def padding_free_line(wanted: Optional[bool], packed: bool) -> str:
    why = "as asked" if wanted is not None else "the default for this task, model and device"
    return f"Batches: {'padding-free (--padding_free)' if packed else 'padded'}, {why}"


def hf_attention(choice: str) -> str:
    """--attn_implementation -> the name transformers builds the model with: `sdpa` is ours
    (cpu_attention: SDPA but for CPU training with attention dropout), `torch_sdpa` torch's own."""
    return {"sdpa": cpu_attention.register(), "torch_sdpa": "sdpa"}.get(choice, choice)


def from_config(model_class, config, attn_implementation: str):
    """A model of the config's shape with new random weights (seeded by --seed), in float32."""
    build = getattr(model_class, "from_config", None) or model_class._from_config  # Auto class | model class
    return build(config, attn_implementation=attn_implementation, dtype=torch.float32)


def load_pretrained(model_class, name: str, **kwargs):
    """`from_pretrained` and its loading info, without transformers' load-report block (the run
    says it in one plain line, `weights_source`)."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        model, info = model_class.from_pretrained(name, output_loading_info=True, **kwargs)
    finally:
        transformers.logging.set_verbosity(verbosity)
    return model, info


def weights_source(task: Task, model, loading: dict, finished_in: Optional[RunFolder], resume: Optional[str]) -> str:
    """One line: where the model's weights come from, once the run has decided it (this run's
    finished training, the checkpoint it resumes from, random weights, or the given model with
    its new and unused weights)."""
    m, args = task.model_args, task.training_args
    if finished_in is not None:
        return f"Weights: this run's finished training in {finished_in}, evaluated (not trained again)"
    if resume and args.do_train:
        return f"Weights: the checkpoint {resume}, which the training resumes from"
    if m.from_scratch:
        return (f"Weights: random (--from_scratch), {type(model).__name__} of "
                f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; no weights read")
    line = f"Weights: {m.model_name_or_path}"
    new, unused = sorted(loading.get("missing_keys", ())), sorted(loading.get("unexpected_keys", ()))
    if new:
        why = "as fine-tuning expects" if args.do_train else "and not trained (--allow_untrained_head)"
        line += f"; new weights, initialised randomly {why} (the task's head): {', '.join(new)}"
    if unused:
        line += (f"; {len(unused)} of its weights this task does not use (e.g. pretraining heads), under "
                 f"{', '.join(sorted({k.split('.')[0] for k in unused}))}")
    return line


SAMPLE_LIMITS = {"train": "max_train_samples", "validation": "max_eval_samples", "test": "max_predict_samples"}


def build_features(task: Task, ctx: TaskContext, split: str, examples, training: bool):
    d = task.data_args
    features = examples.map(
        lambda batch: task.encode(batch, ctx, training=training), batched=True,
        remove_columns=examples.column_names, num_proc=d.preprocessing_num_workers,
        load_from_cache_file=not d.overwrite_cache, desc=f"{task.name}: tokenising {split}")
    of_split = {e.name: e.of_split for e in task.extra_splits()}.get(split, split)  # MNLI-mm: as dev/test
    limit = getattr(d, SAMPLE_LIMITS[of_split])
    if task.sample_limit_cuts_features and limit is not None and len(features) > limit:
        # As the original QA script: --max_*_samples also cuts the windows (examples whose
        # windows are cut off are answered "empty").
        features = features.select(range(limit))
    task.check_features(split, features, ctx)
    return features


def log_feature_descriptions(task: Task, features: dict) -> None:
    for split, split_features in features.items():
        description = task.describe_features(split, split_features)
        if description:
            logger.info("%s %s inputs: %s", task.name, split, description)


def evaluate_split(task: Task, engine: Engine, examples, features, prefix: str) -> tuple[dict, list[dict]]:
    start = time.time()
    outputs = engine.predict(features, desc={"eval": "dev", "predict": "test"}.get(prefix, prefix))
    records = task.prediction_records(outputs, examples, features, engine.ctx)
    metrics: dict[str, Any] = {f"{prefix}_{k}": v for k, v in task.score(records).items()}
    runtime = time.time() - start
    metrics.update({f"{prefix}_{k}": v for k, v in task.summary(records, engine.ctx).items()})
    metrics.update({f"{prefix}_samples": len(examples), f"{prefix}_runtime": round(runtime, 4),
                    f"{prefix}_samples_per_second": round(len(examples) / runtime, 3) if runtime > 0 else None})
    return metrics, records


def check_setup(args, model_args) -> None:
    """What the flags ask of this machine, before any work; TF32 as asked."""
    if not (args.do_train or args.do_eval or args.do_predict):
        raise UserError("nothing_to_do", "give at least one of --do_train, --do_eval, --do_predict")
    if model_args.from_scratch and not args.do_train:
        raise UserError("conflicting_flags", "--from_scratch without --do_train would score random weights; add "
                        "--do_train, or drop --from_scratch to evaluate --model_name_or_path")
    check_cache_dir(model_args.cache_dir)
    if args.tf32:  # off by default since torch 1.12 (torch 1.10, the original's, allowed it)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def score_split(task: Task, engine: Engine, folder: RunFolder, datasets_: dict, features: dict, split: str,
                prefix: str, record: dict) -> dict:
    """Score a dev or test split and the task's extra splits that go with it (MNLI mismatched:
    metric names and predictions file with "_mm"); write predictions, results and task files."""
    metrics: dict = {}
    extras = [e for e in task.extra_splits() if e.of_split == split and e.name in datasets_]
    for name, suffix in [(split, "")] + [(e.name, e.suffix) for e in extras]:
        scores, records = evaluate_split(task, engine, datasets_[name], features[name], prefix)
        metrics.update({k + suffix: v for k, v in scores.items()})
        folder.write_jsonl(f"{prefix}{suffix}_predictions.jsonl", records)
        if folder.is_main:
            for file_name, text in task.extra_outputs(prefix, suffix, records).items():
                folder.write_text(file_name, text)
    folder.save_metrics(prefix, metrics, record)
    if folder.is_main:
        logger.info("%s metrics: %s", prefix, metrics)
    return metrics


def run(task_cls: type[Task], argv: Optional[list[str]] = None) -> dict:
    model_args, data_args, args, task_args = parse_args(task_cls.arguments, argv)
    task = task_cls(model_args, data_args, args, task_args)
    check_setup(args, model_args)
    end_workers_with_this_process()
    stay_offline(model_args, args)
    dist = start_processes(args)
    if args.precision is Precision.FP16 and dist.device.type == "cpu" and dist.is_main:
        logger.warning("--fp16 on a CPU: float16 autocast is slow there and not what the paper ran on its GPUs; "
                       "on a CPU use --bf16 (or no precision flag)")
    folder = RunFolder.for_args(args, dist.is_main)  # its lock held by rank 0 for the run's whole life
    try:
        command = hide_token(sys.argv if argv is None else argv)  # --hub_token never reaches a file
        metrics = _run(task, dist, folder, command, (model_args, data_args, args, task_args))
        if dist.is_main:  # the result files keep every digit
            logger.info("Metrics (in full in %s/*_results.json):\n%s", folder, metrics_table(metrics))
        folder.finish(trained=args.do_train)  # resume-only checkpoints go; what the folder holds, in one line
        return metrics
    finally:
        folder.close()
        dist.close()


def run_inputs(task: Task, arguments: dict) -> dict[str, str]:
    """What the run reads (flag -> path): its data files, and for a training run the model it
    starts from. A run folder holds none of them (--overwrite_output_dir would set them aside)."""
    inputs = {f"--{k}": str(v) for k, v in arguments.items() if k in INPUT_FILE_FLAGS and v}
    inputs.update({e.flag: str(e.path) for e in task.extra_splits() if e.path})
    if arguments.get("do_train"):
        inputs.update({f"--{k}": str(arguments[k]) for k in ("model_name_or_path", "config_name", "tokenizer_name")
                       if arguments.get(k) and Path(arguments[k]).exists()})
    return inputs


INPUT_FILE_FLAGS = ("train_file", "validation_file", "test_file", "corpus_file")


def _run(task: Task, dist: DistState, folder: RunFolder, command: list[str], all_args: tuple) -> dict:
    from transformers import set_seed

    model_args, data_args, args, task_args = all_args
    splits = [s for s, on in (("train", args.do_train), ("validation", args.do_eval), ("test", args.do_predict)) if on]
    arguments = as_dict(model_args, data_args, args, task_args)
    resume = on_main(dist, lambda: folder.open(args, run_inputs(task, arguments)))
    hub_repo = on_main(dist, lambda: check_push(args, folder.path))  # --push_to_hub: the hub checked before any work
    # The data is checked whole before the model is looked for. Rank 0 first: a task may
    # tokenise into the datasets cache here (pretraining's documents), which the others then read.
    with dist.main_process_first(), cache_space(model_args.cache_dir):
        datasets_, checked = task.load_examples(splits)
    if "train" in datasets_:
        datasets_["train"] = task.training_examples(datasets_["train"])
    local_only = check_model_sources(model_args)  # a name that cannot load fails here, in a second

    ctx, config = resolve_context(task, checked, local_only)  # tokenizer, length, labels... once
    check_best_metric(task, ctx)
    set_seed(args.seed)
    model, loading = load_model_and_info(task, config, local_only)
    wanted, packed = args.padding_free, resolve_padding_free(task, model, dist.device)
    args = task.training_args
    arguments["padding_free"] = packed  # run_args.json and the run identity: the bool it runs on
    identity = run_identity(task, arguments, model, dist.world_size, checked.sha256.get("train"))
    # A rerun of a finished training evaluates its model; it does not train again.
    finished = folder.finished_training(args, identity)
    if finished:
        dist.wrapping.load_model_state(model, folder.finished_weights(model))
    elif resume and args.do_train:  # checked whole before anything is written
        check_resume(resume, identity, model, set(TrainState.__dataclass_fields__), args.max_steps)
    else:  # the run starts from the given weights: the task may warn about a start it trains poorly from
        task.check_new_weights(sorted(loading.get("missing_keys") or []))
    if dist.is_main:  # decided: said once
        logger.info("%s", weights_source(task, model, loading, folder if finished else None, resume))
        logger.info("%s", padding_free_line(wanted, packed))
    with dist.main_process_first(), cache_space(model_args.cache_dir):  # rank 0 tokenises, the others read
        features = {s: build_features(task, ctx, s, datasets_[s], training=(s == "train")) for s in datasets_}
    # Every check has passed: only now is the folder touched.
    folder.start(args, resume, {"argv": command, "phase": phase(args), **arguments},
                 environment({split: str(path) for split, path in checked.paths.items()}, checked.sha256)
                 if dist.is_main else {})
    if dist.is_main:
        log_feature_descriptions(task, features)
    set_seed(args.seed)  # as the original Trainer: re-seeded after the model is built
    reporter = None
    if dist.is_main:
        reporter = Reporter.create(args.report_to, str(folder), args.run_name, args.logging_dir, arguments)
        folder.reporter_folders(args.report_to, args.logging_dir)
    engine = Engine(model, task, ctx, args, dist, reporter, folder)
    engine.run_identity = identity
    try:
        metrics = run_phases(task, engine, folder, datasets_, features, (resume, identity, finished), command)
    finally:
        if reporter is not None:
            reporter.close()
    finish_run(task, folder, hub_repo)  # the model card; then --push_to_hub
    return metrics


def run_phases(task: Task, engine: Engine, folder: RunFolder, datasets_: dict, features: dict, training: tuple,
               command: list[str]) -> dict:
    """Train (unless the folder holds this run's finished training), then score dev and test;
    each results file says what it is (`run_record`). A score of a model whose training was cut
    (--max_steps, --max_train_samples) is partial too."""
    resume, identity, finished = training
    args, data_args = task.training_args, task.data_args
    cut = {split: sample_limit_cut(data_args, split, datasets_) for split in datasets_}
    all_metrics: dict = {}
    trained_partially = not args.do_train and model_trained_partially(task.model_args.model_name_or_path)
    if args.do_train and finished:
        trained = folder.read_json("train_results.json")
        trained_partially = bool((trained.get(RUN_KEY) or {}).get("partial"))
        all_metrics.update({k: v for k, v in trained.items() if k != RUN_KEY})
    elif args.do_train:
        trained_partially = cut.get("train", False)
        all_metrics.update(train_and_save(task, engine, folder, datasets_, features, resume, identity, command,
                                          trained_partially))
        trained_partially = trained_partially or bool(engine.plan and engine.plan.steps_cut)
    for split, prefix in (("validation", "eval"), ("test", "predict")):
        if split in datasets_:
            record = run_record(command, prefix, cut.get(split, False) or trained_partially)
            all_metrics.update(score_split(task, engine, folder, datasets_, features, split, prefix, record))
    return all_metrics


def model_trained_partially(model: str) -> bool:
    """Whether the fine-tuned folder a prediction-only run loads says its training was cut."""
    from .results import read_json_or_none

    trained = read_json_or_none(Path(model) / "train_results.json") if Path(model).is_dir() else None
    return isinstance(trained, dict) and bool((trained.get(RUN_KEY) or {}).get("partial"))


def sample_limit_cut(data_args, split: str, datasets_: dict) -> bool:
    """Whether --max_{train,eval,predict}_samples left out examples of a split (the loaders keep
    the first N: a split of exactly N examples may have been longer)."""
    limit = getattr(data_args, SAMPLE_LIMITS.get(split, ""), None)
    return limit is not None and len(datasets_[split]) >= limit


def train_and_save(task: Task, engine: Engine, folder: RunFolder, datasets_: dict, features: dict,
                   resume: Optional[str], identity: dict, command: list[str], cut: bool) -> dict:
    args = task.training_args
    evaluate = None
    if args.do_eval and args.eval_strategy != "no":
        evaluate = lambda: evaluate_split(task, engine, datasets_["validation"], features["validation"], "eval")[0]
    # The checkpoint is read here, so that the engine never sees a path (and nothing keeps its contents).
    metrics = engine.train(features["train"], seed=args.seed, evaluate=evaluate,
                           resume=load_checkpoint(resume) if resume else None)
    engine.save_model_into(folder, "the final model")
    folder.write_json(STATE_FILE, engine.state.to_json())
    folder.save_metrics("train", metrics, run_record(command, "train", cut or bool(engine.plan and engine.plan.steps_cut)))
    folder.write_identity(identity)  # last: marks the training finished
    return metrics
