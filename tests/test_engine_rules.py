"""The original Trainer's step, warm-up, accumulation and data-order rules (training_semantics.md)."""

import math

import pytest
import torch

from linkbert.core.engine import (epoch_permutations, is_update_step, num_epochs_to_run, sampler_seed,
                                  total_updates, updates_per_epoch, warmup_updates)


def test_pubmedqa_large_worked_example():
    # 450 train examples, batch 8 x accumulation 4, 23 epochs, warmup_ratio 0.5
    batches = math.ceil(450 / 8)
    total = total_updates(batches, 4, 23)
    assert total == 322
    assert warmup_updates(total, 0, 0.5) == 161


@pytest.mark.parametrize("n,batch,accumulation,epochs,expected", [
    (10178, 2, 32, 6, 954),   # MedQA-large
    (10178, 4, 8, 2, 636),    # MedQA-base
])
def test_medqa_worked_examples(n, batch, accumulation, epochs, expected):
    assert total_updates(math.ceil(n / batch), accumulation, epochs) == expected


def test_warmup_steps_override_ratio_and_max_steps_override_epochs():
    assert warmup_updates(1000, 100, 0.5) == 100
    assert total_updates(57, 4, 23, max_steps=7) == 7
    # 14 updates per epoch: 30 updates need 3 epochs (the last one cut short)
    assert num_epochs_to_run(57, 4, 23, max_steps=30) == 3
    assert num_epochs_to_run(57, 4, 2.5) == 3
    assert total_updates(57, 4, 2.5) == 35  # ceil(2.5 * 14)


def test_accumulation_rules():
    # 10 micro-batches, accumulation 4: updates after micro-batches 4 and 8; 9 and 10 carry over
    assert [s for s in range(10) if is_update_step(s, 10, 4)] == [3, 7]
    assert updates_per_epoch(10, 4) == 2
    # an epoch no longer than the accumulation count still ends with an update
    assert [s for s in range(3) if is_update_step(s, 3, 4)] == [2]
    assert updates_per_epoch(3, 4) == 1


def test_data_order_matches_torch_random_sampler():
    """Epoch k's order is what a RandomSampler with the original's generator gives on its k-th pass
    (it draws one extra permutation per pass, so this is not simply the k-th randperm)."""
    seed = sampler_seed(42)
    torch.manual_seed(42)
    assert seed == int(torch.empty((), dtype=torch.int64).random_().item())
    generator = torch.Generator()
    generator.manual_seed(seed)
    sampler = torch.utils.data.RandomSampler(range(20), generator=generator)
    expected = [list(sampler) for _ in range(3)]
    assert epoch_permutations(20, seed, 3) == expected
    assert expected[0] != expected[1]
    plain = torch.Generator().manual_seed(seed)
    assert torch.randperm(20, generator=plain).tolist() == expected[0]
    assert torch.randperm(20, generator=plain).tolist() != expected[1]  # the extra draw shifts epoch 2
