"""--padding_free (linkbert.core.padding_free) computes what the padded HF forward computes.

Each task's real features (tokenised by the task itself from the samples) are batched by the
task's own collator, which pads; the reference is the HF class's own forward on that padded
batch (`type(model).forward`), the padding-free one the same model on the packed batch. With
dropout off they must agree on every real token within float32 rounding (1e-5): logits, loss
and every gradient. Whole runs with and without the flag must end with the same weights and
the same prediction files; the two-process DDP and FSDP2 runs are in test_distributed.py.
Pretraining (MLM + DRP, linkbert.pretrain) is checked the same way on a small linked corpus.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_task, sample_dir
from test_pretrain import CHEMPROT, pretrain_flags, write_corpus
from safetensors.torch import load_file

from linkbert.core import padding_free
from linkbert.core.args import parse_args
from linkbert.core.errors import UserError
from linkbert.core.run import build_features, load_model, resolve_context
from linkbert.mc.run_multiple_choice import MultipleChoiceTask
from linkbert.pretrain.run_pretrain import PretrainTask
from linkbert.seqcls.run_seqcls import SeqClsTask
from linkbert.tasks import TASKS
from linkbert.tokcls.run_ner import NerTask

ATOL = 1e-5


def case(task: str, *flags: str):
    """(Task class, sample folder, flags): the task's --metric_name (linkbert.tasks) and `flags`
    (the original scripts' lengths, some shortened)."""
    info = TASKS[task]
    return info.task_class, sample_dir(task), [*(["--metric_name", info.metric_name] if info.metric_name else []),
                                               *flags]


CASES = {
    "chemprot": case("chemprot_hf", "--max_seq_length", "256"),
    "pubmedqa": case("pubmedqa_hf", "--max_seq_length", "512"),
    "biosses": case("BIOSSES_hf"),
    "hoc": case("HoC_hf"),
    "ner": case("NCBI-disease_hf", "--max_seq_length", "512"),
    "qa": case("squad_hf", "--max_seq_length", "128", "--doc_stride", "32"),
    "mc": case("medqa_usmle_hf", "--max_seq_length", "128"),
}

# One tiny model (dropout off) whose vocabulary covers every sample used here: built once.
ALL_FILES = sorted(f for _, folder, _ in CASES.values() for f in folder.glob("*.json"))


def task_and_batch(name: str, model_dir: str, tmp_path, batch_size: int = 6):
    """The task's model and a padded training batch of its first `batch_size` features."""
    task_cls, folder, flags = CASES[name]
    return batch_of(task_cls, ["--model_name_or_path", model_dir, "--train_file", str(folder / "train.json"),
                               "--do_train", "--output_dir", str(tmp_path / "out"), *flags], batch_size)


def batch_of(task_cls, argv: list, batch_size: int):
    from transformers import set_seed

    model_args, data_args, args, task_args = parse_args(task_cls.arguments, [str(a) for a in argv])
    task = task_cls(model_args, data_args, args, task_args)
    splits, checked = task.load_examples(["train"])  # pretraining: its corpus
    ctx, config = resolve_context(task, checked)
    set_seed(0)
    model = load_model(task, config)
    features = build_features(task, ctx, "train", splits["train"], training=True)
    inputs = features.select_columns([c for c in task.model_inputs if c in features.column_names])
    return task, model, task.collator(ctx)([inputs[i] for i in range(batch_size)])


def real_token_outputs(name: str, out, mask: torch.Tensor) -> list[torch.Tensor]:
    """The outputs that belong to real tokens (padding positions have no meaning)."""
    if name == "qa":
        return [out.start_logits[mask], out.end_logits[mask]]
    if name == "ner":
        return [out.logits[mask]]
    return [out.logits]


@pytest.mark.parametrize("name", list(CASES))
def test_forward_and_gradients_equal_the_padded_hf_forward(name, tiny_model, tmp_path):
    model_dir = tiny_model(ALL_FILES, dropout=0.0)
    _, model, batch = task_and_batch(name, model_dir, tmp_path)
    mask = batch["attention_mask"].bool()
    lengths = mask.reshape(-1, mask.shape[-1]).sum(1)
    assert lengths.min() < mask.shape[-1], "the batch must hold padding, or the comparison says nothing"

    model.train()  # dropout is 0: train mode must still be deterministic
    reference = type(model).forward(model, **batch)
    ref_loss = reference.loss
    if name == "qa":  # padding-free QA spreads the span softmax over real tokens only
        lost = [torch.nn.functional.cross_entropy(logits.masked_fill(~mask, float("-inf")), batch[key])
                for logits, key in ((reference.start_logits, "start_positions"),
                                    (reference.end_logits, "end_positions"))]
        ref_loss = (lost[0] + lost[1]) / 2
    ref_loss.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    padding_free.enable(model)
    packed = padding_free.pack_batch(batch)
    assert packed["input_ids"].numel() == int(mask.sum())  # only real tokens go in
    out = model(**packed)
    out.loss.backward()

    for got, want in zip(real_token_outputs(name, out, mask), real_token_outputs(name, reference, mask), strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.loss, ref_loss, atol=ATOL, rtol=0)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == ref_grads.keys()
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], atol=ATOL, rtol=0, msg=n)
    if name == "qa":  # padding positions never win an answer
        assert torch.isneginf(out.start_logits[~mask]).all()


@pytest.mark.parametrize("name", ["chemprot", "ner", "mc"])  # QA: loss differs by design (forward test above)
def test_training_run_ends_with_the_same_weights_and_predictions(name, tiny_model, tmp_path):
    """A few updates (dropout off) with and without --padding_free: the same weights within
    float32 rounding, the same prediction files, and ordinary save_pretrained folders."""
    task_cls, folder, flags = CASES[name]
    # adam_epsilon 1e-6 as the original MedQA/BLURB scripts: AdamW turns float noise in a
    # gradient that is exactly zero in theory (MC's classifier bias: a softmax over choices
    # ignores a shift) into steps of up to lr x noise / eps; with eps 1e-8 that alone is 2.7e-4.
    common = ["--model_name_or_path", tiny_model(ALL_FILES, dropout=0.0), "--train_file", folder / "train.json",
              "--validation_file", folder / "dev.json", "--do_train", "--do_eval", "--max_steps", "4",
              "--per_device_train_batch_size", "4", "--learning_rate", "5e-4", "--adam_epsilon", "1e-6",
              "--save_strategy", "no", "--disable_tqdm", *flags]
    runs = {}
    for variant, extra in (("padded", ["--padding_free", "false"]), ("padding_free", ["--padding_free"])):
        runs[variant] = tmp_path / variant
        run_task(task_cls, [*common, *extra, "--output_dir", runs[variant]])
    got, want = (load_file(runs[v] / "model.safetensors") for v in ("padding_free", "padded"))
    start = {f"bert.{k}": v for k, v in load_file(f"{common[1]}/model.safetensors").items()}  # a BertModel
    assert got.keys() == want.keys()
    assert max((want[k] - start[k]).abs().max() for k in start if k in want) > 10 * ATOL, \
        "the run must change the weights, or the comparison says nothing"
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=ATOL, rtol=0, msg=k)
    assert (runs["padding_free"] / "eval_predictions.jsonl").read_text() == \
        (runs["padded"] / "eval_predictions.jsonl").read_text()
    config = json.loads((runs["padding_free"] / "config.json").read_text())
    assert config["architectures"] == [type_name(task_cls)] and padding_free.ATTENTION_NAME not in json.dumps(config)


def type_name(task_cls) -> str:
    return {SeqClsTask: "BertForSequenceClassification", NerTask: "BertForTokenClassification",
            MultipleChoiceTask: "BertForMultipleChoice"}[task_cls]


def test_other_architectures_are_refused_in_one_line():
    with pytest.raises(UserError) as caught:
        padding_free.enable(tiny_head("RobertaForSequenceClassification"))
    assert caught.value.kind == "unsupported_setup" and "RobertaForSequenceClassification" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_cuda_attention_path_computes_what_the_cpu_path_computes():
    """The nested-tensor SDPA used on CUDA, run here on the CPU, against the per-sequence loop,
    and both keep sequences apart."""
    torch.manual_seed(0)
    lengths = [7, 1, 12, 4]
    q, k, v = (torch.randn(2, sum(lengths), 8) for _ in range(3))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    loop = padding_free._per_sequence_attention(q, k, v, lengths, 0.0, None)
    nested = padding_free._nested_attention(q, k, v, cu, lengths, 0.0, None)
    torch.testing.assert_close(nested, loop, atol=1e-6, rtol=0)
    # Sequences stay apart: changing the last sequence's keys leaves the others' outputs alone.
    k2 = k.clone()
    k2[:, -lengths[-1]:] += 1.0
    for attend in (lambda kk: padding_free._per_sequence_attention(q, kk, v, lengths, 0.0, None),
                   lambda kk: padding_free._nested_attention(q, kk, v, cu, lengths, 0.0, None)):
        a, b = attend(k), attend(k2)
        torch.testing.assert_close(a[:, :-lengths[-1]], b[:, :-lengths[-1]], atol=0, rtol=0)
        assert not torch.equal(a[:, -lengths[-1]:], b[:, -lengths[-1]:])


@pytest.mark.parametrize("lengths", [[7, 1, 12, 4], [5, 5, 5], [90, 88, 3, 3, 2, 1, 60, 61, 1], [1]])
def test_bucketed_attention_computes_what_one_sequence_at_a_time_computes(lengths):
    """The CPU path (sequences cut into length buckets, one masked SDPA each) against SDPA run on
    each sequence alone: outputs and gradients, sequences kept apart, few calls for many sequences."""
    torch.manual_seed(0)
    qkv = [torch.randn(sum(lengths), 2, 8).transpose(0, 1).requires_grad_() for _ in range(3)]
    buckets = padding_free.plan_buckets(lengths)
    out = padding_free._bucketed_attention(*qkv, buckets, 0.0, None)
    grads = torch.autograd.grad((out * out.detach()).sum(), qkv)
    ref = padding_free._per_sequence_attention(*qkv, lengths, 0.0, None)
    ref_grads = torch.autograd.grad((ref * ref.detach()).sum(), qkv)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=0)
    assert sum(n for n, _ in buckets.shapes) == len(lengths) and len(buckets.shapes) <= 3
    assert buckets.gather[buckets.scatter].tolist() == list(range(sum(lengths)))  # each token reads itself
    if len(lengths) > 1:  # changing the last sequence's keys and values leaves the others' outputs alone
        k2, v2 = (x.detach().clone() for x in qkv[1:])
        k2[:, -lengths[-1]:] += torch.randn(2, lengths[-1], 8)
        v2[:, -lengths[-1]:] += torch.randn(2, lengths[-1], 8)
        moved = padding_free._bucketed_attention(qkv[0], k2, v2, buckets, 0.0, None)
        torch.testing.assert_close(moved[:, :-lengths[-1]], out[:, :-lengths[-1]], atol=1e-6, rtol=0)
        assert not torch.allclose(moved[:, -lengths[-1]:], out[:, -lengths[-1]:])


def test_bucket_plan_is_one_call_for_equal_lengths_and_splits_far_apart_ones():
    assert padding_free.plan_buckets([40] * 32).shapes == [(32, 40)]
    assert padding_free.plan_buckets([40] * 32).masks == [None]
    # 2 long and 30 short sequences: padding the short ones to 300 would cost far more than a call.
    shapes = padding_free.plan_buckets([300, 298, *[20] * 30]).shapes
    assert shapes == [(2, 300), (30, 20)]


def test_buckets_serve_evaluation_and_training_through_the_dropout_kernel(monkeypatch):
    from transformers import BertConfig, BertModel

    from linkbert.core import cpu_attention

    model = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, attention_probs_dropout_prob=0.1))
    cpu, lengths = torch.device("cpu"), [30, 20]  # 2 heads x (900 + 400) scores
    monkeypatch.setattr(cpu_attention, "MIN_SCORES", 2600)
    model.padding_free_dropout_kernel = True  # --attn_implementation sdpa (the default)
    assert padding_free.use_buckets(model.train(), cpu, lengths)  # the kernel per bucket
    assert not padding_free.use_buckets(model.train(), cpu, [30, 19])  # too small for the kernel: per sequence
    model.padding_free_dropout_kernel = False  # torch_sdpa: its math path's dropout, per sequence
    assert not padding_free.use_buckets(model.train(), cpu, lengths)
    assert padding_free.use_buckets(model.eval(), cpu, lengths)
    model.config.attention_probs_dropout_prob = 0.0
    assert padding_free.use_buckets(model.train(), cpu, lengths)
    assert not padding_free.use_buckets(model, torch.device("cuda"), lengths)  # nested tensors there


def test_bucketed_attention_with_the_dropout_kernel_masks_each_bucket_as_without_dropout():
    # A dropout so small that its threshold rounds to 0 drops nothing: the kernel's path through the
    # buckets (gathers, key masks, scatter) must then give plain attention and its gradients.
    lengths = [9, 3, 7, 2]
    buckets = padding_free.plan_buckets(lengths)
    assert any(m is not None for m in buckets.masks)
    torch.manual_seed(0)
    qkv = [torch.randn(2, sum(lengths), 8, requires_grad=True) for _ in range(3)]
    out = padding_free._bucketed_attention(*qkv, buckets, 1e-12, None)
    grad = torch.randn_like(out)
    out.backward(grad)
    grads = [x.grad.clone() for x in qkv]
    ref_qkv = [x.detach().clone().requires_grad_() for x in qkv]
    ref = padding_free._per_sequence_attention(*ref_qkv, lengths, 0.0, None)
    ref.backward(grad)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    for g, r in zip(grads, ref_qkv):
        torch.testing.assert_close(g, r.grad, atol=1e-5, rtol=0)


# -- pretraining (linkbert.pretrain: MLM at the masked positions + DRP on the pooled [CLS]) ---------
@pytest.fixture(scope="module")
def pretraining(tiny_model, tmp_path_factory) -> tuple[str, str]:
    """(tiny model with dropout off, linked corpus), as tests/test_pretrain.py builds them."""
    corpus = write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.jsonl")
    return tiny_model([corpus, *sorted(CHEMPROT.glob("*.json"))], dropout=0.0), str(corpus)


def test_pretraining_losses_logits_and_gradients_equal_the_padded_forward(pretraining, tmp_path):
    model_dir, corpus = pretraining
    _, model, batch = batch_of(PretrainTask, pretrain_flags(model_dir, corpus, tmp_path / "out"), batch_size=8)
    mask = batch["attention_mask"].bool()
    assert mask.sum(1).min() < mask.shape[1] and (batch["mlm_labels"] != -100).any()
    model.train()
    reference = type(model).forward(model, **batch)
    reference.loss.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    padding_free.enable(model)
    packed = padding_free.pack_batch(batch)
    assert packed["input_ids"].numel() == int(mask.sum())
    out = model(**packed)
    out.loss.backward()
    for key in ("loss", "mlm_loss", "relation_loss", "relation_logits", "mlm_example_stats"):
        torch.testing.assert_close(getattr(out, key), getattr(reference, key), atol=ATOL, rtol=0, msg=key)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == ref_grads.keys()
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], atol=ATOL, rtol=0, msg=n)
    # Without labels (inference): the full MLM logits on the real tokens.
    with torch.no_grad():
        got = model(**padding_free.pack_batch({k: v for k, v in batch.items() if k != "mlm_labels"}))
        want = type(model).forward(model, **{k: v for k, v in batch.items() if k != "mlm_labels"})
    torch.testing.assert_close(got.prediction_logits[mask], want.prediction_logits[mask], atol=ATOL, rtol=0)


def test_pretraining_run_ends_with_the_same_weights_and_metrics(pretraining, tmp_path):
    """run_pretrain with and without --padding_free (6 updates, dropout off): the same weights
    within float32 rounding and the same held-out metrics."""
    model_dir, corpus = pretraining
    runs = {}
    for variant, extra in (("padded", ["--padding_free", "false"]), ("padding_free", ["--padding_free"])):
        runs[variant] = tmp_path / variant
        run_task(PretrainTask, pretrain_flags(model_dir, corpus, runs[variant], "--save_strategy", "no", *extra))
    got, want = (load_file(runs[v] / "model.safetensors") for v in ("padding_free", "padded"))
    start = {f"bert.{k}": v for k, v in load_file(f"{model_dir}/model.safetensors").items()}
    assert got.keys() == want.keys()
    assert max((want[k] - start[k]).abs().max() for k in start if k in want) > 10 * ATOL
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=ATOL, rtol=0, msg=k)
    a, b = (json.loads((runs[v] / "eval_results.json").read_text()) for v in ("padding_free", "padded"))
    assert a["eval_drp_accuracy"] == b["eval_drp_accuracy"] and a["eval_inputs"] == b["eval_inputs"]
    assert a["eval_mlm_loss"] == pytest.approx(b["eval_mlm_loss"], abs=1e-5)


# -- the default ------------------------------------------------------------------------------------
def tiny_head(head: str):
    """A random tiny model of the named class: transformers' (a BERT config unless it is
    RoBERTa's) or linkbert.pretrain's."""
    import transformers

    from linkbert.pretrain.model import LinkBertForPreTraining

    config_class = transformers.RobertaConfig if head.startswith("Roberta") else transformers.BertConfig
    config = config_class(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=16)
    return getattr(transformers, head, LinkBertForPreTraining)(config)


CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device value: no GPU needed to decide for one


def test_the_flag_alone_is_true_false_turns_it_off_and_none_leaves_it_to_the_run(tmp_path):
    base = ["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--do_train"]
    for extra, value in (([], None), (["--padding_free"], True), (["--padding_free", "true"], True),
                         (["--padding_free", "false"], False), (["--padding_free", "--do_eval"], True)):
        assert parse_args(SeqClsTask.arguments, base + extra)[2].padding_free is value, extra


@pytest.mark.parametrize("task_cls, head", [(SeqClsTask, "BertForSequenceClassification"),
                                            (NerTask, "BertForTokenClassification"),
                                            (MultipleChoiceTask, "BertForMultipleChoice")])
def test_without_the_flag_bert_seqcls_ner_and_mc_are_padding_free_on_the_cpu_only(task_cls, head):
    model = tiny_head(head)
    assert task_cls.padding_free_by_default
    assert padding_free.default_for(None, model, CPU, task_cls.padding_free_by_default) is True
    assert padding_free.default_for(None, model, CUDA, task_cls.padding_free_by_default) is False  # until gpu_check


def test_without_the_flag_qa_and_pretraining_stay_padded_and_the_flag_still_packs_them():
    from linkbert.qa.run_qa import QATask

    for task_cls, head in ((QATask, "BertForQuestionAnswering"), (PretrainTask, "LinkBertForPreTraining")):
        model = tiny_head(head)
        assert type(model).__name__ == head and padding_free.is_supported(model) and not task_cls.padding_free_by_default
        assert padding_free.default_for(None, model, CPU, task_cls.padding_free_by_default) is False
        assert padding_free.default_for(True, model, CPU, task_cls.padding_free_by_default) is True


def test_an_explicit_flag_wins_and_other_models_are_padded_silently_unless_it_asks():
    bert, roberta = tiny_head("BertForSequenceClassification"), tiny_head("RobertaForSequenceClassification")
    assert padding_free.default_for(False, bert, CPU, True) is False
    assert padding_free.default_for(True, bert, CUDA, True) is True
    assert padding_free.default_for(None, roberta, CPU, True) is False  # no error: the default only
    bert.set_attn_implementation("eager")  # the original's attention, asked for parity: packing would replace it
    assert padding_free.default_for(None, bert, CPU, True) is False
    assert padding_free.default_for(True, bert, CPU, True) is True
    assert padding_free.default_for(False, roberta, CPU, True) is False
    with pytest.raises(UserError) as caught:
        padding_free.default_for(True, roberta, CPU, True)
    assert caught.value.kind == "unsupported_setup" and "drop --padding_free" in str(caught.value)


@pytest.mark.parametrize("flag, packed", [([], True), (["--padding_free"], True), (["--padding_free", "true"], True),
                                          (["--padding_free", "false"], False)])
def test_a_cpu_run_records_and_trains_what_it_resolved_and_a_rerun_matches_it(flag, packed, tiny_model, tmp_path,
                                                                              monkeypatch, caplog):
    """No flag on the CPU: sequence classification trains packed, and run_args.json, the run
    identity and the log say so; the same command again finds its finished training (the
    resolved value is what the identity compares)."""
    packed_batches = []
    pack = padding_free.pack_batch
    monkeypatch.setattr(padding_free, "pack_batch", lambda batch: packed_batches.append(1) or pack(batch))
    task_cls, folder, flags = CASES["chemprot"]
    out = tmp_path / "out"
    argv = ["--model_name_or_path", tiny_model(ALL_FILES), "--train_file", folder / "train.json", "--validation_file",
            folder / "dev.json", "--do_train", "--do_eval", "--max_steps", "2", "--per_device_train_batch_size", "4",
            "--save_strategy", "no", "--disable_tqdm", "--output_dir", out, *flags, *flag]
    caplog.set_level("INFO", logger="linkbert")
    run_task(task_cls, argv)
    assert bool(packed_batches) == packed
    assert json.loads((out / "run_args.json").read_text())["padding_free"] is packed
    assert json.loads((out / "run_identity.json").read_text())["arguments"]["padding_free"] is packed
    why = "the default for this task, model and device" if not flag else "as asked"
    assert f"Batches: {'padding-free (--padding_free)' if packed else 'padded'}, {why}" in caplog.messages
    caplog.clear()
    run_task(task_cls, argv)
    assert f"Weights: this run's finished training in {out}, evaluated (not trained again)" in caplog.messages


def test_a_qa_run_without_the_flag_records_and_trains_padded(tiny_model, tmp_path, monkeypatch):
    packed_batches = []
    pack = padding_free.pack_batch
    monkeypatch.setattr(padding_free, "pack_batch", lambda batch: packed_batches.append(1) or pack(batch))
    task_cls, folder, flags = CASES["qa"]
    out = tmp_path / "out"
    run_task(task_cls, ["--model_name_or_path", tiny_model(ALL_FILES), "--train_file", folder / "train.json",
                        "--do_train", "--max_steps", "1", "--per_device_train_batch_size", "4", "--save_strategy",
                        "no", "--disable_tqdm", "--output_dir", out, *flags])
    assert not packed_batches
    assert json.loads((out / "run_args.json").read_text())["padding_free"] is False
    assert json.loads((out / "run_identity.json").read_text())["arguments"]["padding_free"] is False
