"""--padding_free (linkbert.core.padding_free) computes what the padded HF forward computes.

Each task's real features (tokenised by the task itself from the samples) are batched by the
task's own collator, which pads; the reference is the HF class's own forward on that padded
batch (`type(model).forward`), the padding-free one the same model on the packed batch. With
dropout off they must agree on every real token within float32 rounding (1e-5): logits, loss
and every gradient. Whole runs with and without the flag must end with the same weights and
the same prediction files; the two-process DDP and FSDP2 runs are in test_distributed.py.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import SAMPLES, run_task
from linkbert.core import padding_free
from linkbert.core.args import parse_args
from linkbert.core.data import load_splits
from linkbert.core.engine import _ModelInputCollator
from linkbert.core.errors import UserError
from linkbert.core.run import build_features, load_model
from linkbert.core.distributed import DistState
from linkbert.mc.run_multiple_choice import MultipleChoiceTask
from linkbert.qa.run_qa import QATask
from linkbert.seqcls.run_seqcls import SeqClsTask
from linkbert.tokcls.run_ner import NerTask

ATOL = 1e-5
# name -> (task, sample folder, flags as the original scripts pass them, shortened)
CASES = {
    "chemprot": (SeqClsTask, SAMPLES / "seqcls" / "chemprot_hf", ["--metric_name", "PRF1", "--max_seq_length", "256"]),
    "pubmedqa": (SeqClsTask, SAMPLES / "seqcls" / "pubmedqa_hf", ["--max_seq_length", "512"]),
    "biosses": (SeqClsTask, SAMPLES / "seqcls" / "BIOSSES_hf", ["--metric_name", "pearsonr"]),
    "hoc": (SeqClsTask, SAMPLES / "seqcls" / "HoC_hf", ["--metric_name", "hoc"]),
    "ner": (NerTask, SAMPLES / "tokcls" / "NCBI-disease_hf", ["--max_seq_length", "512"]),
    "qa": (QATask, SAMPLES / "qa" / "squad_hf", ["--max_seq_length", "128", "--doc_stride", "32"]),
    "mc": (MultipleChoiceTask, SAMPLES / "mc" / "medqa_usmle_hf", ["--max_seq_length", "128"]),
}


# One tiny model (dropout off) whose vocabulary covers every sample used here: built once.
ALL_FILES = sorted(f for _, folder, _ in CASES.values() for f in folder.glob("*.json"))


def task_and_batch(name: str, model_dir: str, tmp_path, batch_size: int = 6):
    """The task's model and a padded training batch of its first `batch_size` features."""
    from transformers import set_seed

    task_cls, folder, flags = CASES[name]
    argv = ["--model_name_or_path", model_dir, "--train_file", str(folder / "train.json"), "--do_train",
            "--output_dir", str(tmp_path / "out"), *flags]
    model_args, data_args, args, task_args = parse_args(task_cls.arguments, argv)
    task = task_cls(model_args, data_args, args, task_args)
    splits, kept = load_splits(task, ["train"])
    set_seed(0)
    model = load_model(task, kept["train"], DistState(args))
    features = build_features(task, "train", splits["train"], training=True)
    collate = _ModelInputCollator(task.collator(None))
    return task, model, collate([features[i] for i in range(batch_size)])


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
    task, model, batch = task_and_batch(name, model_dir, tmp_path)
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
