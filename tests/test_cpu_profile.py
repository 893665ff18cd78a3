"""The `cpu` profile: real images (Fashion-MNIST), sized from measured throughput to its time budgets, and the
per-epoch step cap (TrainConfig.steps_per_epoch) that lets it fine-tune on part of the training split."""

from __future__ import annotations

import pytest
import torch

from common.data import TensorLoader
from common.profiles import CPU_THROUGHPUT, get_profile
from common.train import TrainConfig, fit


def test_cpu_profile_keeps_to_its_budgets_at_the_measured_rates():
    p, rate = get_profile("cpu"), CPU_THROUGHPUT["idle"]
    assert p.dataset == "fashion-mnist" and p.batch_size == 128 and p.eval_limit is not None
    # bf16 where the CPU has it: the dense model and the recovery after pruning; QAT stays fp32 (fake quantization).
    assert p.train.cpu_bf16 and p.finetune.cpu_bf16 and p.qat is not None and not p.qat.cpu_bf16

    train_images = 60_000 * (1 - p.val_fraction)
    dense_images = p.train.epochs * min(train_images, (p.train.steps_per_epoch or 10**9) * p.batch_size)
    dense_s = dense_images / rate["train_bf16"] + p.train.epochs * p.eval_limit / rate["eval"]
    assert dense_images >= 2 * train_images and dense_s <= 30 * 60  # >= 2 passes (~92 %), in 30 min

    # The slowest trial: QAT of the dense model (training at the QAT rate; a val pass per epoch in fake
    # quantization, forward only, at the eval rate slowed like training), then val + test of the dense model in
    # fp32 and of the simulation, plus ~2 min of deployment, int8 evaluation, latency and start-up.
    qat_images = p.qat.epochs * p.qat.steps_per_epoch * p.batch_size
    fake_quant_eval = rate["eval"] * rate["qat"] / rate["train"]
    qat_s = qat_images / rate["qat"] + p.qat.epochs * p.eval_limit / fake_quant_eval
    qat_s += 2 * p.eval_limit / rate["eval"] + 2 * p.eval_limit / fake_quant_eval
    assert qat_s + 120 <= 10 * 60
    # Recovery after pruning sees as many images as one pass (the pruned model trains faster than the dense one).
    assert p.finetune.epochs * p.finetune.steps_per_epoch * p.batch_size >= 0.99 * train_images


def _loader(n_batches: int) -> TensorLoader:
    images = torch.arange(n_batches * 4 * 3 * 8 * 8).remainder(256).to(torch.uint8).view(-1, 3, 8, 8)
    return TensorLoader(images, torch.arange(len(images)) % 4, 4, train=True, mean=(0.5,) * 3, std=(0.25,) * 3,
                        pad=0)


def test_steps_per_epoch_caps_each_epoch_and_the_schedule_spans_the_capped_steps():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    seen: list[torch.Tensor] = []

    def step(batch, m):
        seen.append(batch[1])
        logits = m(batch[0])
        return torch.nn.functional.cross_entropy(logits, batch[1]), logits

    loader = _loader(8)
    cfg = TrainConfig(epochs=2, lr=0.1, steps_per_epoch=3, schedule="onecycle")
    history = fit(model, loader, cfg, training_step=step, print_fn=lambda _: None)
    assert len(seen) == 6 and len(history["train_loss"]) == 2
    assert history["lr"][-1] < 1e-5  # the last step ran at one-cycle's floor: the schedule spans 6 steps, not 16
    # The loader reshuffles each epoch: the second epoch's 3 batches are another part of the split.
    assert not torch.equal(torch.cat(seen[:3]), torch.cat(seen[3:]))
    # A cap at or above the loader's length changes nothing.
    seen.clear()
    fit(model, loader, TrainConfig(epochs=1, lr=0.1, steps_per_epoch=50), training_step=step, print_fn=lambda _: None)
    assert len(seen) == 8


def test_steps_per_epoch_is_validated():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        TrainConfig(epochs=1, steps_per_epoch=0)


def test_the_search_profile_reuses_the_cpu_dense_model_and_fits_its_trial_budget():
    from dataclasses import fields

    from common.profiles import search_trial_seconds

    search, cpu, rate = get_profile("search"), get_profile("cpu"), CPU_THROUGHPUT["idle"]
    # Everything the dense model's cache key and the latency ratios depend on is the cpu profile's.
    differs = {f.name for f in fields(search) if getattr(search, f.name) != getattr(cpu, f.name)}
    assert differs == {"name", "finetune", "qat", "measure_limit", "portability_check"}
    assert search.portability_check == "none" and search.finetune.cpu_bf16 and search.measure_limit == 1000
    # ~3 min at the space's mean sparsity, under 5 with none; 12 + 12 trials and the dense model's check in 2 hours.
    expected, worst = search_trial_seconds(search, rate, speedup=2.0), search_trial_seconds(search, rate)
    assert expected <= 4 * 60 and worst <= 5 * 60
    assert 24 * expected + 10 * 60 <= 100 * 60
    # The same estimate puts the cpu profile's trial within its documented 10 minutes (a 50 % model: 2.5x).
    assert search_trial_seconds(cpu, rate, speedup=2.5) <= 10 * 60
