"""The `cpu` profile: real images (Fashion-MNIST), sized from measured throughput to its time budgets, and the
per-epoch step cap (TrainConfig.steps_per_epoch) that lets it fine-tune on part of the training split."""

from __future__ import annotations

import pytest
import torch

from common.data import TensorLoader
from common.profiles import CPU_THROUGHPUT, get_profile
from common.train import TrainConfig, fit


def test_cpu_profile_keeps_to_its_budgets_at_the_planning_rate():
    p, rate = get_profile("cpu"), CPU_THROUGHPUT["planning"]
    assert p.dataset == "fashion-mnist" and p.batch_size in (64, 128) and p.eval_limit is not None
    assert rate["train"] <= CPU_THROUGHPUT["idle"]["train"] / 2  # conservative: the machine is shared

    dense_images = p.train.epochs * p.train.steps_per_epoch * p.batch_size
    dense_s = dense_images / rate["train"] + p.train.epochs * p.eval_limit / rate["eval"]
    assert 30_000 <= dense_images <= 54_000 and dense_s <= 30 * 60  # enough images for ~90 %, in 30 min

    # The slowest trial: QAT of the dense model (training at the QAT rate; a val pass per epoch in fake
    # quantization, forward only, at the eval rate slowed like training), then val + test of the dense,
    # simulated and int8 models (about 3 fp32 passes), plus ~2 min of deployment, latency and start-up.
    finetune_images = p.finetune.epochs * p.finetune.steps_per_epoch * p.batch_size
    fake_quant_eval = rate["eval"] * rate["qat"] / rate["train"]
    qat_s = finetune_images / rate["qat"] + p.finetune.epochs * p.eval_limit / fake_quant_eval
    qat_s += 3 * 2 * p.eval_limit / rate["eval"]
    assert qat_s + 120 <= 10 * 60


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
