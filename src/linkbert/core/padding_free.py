"""Padding-free BERT (`--padding_free`): compute on the real tokens of a batch only.

A padded batch of B sequences of width L costs B x L tokens of work in every linear layer,
LayerNorm and dropout; with dynamic padding about half of them are padding on BLURB relation
sentences. Here the collator packs the real tokens of the batch into one row of T tokens
(`pack_batch`), and the model runs the HF BERT modules themselves over that row:

    embeddings(input_ids[T], token_type_ids[T], position_ids[T])    -> [1, T, hidden]
    encoder layers (HF's BertLayer, its own weights)                 -> [1, T, hidden]
        attention: each sequence over itself only (`packed_attention`)
    task head on the packed tokens (pooler on each sequence's first token for seqcls/MC)
    token outputs scattered back to [B, L] for the task's post-processing
    (pretraining: hidden states scattered back, then the model's own MLM + DRP heads)

Nothing about the model changes: the weights are the HF module's own, its `state_dict` and
`save_pretrained` folder are the ordinary ones, and `type(model).forward(model, ...)` stays the
padded reference (the tests compare the two). `enable(model)` only sets this instance's
`forward` and registers the attention function under `ATTENTION_NAME`.

Attention per sequence: on CUDA, SDPA over a jagged nested tensor (torch's variable-length
kernels; attention dropout included); elsewhere the sequences sorted by length and cut into a few
buckets (`plan_buckets`, once per forward), one attention call per bucket, so the number of ops per
layer does not grow with the number of sequences: masked SDPA without attention dropout
(evaluation), `cpu_attention`'s kernel with it (training). Training under
`--attn_implementation torch_sdpa`, or a batch too small for the kernel, runs SDPA on each
sequence in turn: SDPA's math path with dropout made the buckets 5% slower than that loop
(`bench/bench_padding_free.py`, bench/README.md). Position
ids are each token's position in its padded row, as the HF forward numbers them, so the outputs
equal the padded forward's on real tokens.

What differs from a padded run: the QA span loss and answer search see no padding positions
(padding logits are -inf), as with no padding at all; dropout masks differ, as with any change
of padding. Everything else is equal within float rounding (tests/test_padding_free.py).
"""

from __future__ import annotations

import itertools
import types
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss

from . import cpu_attention
from .errors import UserError

ATTENTION_NAME = "linkbert_packed"
#: Batch keys that stay on the host (the engine moves only tensors): the per-sequence lengths
#: the attention loop needs, and the padded shape the token outputs go back to.
HOST_KEYS = ("seq_lengths", "padded_shape")
SUPPORTED = ("BertForSequenceClassification", "BertForTokenClassification", "BertForQuestionAnswering",
             "BertForMultipleChoice", "LinkBertForPreTraining")


# -- the batch ----------------------------------------------------------------------------------
def pack_batch(batch: dict) -> dict:
    """A padded batch ([B, L], or [B, N, L] for multiple choice) -> its real tokens, packed.

    Returns input_ids / token_type_ids / position_ids of shape [T], `packed_index` (each real
    token's place in the flattened padded batch, to scatter token outputs back), `cu_seqlens`
    ([S+1], S = number of sequences), `seq_lengths` and `padded_shape` (host values), and the
    labels: per-sequence labels as they are, per-token labels (NER) packed like the tokens."""
    mask = batch["attention_mask"].bool()
    shape = tuple(mask.shape)
    rows = mask.reshape(-1, shape[-1])
    index = rows.reshape(-1).nonzero().squeeze(1)
    lengths = rows.sum(1)
    packed = {"packed_index": index, "seq_lengths": lengths.tolist(), "padded_shape": shape,
              "cu_seqlens": torch.nn.functional.pad(lengths.cumsum(0), (1, 0)),
              "position_ids": torch.arange(shape[-1]).expand_as(rows).reshape(-1)[index]}
    for key, value in batch.items():
        if key == "attention_mask":
            continue
        # NER labels are per token (integers, shaped like the mask); multi-label targets are floats.
        per_token = key in ("input_ids", "token_type_ids") or (
            key == "labels" and value.shape == mask.shape and not value.is_floating_point())
        packed[key] = value.reshape(-1)[index] if per_token else value
    return packed


class PackingCollator:
    """The task's own collator (which pads), then `pack_batch`."""

    def __init__(self, collate) -> None:
        self.collate = collate

    def __call__(self, rows: list[dict]) -> dict:
        return pack_batch(self.collate(rows))


# -- attention ------------------------------------------------------------------------------------
def packed_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: Optional[torch.Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
                     seq_lengths: Optional[list[int]] = None, cu_seqlens: Optional[torch.Tensor] = None,
                     buckets: Optional[Buckets] = None, **kwargs) -> tuple[torch.Tensor, None]:
    """HF attention interface. query/key/value: [1, heads, T, head_dim] over the packed row;
    each sequence attends to itself only. Returns [1, T, heads, head_dim]. A call without
    `seq_lengths` is an ordinary padded one (the reference forward) and goes to SDPA. `buckets`
    (made by `_encode` off CUDA) selects the bucketed path."""
    if seq_lengths is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    q, k, v = query[0], key[0], value[0]  # [heads, T, head_dim]
    if buckets is not None:
        out = _bucketed_attention(q, k, v, buckets, dropout, scaling)
    elif not q.is_cuda:  # training with attention dropout, or CPU_BUCKETS off
        out = _per_sequence_attention(q, k, v, seq_lengths, dropout, scaling)
    else:
        assert cu_seqlens is not None, "pack() gives both"
        out = _nested_attention(q, k, v, cu_seqlens, seq_lengths, dropout, scaling)
    return out.transpose(0, 1).unsqueeze(0), None  # [1, T, heads, head_dim]


def _per_sequence_attention(q, k, v, seq_lengths: list[int], dropout: float, scaling: Optional[float]):
    """SDPA on each sequence in turn (the CPU path before the buckets; kept as their reference)."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    parts = [sdpa(qs, ks, vs, dropout_p=dropout, scale=scaling)
             for qs, ks, vs in zip(q.split(seq_lengths, 1), k.split(seq_lengths, 1), v.split(seq_lengths, 1))]
    return torch.cat(parts, dim=1)


#: Off CUDA and without attention dropout, attention by length buckets (`use_buckets`); False:
#: one SDPA call per sequence there too (`bench/bench_padding_free.py`'s comparison; same results).
CPU_BUCKETS = True
#: A bucket's fixed cost, in attention token pairs (query x key): one more SDPA call, its mask and
#: its slices cost about what this many padded pairs do (MiniLM's 12 heads x 32, one CPU thread;
#: `bench/bench_padding_free.py`'s attention table). Only speed depends on it.
BUCKET_CALL_PAIRS = 4096


@dataclass
class Buckets:
    """The CPU attention plan of one packed batch, made once per forward on the host: sequences
    sorted by length and cut into a few buckets, each padded to its longest sequence, so that
    attention is one masked SDPA call per bucket however many sequences the batch holds.

    `gather` [P]: for each slot of the buckets laid end to end, the packed token it reads
    (padding slots read token 0; their keys are masked and their outputs dropped); `scatter`
    [T]: each packed token's slot; `shapes`: (sequences, width) per bucket; `masks`: each
    bucket's key mask [n, 1, 1, width], None where its sequences have one length."""
    gather: torch.Tensor
    scatter: torch.Tensor
    shapes: list[tuple[int, int]]
    masks: list[Optional[torch.Tensor]]


def _bucket_bounds(lengths: list[int]) -> list[int]:
    """Cut points of `lengths` (sorted, longest first) into buckets minimising the attention
    pairs computed (padding included) plus BUCKET_CALL_PAIRS per bucket: dynamic programming,
    O(S^2) on the host for S sequences."""
    best, cut = [0.0], [0]
    for end in range(1, len(lengths) + 1):
        costs = [best[start] + BUCKET_CALL_PAIRS + (end - start) * lengths[start] ** 2 for start in range(end)]
        start = min(range(end), key=costs.__getitem__)
        best.append(costs[start])
        cut.append(start)
    bounds, end = [len(lengths)], len(lengths)
    while end:
        end = cut[end]
        bounds.append(end)
    return bounds[::-1]


def plan_buckets(seq_lengths: list[int]) -> Buckets:
    """The bucket plan of a packed batch with these sequence lengths (see `Buckets`)."""
    starts = [0, *itertools.accumulate(seq_lengths)][:-1]
    order = sorted(range(len(seq_lengths)), key=lambda i: -seq_lengths[i])
    lengths = [seq_lengths[i] for i in order]
    bounds = _bucket_bounds(lengths)
    gather: list[int] = []
    scatter = [0] * sum(seq_lengths)
    shapes, masks = [], []
    for lo, hi in zip(bounds, bounds[1:]):
        width = lengths[lo]
        for i in order[lo:hi]:
            for j in range(seq_lengths[i]):
                scatter[starts[i] + j] = len(gather) + j
            gather += [*range(starts[i], starts[i] + seq_lengths[i]), *[0] * (width - seq_lengths[i])]
        shapes.append((hi - lo, width))
        bucket = torch.tensor(lengths[lo:hi])
        masks.append(None if lengths[hi - 1] == width else
                     (torch.arange(width)[None] < bucket[:, None])[:, None, None])
    return Buckets(torch.tensor(gather), torch.tensor(scatter), shapes, masks)


def _bucketed_attention(q, k, v, buckets: Buckets, dropout: float, scaling: Optional[float]):
    """[heads, T, d] -> [heads, T, d]: one masked SDPA per bucket. q/k/v are HF's projections,
    [T, heads, d] in memory, so the gathers read rows and the bucket views are the layout HF's
    padded path hands SDPA ([n, heads, width, d] over [n, width, heads, d])."""
    heads, _, dim = q.shape
    sizes = [n * width for n, width in buckets.shapes]
    # split, not slices: a slice's backward writes a zero tensor of the whole buffer per bucket.
    qs, ks, vs = (x.transpose(0, 1).index_select(0, buckets.gather).split(sizes) for x in (q, k, v))
    parts = []
    for (n, width), mask, qb, kb, vb in zip(buckets.shapes, buckets.masks, qs, ks, vs):
        qb, kb, vb = (x.view(n, width, heads, dim).transpose(1, 2) for x in (qb, kb, vb))  # [n, heads, width, d]
        if dropout:  # only where the dropout kernel serves the batch (`use_buckets`)
            out = cpu_attention.dropout_attention(qb, kb, vb, mask, dropout, scaling)
        else:
            out = torch.nn.functional.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, scale=scaling)
        parts.append(out.transpose(1, 2).reshape(n * width, heads, dim))
    return torch.cat(parts).index_select(0, buckets.scatter).transpose(0, 1)


def _nested_attention(q, k, v, cu_seqlens: torch.Tensor, seq_lengths: list[int], dropout: float,
                      scaling: Optional[float]):
    """SDPA over a jagged nested tensor: torch's variable-length flash / memory-efficient
    kernels on CUDA (the offsets are `cu_seqlens` on the device, the extreme lengths come from
    the host: no synchronisation)."""
    offsets = cu_seqlens.to(torch.int64)

    def nested(x):  # [heads, T, d] -> [S, heads, j, d] (no copy: HF's projections are [T, heads, d] in memory)
        return torch.nested.nested_tensor_from_jagged(x.transpose(0, 1).contiguous(), offsets=offsets,
                                                      max_seqlen=max(seq_lengths),
                                                      min_seqlen=min(seq_lengths)).transpose(1, 2)

    out = torch.nn.functional.scaled_dot_product_attention(nested(q), nested(k), nested(v), dropout_p=dropout,
                                                           scale=scaling)
    return out.transpose(1, 2).values().transpose(0, 1)  # [heads, T, d]


# -- the model ------------------------------------------------------------------------------------
def is_supported(model: torch.nn.Module) -> bool:
    return type(model).__name__ in SUPPORTED and getattr(getattr(model, "config", None), "model_type", None) == "bert"


def check_supported(model: torch.nn.Module) -> None:
    if not is_supported(model):
        name, model_type = type(model).__name__, getattr(getattr(model, "config", None), "model_type", None)
        raise UserError("unsupported_setup", f"--padding_free runs BERT models ({', '.join(SUPPORTED)}); this "
                        f"model is {name} (model_type {model_type!r}): drop --padding_free")


def default_for(wanted: Optional[bool], model: torch.nn.Module, device: torch.device, task_default: bool) -> bool:
    """Whether a run computes padding-free: as --padding_free says (true: for a model it can run,
    else the flag's error), and without the flag where it is measured faster and result-neutral
    (bench/README.md): on the CPU, for a task whose `Task.padding_free_by_default` is set, with a
    BERT model of SUPPORTED; any other model silently padded, and so is one built with the
    original's attention (`--attn_implementation eager`, asked for parity), which packing would
    replace. On CUDA the padded path stays the default until bench/gpu_check.py has compared the
    two on a GPU."""
    if wanted is not None:
        if wanted:
            check_supported(model)
        return wanted
    eager = getattr(model.config, "_attn_implementation", None) == "eager"
    return device.type == "cpu" and task_default and is_supported(model) and not eager


def enable(model: torch.nn.Module) -> torch.nn.Module:
    """Make `model` (one of SUPPORTED) take packed batches. Returns the same object. A model built
    with `--attn_implementation sdpa` (cpu_attention's name) keeps its CPU attention-dropout kernel,
    in the buckets (`use_buckets`); `torch_sdpa` and `eager` ones keep torch's dropout."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    check_supported(model)
    setattr(model, "padding_free_dropout_kernel",
            getattr(model.config, "_attn_implementation", None) == cpu_attention.ATTENTION_NAME)
    AttentionInterface.register(ATTENTION_NAME, packed_attention)
    # Padded calls (the reference forward) get SDPA's mask; packed calls build none.
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    getattr(model, "set_attn_implementation")(ATTENTION_NAME)  # a PreTrainedModel's (check_supported)
    model.forward = types.MethodType(_FORWARDS[type(model).__name__], model)
    return model


def is_enabled(model: torch.nn.Module) -> bool:
    return "forward" in vars(model)


def use_buckets(model: torch.nn.Module, device: torch.device, seq_lengths: list[int]) -> bool:
    """Off CUDA (which has the nested tensor's variable-length kernels), attention runs in length
    buckets: without attention dropout (evaluation) one masked SDPA per bucket, 1.21-1.41x as fast
    as SDPA per sequence on QA windows and PubMedQA abstracts; with it, cpu_attention's kernel per
    bucket where the model uses it. torch's SDPA with dropout leaves its fused kernel for the math
    path, where the buckets' masks and padding made training 5% slower than SDPA per sequence
    (bench/README.md), so `--attn_implementation torch_sdpa` training keeps the per-sequence calls."""
    dropout = getattr(model.config, "attention_probs_dropout_prob", 0.0) if model.training else 0.0
    if not CPU_BUCKETS or device.type == "cuda":
        return False
    heads: int = getattr(model.config, "num_attention_heads")
    scores = heads * sum(n * n for n in seq_lengths)  # what the sequences attend
    return not dropout or (getattr(model, "padding_free_dropout_kernel", False)
                           and cpu_attention.usable(device, dropout, None, scores))


def _encode(model, input_ids, token_type_ids, position_ids, seq_lengths, cu_seqlens) -> torch.Tensor:
    """The BERT encoder over the packed row: [T] ids -> [T, hidden]."""
    bert = model.bert
    hidden = bert.embeddings(input_ids=input_ids[None], position_ids=position_ids[None],
                             token_type_ids=None if token_type_ids is None else token_type_ids[None])
    buckets = None
    if use_buckets(model, input_ids.device, seq_lengths):
        plan = plan_buckets(seq_lengths)
        buckets = Buckets(plan.gather.to(input_ids.device), plan.scatter.to(input_ids.device), plan.shapes,
                          [None if m is None else m.to(input_ids.device) for m in plan.masks])
    hidden = bert.encoder(hidden, attention_mask=None, seq_lengths=seq_lengths, cu_seqlens=cu_seqlens,
                          buckets=buckets)
    return hidden.last_hidden_state[0]


def _pooled(model, hidden: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """BertPooler on each sequence's first token ([CLS]): [S, hidden]."""
    return model.bert.pooler(hidden[cu_seqlens[:-1]].unsqueeze(1))


def _unpack(values: torch.Tensor, packed_index: torch.Tensor, shape: tuple, fill: float) -> torch.Tensor:
    """[T, ...] token outputs -> [*shape, ...], `fill` at the padding positions."""
    out = values.new_full((shape[0] * shape[1], *values.shape[1:]), fill)
    return out.index_copy(0, packed_index, values).view(*shape, *values.shape[1:])


def _seqcls_forward(self, input_ids, position_ids, packed_index, cu_seqlens, seq_lengths, padded_shape,
                    token_type_ids=None, labels=None, **kwargs):
    from transformers.modeling_outputs import SequenceClassifierOutput

    hidden = _encode(self, input_ids, token_type_ids, position_ids, seq_lengths, cu_seqlens)
    logits = self.classifier(self.dropout(_pooled(self, hidden, cu_seqlens)))
    loss = None
    if labels is not None:  # as BertForSequenceClassification
        if self.config.problem_type is None:
            self.config.problem_type = ("regression" if self.num_labels == 1 else "single_label_classification"
                                        if labels.dtype in (torch.long, torch.int) else "multi_label_classification")
        if self.config.problem_type == "regression":
            loss = MSELoss()(logits.squeeze(), labels.squeeze()) if self.num_labels == 1 else MSELoss()(logits, labels)
        elif self.config.problem_type == "single_label_classification":
            loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        else:
            loss = BCEWithLogitsLoss()(logits, labels)
    return SequenceClassifierOutput(loss=loss, logits=logits)


def _mc_forward(self, input_ids, position_ids, packed_index, cu_seqlens, seq_lengths, padded_shape,
                token_type_ids=None, labels=None, **kwargs):
    from transformers.modeling_outputs import MultipleChoiceModelOutput

    hidden = _encode(self, input_ids, token_type_ids, position_ids, seq_lengths, cu_seqlens)
    logits = self.classifier(self.dropout(_pooled(self, hidden, cu_seqlens))).view(padded_shape[0], padded_shape[1])
    loss = CrossEntropyLoss()(logits, labels) if labels is not None else None
    return MultipleChoiceModelOutput(loss=loss, logits=logits)


def _tokcls_forward(self, input_ids, position_ids, packed_index, cu_seqlens, seq_lengths, padded_shape,
                    token_type_ids=None, labels=None, **kwargs):
    from transformers.modeling_outputs import TokenClassifierOutput

    hidden = _encode(self, input_ids, token_type_ids, position_ids, seq_lengths, cu_seqlens)
    logits = self.classifier(self.dropout(hidden))  # [T, labels]
    loss = CrossEntropyLoss()(logits, labels) if labels is not None else None  # labels packed alike
    return TokenClassifierOutput(loss=loss, logits=_unpack(logits, packed_index, padded_shape, 0.0))


def _qa_forward(self, input_ids, position_ids, packed_index, cu_seqlens, seq_lengths, padded_shape,
                token_type_ids=None, start_positions=None, end_positions=None, **kwargs):
    from transformers.modeling_outputs import QuestionAnsweringModelOutput

    hidden = _encode(self, input_ids, token_type_ids, position_ids, seq_lengths, cu_seqlens)
    logits = self.qa_outputs(hidden)  # [T, 2]
    # Padding positions get -inf: no probability in the loss, never among the best answers.
    start_logits, end_logits = _unpack(logits, packed_index, padded_shape, float("-inf")).unbind(-1)
    loss = None
    if start_positions is not None and end_positions is not None:  # as BertForQuestionAnswering
        ignored_index = start_logits.size(1)
        loss_fct = CrossEntropyLoss(ignore_index=ignored_index)
        loss = (loss_fct(start_logits, start_positions.view(-1).clamp(0, ignored_index)) +
                loss_fct(end_logits, end_positions.view(-1).clamp(0, ignored_index))) / 2
    return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits)


def _pretrain_forward(self, input_ids, position_ids, packed_index, cu_seqlens, seq_lengths, padded_shape,
                      token_type_ids=None, mlm_labels=None, relation_label=None, mlm_positions=None, **kwargs):
    """LinkBertForPreTraining (linkbert.pretrain.model): the encoder on the packed tokens, then
    the model's own `heads` on the hidden states put back in place. The MLM head reads only the
    masked positions and DRP the pooled [CLS], so the zeros at padding positions are never used."""
    hidden = _encode(self, input_ids, token_type_ids, position_ids, seq_lengths, cu_seqlens)
    return self.heads(_unpack(hidden, packed_index, padded_shape, 0.0), _pooled(self, hidden, cu_seqlens),
                      mlm_labels, relation_label, mlm_positions)


_FORWARDS: dict[str, Callable[..., Any]] = {
    "BertForSequenceClassification": _seqcls_forward, "BertForMultipleChoice": _mc_forward,
    "BertForTokenClassification": _tokcls_forward, "BertForQuestionAnswering": _qa_forward,
    "LinkBertForPreTraining": _pretrain_forward}
