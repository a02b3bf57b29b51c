"""LinkBERT pretraining (or continued pretraining) on a linked corpus: MLM + document relation
prediction, on the shared core (same engine, checkpoints, resume, torchrun, FSDP as fine-tuning).

    python -m linkbert.pretrain.run_pretrain --model_name_or_path bert-base-cased \
        --corpus_file data/pretrain/wiki_linked.jsonl --do_train --do_eval \
        --max_seq_length 512 --per_device_train_batch_size 32 --gradient_accumulation_steps 8 \
        --learning_rate 3e-4 --adam_beta2 0.98 --warmup_steps 5000 --max_steps 40000 --fp16 \
        --output_dir runs/pretrain/LinkBERT-base
    torchrun --nproc_per_node 8 -m linkbert.pretrain.run_pretrain ...   # same flags

One run, in the core's order:
    corpus checked (corpus.read_corpus) -> held-out documents -> documents tokenised (map, cached;
    tokens memory-mapped, inputs.SegmentStore) -> inputs built per split (inputs.PairBuilder, map,
    cached) -> train (loss = MLM + DRP; dynamic masks drawn per epoch by PretrainCollator)
    -> eval_mlm_loss, eval_mlm_accuracy, eval_perplexity, eval_drp_accuracy (and per relation)
The output folder is a `save_pretrained` folder that the fine-tuning modules and
`AutoModelForMaskedLM` load directly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow.compute as pc
import torch

from linkbert.core.errors import UserError
from linkbert.core.results import file_sha256
from linkbert.core.run import load_tokenizer, main
from linkbert.core.data import CheckedSplits, load_json
from linkbert.core.task import Task, TaskContext
from linkbert.pretrain.corpus import LinkGraph, held_out_documents, read_corpus
from linkbert.pretrain.inputs import (IGNORE, LINKED_SAMPLING, MASKING, PAIRING, RELATIONS, DynamicMasking,
                                     PairBuilder, PairRedraw, PairSettings, SegmentStore)
from linkbert.pretrain.model import LinkBertForPreTraining, masked_positions

SPLIT_CODES = {"train": 0, "validation": 1}
logger = logging.getLogger("linkbert")


@dataclass(frozen=True)
class PretrainArguments:
    corpus_file: Optional[str] = field(
        default=None, metadata={"help": "JSON Lines corpus: id, title, text, links (scripts/build_linked_corpus.py)."})
    validation_split_percentage: float = field(
        default=5.0, metadata={"help": "Percent of the documents held out (whole documents) for --do_eval."})
    relation_probabilities: str = field(
        default="0.3333333333,0.3333333333,0.3333333334",
        metadata={"help": "Probabilities of contiguous,random,linked X_B (the paper: equal)."})
    linked_sampling: str = field(
        default="inverse_in_degree",
        metadata={"help": "How a linked document is drawn: inverse_in_degree (the paper's diversity choice) | "
                          "uniform."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Fraction of tokens masked (BERT: 0.15)."})
    mlm_loss_weight: float = field(
        default=1.0, metadata={"help": "Weight of the MLM loss in the training loss (MLM weight x MLM + DRP; the paper: "
                                       "1). Below 1 lets DRP learn from a checkpoint that ships no MLM head."})
    whole_word_masking: bool = field(default=False, metadata={"help": "Mask whole words, not single word pieces."})
    masking: str = field(
        default="dynamic",
        metadata={"help": "Training masks: dynamic (drawn again every epoch, RoBERTa-style) | static (drawn once "
                          "when the inputs are built, as BERT's create_pretraining_data). Validation: static."})
    pairing: str = field(
        default="fixed",
        metadata={"help": "Each training anchor's relation and X_B: fixed (drawn once, when the inputs are built; "
                          "every epoch sees the same pairs) | per_epoch (drawn again every epoch, with --masking "
                          "dynamic). The paper does not say it drew them again (DEVIATIONS.md)."})
    segment_length: Optional[int] = field(
        default=None, metadata={"help": "Tokens per segment (default (max_seq_length - 3) // 2, two per input)."})


class PretrainTask(Task):
    name = "pretrain"
    model_class = LinkBertForPreTraining
    arguments = PretrainArguments
    default_max_seq_length = 512
    main_metric = "mlm_loss"
    # Inputs fill their length (two segments): packing gains nothing measurable (bench/README.md, 1.05x).
    padding_free_by_default = False
    # document, anchor_segment and word_start seed and place dynamic masks; the collator drops them.
    model_inputs = ("input_ids", "token_type_ids", "attention_mask", "mlm_labels", "relation_label", "document",
                    "anchor_segment", "word_start")

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.relation_probabilities = self._checked_probabilities()
        self._check_flags()
        self.graph: Optional[LinkGraph] = None
        self.store: Optional[SegmentStore] = None
        self.held_out: Optional[np.ndarray] = None
        self.tokenised = None  # the documents as word pieces (a datasets.Dataset), set by load_examples
        self.builders: dict[str, PairBuilder] = {}

    def _checked_probabilities(self) -> tuple[float, float, float]:
        """--relation_probabilities as three numbers (contiguous, random, linked)."""
        a = self.task_args
        try:
            probabilities = tuple(float(p) for p in a.relation_probabilities.split(","))
        except ValueError:
            probabilities = ()
        if len(probabilities) != 3 or min(probabilities) < 0 or not math.isclose(sum(probabilities), 1.0, abs_tol=1e-6):
            raise UserError("bad_flag_value", f"--relation_probabilities {a.relation_probabilities!r}: give three "
                            "non-negative numbers (contiguous,random,linked) that sum to 1, e.g. 0.5,0.25,0.25")
        contiguous, random, linked = probabilities
        return contiguous, random, linked

    def _check_flags(self) -> None:
        """One clear line for each flag value the method cannot run with, before anything is read."""
        a = self.task_args
        for flag, value, choices in (("--linked_sampling", a.linked_sampling, LINKED_SAMPLING),
                                     ("--masking", a.masking, MASKING), ("--pairing", a.pairing, PAIRING)):
            if value not in choices:
                raise UserError("bad_flag_value", f"{flag} {value!r}: choose {' or '.join(choices)}")
        if a.pairing == "per_epoch" and a.masking == "static":
            raise UserError("conflicting_flags", "--pairing per_epoch with --masking static: pairs drawn again every "
                            "epoch are masked when batched; use --masking dynamic (the default)")
        if not 0 < a.mlm_probability < 1:
            raise UserError("bad_flag_value", f"--mlm_probability {a.mlm_probability}: must be between 0 and 1")
        if not a.mlm_loss_weight > 0:
            raise UserError("bad_flag_value", f"--mlm_loss_weight {a.mlm_loss_weight}: must be above 0 (MLM is half "
                            "of the method; the paper's weight is 1)")
        if not 0 <= a.validation_split_percentage < 100:
            raise UserError("bad_flag_value", f"--validation_split_percentage {a.validation_split_percentage}: "
                            "must be at least 0 and below 100")
        if self.training_args.do_eval and a.validation_split_percentage == 0:
            raise UserError("conflicting_flags", "--do_eval with --validation_split_percentage 0: no document is "
                            "held out to evaluate on")
        if self.training_args.do_predict:
            raise UserError("conflicting_flags", "--do_predict: pretraining has no test split; --do_eval scores "
                            "the held-out documents")
        length = self.data_args.max_seq_length or self.default_max_seq_length
        segment = a.segment_length or (length - 3) // 2
        if segment < 1 or 2 * segment + 3 > length:
            raise UserError("bad_flag_value", f"--max_seq_length {length} is too short for two segments of "
                            f"{segment} tokens plus [CLS] and two [SEP] (needs {2 * max(segment, 1) + 3}); raise "
                            "it or lower --segment_length")

    # -- data -------------------------------------------------------------------------------
    def load_examples(self, splits: list[str]) -> tuple[dict, CheckedSplits]:
        """The corpus checked, its documents tokenised once (cached), and each split's documents:
        training gets the documents not held out, validation the held-out ones."""
        import datasets

        if not self.task_args.corpus_file:
            raise UserError("missing_split", "--corpus_file is needed (a linked corpus; build one with "
                            "scripts/build_linked_corpus.py)")
        corpus_file = Path(self.task_args.corpus_file)
        # The digest names the data in env.json and the run identity, and the folder of the link
        # arrays, written once (rank 0 runs this first) and memory-mapped by every rank.
        digest = file_sha256(corpus_file) if corpus_file.is_file() else ""
        graphs = Path(self.model_args.cache_dir or datasets.config.HF_DATASETS_CACHE) / "linkbert_graphs"
        cache = graphs / f"{digest.split()[0]}-{corpus_file.stat().st_size}" if digest else None
        self.graph = read_corpus(corpus_file, cache=cache)
        self.held_out = held_out_documents(len(self.graph), self.task_args.validation_split_percentage,
                                           self.training_args.seed)
        if (~self.held_out).sum() < 2:
            raise UserError("empty_split", f"only {(~self.held_out).sum()} document(s) left for training after "
                            "holding out validation documents; a random X_B needs at least two: lower "
                            "--validation_split_percentage or give more documents", path=self.task_args.corpus_file)
        tokenizer = load_tokenizer(self.model_args)
        d = self.data_args
        corpus = load_json(corpus_file, digest, self.model_args.cache_dir, d.overwrite_cache)
        tokenised = corpus.map(
            tokenise_documents, batched=True, with_indices=True, fn_kwargs={"tokenizer": tokenizer},
            remove_columns=corpus.column_names, num_proc=d.preprocessing_num_workers,
            load_from_cache_file=not d.overwrite_cache, desc="pretrain: tokenising documents")
        self.tokenised = tokenised
        # Its tokens memory-mapped from flat files beside the cache, written here (rank 0 first,
        # before any map worker needs them); the segment length is set once the model's is known.
        self.store = SegmentStore.from_dataset(tokenised, segment_length=0)
        positions = {"train": np.flatnonzero(~self.held_out), "validation": np.flatnonzero(self.held_out)}
        # --max_train_samples / --max_eval_samples count documents (a split's examples here).
        limits = {"train": d.max_train_samples, "validation": d.max_eval_samples}
        positions = {split: p[:limits[split]] if limits[split] else p for split, p in positions.items()}
        return ({split: tokenised.select(positions[split]).select_columns(["document"]) for split in splits},
                CheckedSplits(paths={split: corpus_file for split in splits}, sha256={split: digest for split in splits}))

    def _builder(self, split: str, ctx: TaskContext) -> PairBuilder:
        if split not in self.builders:
            assert self.store is not None and self.graph is not None and self.held_out is not None, \
                "load_examples reads the corpus first"
            self.store.segment_length = self.task_args.segment_length or (ctx.max_seq_length - 3) // 2
            # Training draws X_B from training documents only; validation from the whole corpus.
            pool = ~self.held_out if split == "train" else np.full(len(self.graph), True)
            self.builders[split] = PairBuilder(self.store, self.graph.links, self.graph.in_degree, pool,
                                               self.pair_settings(split, ctx), SPLIT_CODES[split])
        return self.builders[split]

    def pair_settings(self, split: str, ctx: TaskContext) -> PairSettings:
        t, a = ctx.tokenizer, self.task_args
        return PairSettings(self.relation_probabilities, a.linked_sampling, a.mlm_probability, a.whole_word_masking,
                            self.training_args.seed, t.cls_token_id, t.sep_token_id, t.mask_token_id, len(t),
                            dynamic_masking=split == "train" and a.masking == "dynamic")

    def check_new_weights(self, names: list[str]) -> None:
        if self.training_args.do_train and self.task_args.mlm_loss_weight == 1 and \
                any(n.startswith("cls.predictions.") for n in names):
            logger.warning("%s ships no MLM head (cls.predictions.* start random): with the plain sum MLM + DRP "
                           "(--mlm_loss_weight 1) the new head's large MLM loss can keep DRP near chance for "
                           "hundreds of updates; --mlm_loss_weight 0.1 lets both learn (README, Pretraining)",
                           self.model_args.model_name_or_path)

    def config_overrides(self) -> dict[str, Any]:
        return {"mlm_loss_weight": self.task_args.mlm_loss_weight}

    def encode(self, batch: dict[str, list], ctx: TaskContext, training: bool) -> dict[str, list]:
        return self._builder("train" if training else "validation", ctx).inputs_of_documents(batch["document"])

    def check_features(self, split: str, features, ctx: TaskContext) -> None:
        if len(features) == 0:
            segment = self.task_args.segment_length or (ctx.max_seq_length - 3) // 2
            which = "training" if split == "train" else "held-out"
            raise UserError("empty_split", f"no {which} inputs: an input pairs a segment of a document with the "
                            f"next, and no {which} document is longer than one segment of {segment} word pieces "
                            "(documents of a word or two?); give longer documents or a smaller --segment_length",
                            path=self.task_args.corpus_file)

    def describe_features(self, split: str, features) -> dict[str, Any]:
        # Read as Arrow batches: no Python list per input (the inputs can be larger than memory).
        relations, fell_back, batch_lengths = np.zeros(3, dtype=np.int64), 0, [np.zeros(0, dtype=np.int64)]
        for batch in features.select_columns(["relation_label", "fell_back", "input_ids"]).with_format(
                "arrow").iter(batch_size=10_000):
            relations += np.bincount(batch["relation_label"].to_numpy(), minlength=3)
            fell_back += int(pc.sum(batch["fell_back"]).as_py() or 0)
            batch_lengths.append(pc.list_value_length(batch["input_ids"]).to_numpy())
        lengths = np.concatenate(batch_lengths)
        description: dict[str, Any] = {"inputs": len(features), **dict(zip(RELATIONS, relations.tolist())),
                                       "linked_fell_back": fell_back}
        if len(features):
            description.update(length_mean=round(float(lengths.mean()), 1), length_min=int(lengths.min()),
                               length_max=int(lengths.max()))
        if split == "train" and self.graph is not None:
            description["links_dropped"] = self.graph.dropped_links
        return description

    def collator(self, ctx: TaskContext):
        settings = self.pair_settings("train", ctx)
        masking = DynamicMasking(settings, SPLIT_CODES["train"]) if settings.dynamic_masking else None
        pairs = PairRedraw(self._builder("train", ctx)) if self.task_args.pairing == "per_epoch" else None
        return PretrainCollator(ctx.tokenizer.pad_token_id, ctx.pad_to_multiple_of, masking, pairs)

    # -- outputs ----------------------------------------------------------------------------
    def output_tensor(self, outputs) -> torch.Tensor:
        return torch.cat([outputs.mlm_example_stats, outputs.relation_logits.float()], dim=-1)

    def prediction_records(self, outputs: list[np.ndarray], examples, features, ctx: TaskContext) -> list[dict]:
        assert self.graph is not None, "load_examples reads the corpus first"
        ids = self.graph.ids
        columns = features.select_columns(["document", "anchor_segment", "partner_document", "partner_segment",
                                           "relation_label"]).to_dict()
        records = []
        for i, row in enumerate(outputs):
            logits = row[3:6].astype(np.float64)
            log_probs = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
            gold = columns["relation_label"][i]
            records.append({
                "id": f"{ids[columns['document'][i]]}#{columns['anchor_segment'][i]}",
                "partner": f"{ids[columns['partner_document'][i]]}#{columns['partner_segment'][i]}",
                "relation": RELATIONS[gold], "prediction": RELATIONS[int(np.argmax(logits))],
                "relation_loss": round(float(-log_probs[gold]), 6),
                "mlm_loss_sum": round(float(row[0]), 6), "mlm_tokens": int(row[1]), "mlm_correct": int(row[2])})
        return records

    def score(self, records: list[dict]) -> dict[str, float]:
        tokens = sum(r["mlm_tokens"] for r in records)
        if not records or not tokens:
            return {}
        mlm_loss = sum(r["mlm_loss_sum"] for r in records) / tokens
        relation_loss = float(np.mean([r["relation_loss"] for r in records]))
        metrics = {"loss": mlm_loss + relation_loss, "mlm_loss": mlm_loss, "perplexity": math.exp(min(mlm_loss, 50)),
                   "mlm_accuracy": sum(r["mlm_correct"] for r in records) / tokens, "drp_loss": relation_loss,
                   "drp_accuracy": float(np.mean([r["prediction"] == r["relation"] for r in records]))}
        for relation in RELATIONS:
            of_relation = [r["prediction"] == relation for r in records if r["relation"] == relation]
            if of_relation:
                metrics[f"drp_accuracy_{relation}"] = float(np.mean(of_relation))
        return metrics

    def metric_names(self, ctx: TaskContext) -> set[str]:
        return {"loss", "mlm_loss", "perplexity", "mlm_accuracy", "drp_loss", "drp_accuracy", "inputs",
                *(f"drp_accuracy_{relation}" for relation in RELATIONS)}

    def summary(self, records: list[dict], ctx: TaskContext) -> dict[str, Any]:
        return {"inputs": len(records)}


def tokenise_documents(batch: dict[str, list], indices: list[int], tokenizer) -> dict[str, list]:
    """Each document's word pieces (no special tokens) and where words start."""
    encoded = tokenizer(batch["text"], add_special_tokens=False, return_attention_mask=False,
                        return_token_type_ids=False, verbose=False)
    word_start = []
    for i in range(len(batch["text"])):
        words = encoded.word_ids(i)
        word_start.append([j == 0 or words[j] != words[j - 1] for j in range(len(words))])
    return {"document": indices, "input_ids": encoded["input_ids"], "word_start": word_start}


class PretrainCollator:
    """Pads inputs (pad id), token types (0) and MLM labels (ignored) to the longest input, to a
    multiple of 8 under mixed precision, and builds the attention mask and the masked tokens'
    positions (`mlm_positions`, found here on the host). Inputs stored unmasked
    (dynamic masking: no `mlm_labels`) are masked here, with the epoch the engine last set, after
    their pairs are drawn again for it (`pairs`, --pairing per_epoch)."""

    def __init__(self, pad_id: int, pad_to_multiple_of: Optional[int], masking: Optional[DynamicMasking] = None,
                 pairs: Optional[PairRedraw] = None) -> None:
        self.pad_id, self.multiple, self.masking, self.pairs = pad_id, pad_to_multiple_of, masking, pairs

    def set_epoch(self, epoch: int) -> None:
        """Called by the engine before each training epoch's batches (also when resuming into one)."""
        for drawn in (self.masking, self.pairs):
            if drawn is not None:
                drawn.epoch = epoch

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if self.pairs is not None and "mlm_labels" not in rows[0]:
            rows = [self.pairs(r) for r in rows]
        if "mlm_labels" not in rows[0]:
            if self.masking is None:
                raise ValueError("unmasked inputs but no dynamic masking was set up")
            masked = []
            for r in rows:
                ids, labels = self.masking(r)
                masked.append({**r, "input_ids": ids, "mlm_labels": labels})
            rows = masked
        length = max(len(r["input_ids"]) for r in rows)
        if self.multiple:
            length = -(-length // self.multiple) * self.multiple
        batch = {"input_ids": torch.full((len(rows), length), self.pad_id, dtype=torch.long),
                 "token_type_ids": torch.zeros((len(rows), length), dtype=torch.long),
                 "attention_mask": torch.zeros((len(rows), length), dtype=torch.long),
                 "mlm_labels": torch.full((len(rows), length), IGNORE, dtype=torch.long)}
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            batch["input_ids"][i, :n] = torch.tensor(r["input_ids"])
            batch["token_type_ids"][i, :n] = torch.tensor(r["token_type_ids"])
            batch["attention_mask"][i, :n] = 1
            batch["mlm_labels"][i, :n] = torch.tensor(r["mlm_labels"])
        batch["relation_label"] = torch.tensor([r["relation_label"] for r in rows], dtype=torch.long)
        batch["mlm_positions"] = masked_positions(batch["mlm_labels"])  # on the host: see model.heads
        return batch


if __name__ == "__main__":
    main(PretrainTask)
