"""Throughput and MFU (linkbert.core.throughput): what is counted, and that a run reports it."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SAMPLES, run_task

from linkbert.core import padding_free, throughput
from linkbert.seqcls.run_seqcls import SeqClsTask

CHEMPROT = SAMPLES / "seqcls" / "chemprot_hf"


class FakeModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = type("Config", (), {"num_hidden_layers": 2, "hidden_size": 4})()
        self.word_embeddings = torch.nn.Embedding(10, 4)  # not counted
        self.dense = torch.nn.Linear(4, 3)  # 15 parameters


def test_flops_count_real_tokens_alike_for_padded_and_packed_batches():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    batch = {"input_ids": torch.ones_like(mask), "attention_mask": mask}
    padded, packed = (throughput.Throughput(FakeModel(), torch.device("cpu"), None) for _ in range(2))
    padded.count(batch)
    packed_batch = padding_free.pack_batch(batch)
    packed.count(packed_batch)
    assert packed_batch["seq_lengths"] == [3, 2, 4]
    # 6 x 15 parameters x 9 real tokens + 12 x 2 layers x 4 hidden x (9 + 4 + 16)
    expected = [3, 9, 6 * 15 * 9 + 12 * 2 * 4 * 29]
    assert padded.window == expected and packed.window == expected
    unmasked = throughput.Throughput(FakeModel(), torch.device("cpu"), None)
    unmasked.count({"input_ids": torch.ones(2, 5, dtype=torch.long)})  # no mask: every token is real
    assert unmasked.window == [2, 10, 6 * 15 * 10 + 12 * 2 * 4 * 50]


def test_cpu_peak_is_a_measured_matmul_rate_per_dtype():
    torch.manual_seed(0)
    expected_draw = torch.rand(3)
    torch.manual_seed(0)
    fp32 = throughput.measured_peak_flops(torch.float32, sizes=(256,), repeats=2)
    bf16 = throughput.measured_peak_flops(torch.bfloat16, sizes=(256,), repeats=2)
    # measured mid-run (first log line): the run's random stream (dropout) must not move
    assert torch.equal(torch.rand(3), expected_draw)
    assert fp32 > 1e8 and bf16 > 1e8  # any CPU of this century does 0.1 GFLOP/s
    assert throughput.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert throughput.peak_tflops("NVIDIA H100 PCIe") == 756.0 and throughput.peak_tflops("Tesla T4") is None


@pytest.mark.parametrize("flags", [["--padding_free", "false"], ["--padding_free"]])  # padded and packed batches
def test_a_run_logs_tokens_per_second_and_mfu_and_keeps_them_in_train_results(flags, tiny_model, tmp_path):
    out = tmp_path / "out"
    run_task(SeqClsTask, ["--model_name_or_path", tiny_model(sorted(CHEMPROT.glob("*.json"))), "--train_file",
                          CHEMPROT / "train.json", "--do_train", "--metric_name", "PRF1", "--max_steps", "4",
                          "--logging_steps", "2", "--per_device_train_batch_size", "8", "--save_strategy", "no",
                          "--output_dir", out, "--disable_tqdm", *flags])
    logged = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(logged) == 2
    for entry in logged:
        assert entry["real_tokens_per_second"] > 0 and entry["samples_per_second"] > 0
        assert 0 < entry["mfu"] < 1 and entry["model_tflops_per_second"] > 0
    results = json.loads((out / "train_results.json").read_text())
    assert results["train_real_tokens_per_second"] > 0 and 0 < results["train_mfu"] < 1
