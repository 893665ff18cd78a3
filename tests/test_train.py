"""Tests for common.train on tiny CPU models and in-memory loaders (lists of (x, y) batches)."""

from __future__ import annotations

import math
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.train import (
    MetricLogger,
    NonFiniteLossError,
    SmoothedValue,
    TrainConfig,
    evaluate,
    fit,
    make_optimizer,
    make_scheduler,
    predict,
    seed_everything,
)

NUM_CLASSES = 4


def make_blobs(n: int, seed: int, batch_size: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Separable toy images: class k lights up quadrant k of a 3x8x8 image, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    x = 0.3 * torch.randn(n, 3, 8, 8, generator=g)
    for k in range(NUM_CLASSES):
        r, c = divmod(k, 2)
        x[y == k, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 1.0
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)]


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, NUM_CLASSES),
    )


class CountingLoader:
    """A loader that records how many batches were pulled from it."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches
        self.pulled = 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for b in self.batches:
            self.pulled += 1
            yield b


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(256, seed=0), make_blobs(128, seed=1)


def test_fit_learns_separable_problem_and_reports_each_epoch(blobs):
    train, val = blobs
    seed_everything(0)
    model = tiny_cnn()
    calls: list[tuple[int, dict[str, float]]] = []
    lines: list[str] = []
    cfg = TrainConfig(epochs=3, lr=0.1, print_freq=4)
    hist = fit(model, train, cfg, val_loader=val, on_epoch_end=lambda e, m: calls.append((e, m)), print_fn=lines.append)

    assert [e for e, _ in calls] == [0, 1, 2]
    for _, m in calls:
        assert set(m) == {"train_loss", "train_acc", "lr", "val_acc", "val_loss"}
    assert hist["val_acc"] == [m["val_acc"] for _, m in calls]
    assert len(hist["train_loss"]) == 3
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist["train_acc"][-1] > 0.95
    assert hist["val_acc"][-1] > 0.95
    # The reported val_acc is what evaluate() says about the returned model.
    assert evaluate(model, val)["accuracy"] == pytest.approx(hist["val_acc"][-1])
    assert not model.training
    # OneCycle: the last epoch ends with an lr that is orders of magnitude below the peak.
    assert hist["lr"][-1] < 1e-3 * cfg.lr
    assert any(line.startswith("Epoch: [3/3]") for line in lines)
    assert not any("\r" in line for line in lines)


def test_fit_with_a_callers_optimizer_and_training_step(blobs):
    """How NNI's quantizers train through fit(): their optimizer, their loss, fp32, and a step limit."""
    train, _ = blobs
    seed_everything(0)
    model = tiny_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    steps: list[int] = []
    stepped = optimizer.step

    def counting_step(self, *args, **kwargs):  # NNI patches `step` the same way to drive its quantizer
        steps.append(1)
        return stepped(*args, **kwargs)

    optimizer.step = types.MethodType(counting_step, optimizer)
    seen: list[int] = []

    def training_step(batch, m):
        seen.append(len(batch[1]))
        logits = m(batch[0])
        return F.cross_entropy(logits, batch[1]), logits

    lines: list[str] = []
    before = [p.detach().clone() for p in model.parameters()]
    hist = fit(model, train, TrainConfig(epochs=3, lr=0.05, print_freq=100), optimizer=optimizer,
               training_step=training_step, max_steps=5, mixed_precision=False, name="qat 8-bit", print_fn=lines.append)
    assert len(steps) == len(seen) == 5  # stopped after max_steps, through the caller's optimizer and loss
    assert len(hist["train_loss"]) == 1 and not model.training
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert any(line.startswith("qat 8-bit epoch [1/3]") for line in lines)


def test_fit_without_val_loader_omits_val_keys(blobs):
    train, _ = blobs
    calls: list[dict[str, float]] = []
    hist = fit(tiny_cnn(), train[:2], TrainConfig(epochs=1), on_epoch_end=lambda e, m: calls.append(m), print_fn=quiet)
    assert set(calls[0]) == {"train_loss", "train_acc", "lr"}
    assert hist["val_acc"] == [] and len(hist["train_loss"]) == 1


def _fit_weights(seed: int, train) -> list[torch.Tensor]:
    seed_everything(seed)
    model = tiny_cnn()
    fit(model, train, TrainConfig(epochs=1, schedule="cosine"), print_fn=quiet)
    return [t.detach().clone() for t in model.state_dict().values()]


def test_seed_everything_makes_fits_reproducible(blobs):
    train = blobs[0][:4]
    a, b, c = _fit_weights(123, train), _fit_weights(123, train), _fit_weights(124, train)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    # Guard against a vacuous pass: a different seed must give a different model.
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_every_fit_starts_at_the_loaders_first_epoch():
    """A TensorLoader's epoch counter seeds shuffling and augmentation: a fit after other fits on the same
    loader must see the batches a fresh loader serves, or a cached artifact depends on its history."""
    from common.data import TensorLoader

    g = torch.Generator().manual_seed(0)
    images, labels = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=g), torch.arange(64) % 4
    make = lambda: TensorLoader(images, labels, 16, train=True, mean=(0.5,) * 3, std=(0.25,) * 3, pad=2)  # noqa: E731
    used = make()
    for _ in range(3):
        next(iter(used))  # earlier passes (another fit, calibration batches) advance the epoch counter
    assert used.epoch == 3
    weights = [_fit_weights(7, loader) for loader in (make(), used)]
    assert all(torch.equal(x, y) for x, y in zip(*weights, strict=True))


def test_zero_epochs_is_a_noop(blobs):
    model = tiny_cnn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []
    loader = CountingLoader(blobs[0])
    hist = fit(model, loader, TrainConfig(epochs=0), val_loader=blobs[1], on_epoch_end=lambda *a: calls.append(a))
    assert all(v == [] for v in hist.values())
    assert calls == [] and loader.pulled == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


def test_huge_lr_raises_non_finite_within_first_epoch(blobs):
    loader = CountingLoader(blobs[0])
    seed_everything(0)
    with pytest.raises(NonFiniteLossError, match="NaN/inf") as exc:
        fit(tiny_cnn(), loader, TrainConfig(epochs=5, lr=1e30, schedule="constant"), print_fn=quiet)
    assert loader.pulled < len(loader)
    assert "epoch 1/5" in str(exc.value) and "lower the lr" in str(exc.value)


class InfModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * math.inf


def test_inf_forward_raises_on_first_step_before_updating(blobs):
    model = InfModel()
    before = model.fc.weight.detach().clone()
    loader = CountingLoader(blobs[0])
    with pytest.raises(NonFiniteLossError, match=r"epoch 1/2, step 1/8"):
        fit(model, loader, TrainConfig(epochs=2), print_fn=quiet)
    assert loader.pulled == 1
    assert torch.equal(model.fc.weight, before)  # the bad step never reached the optimizer


def test_weight_decay_excludes_bn_and_bias():
    model = tiny_cnn()
    model[0].weight.requires_grad_(False)  # frozen params must not be optimized at all
    cfg = TrainConfig(epochs=1, weight_decay=1e-3, momentum=0.8)
    opt = make_optimizer(model, cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert groups["decay"]["weight_decay"] == 1e-3
    assert groups["no_decay"]["weight_decay"] == 0.0
    assert ids["decay"] == {id(model[5].weight)}
    assert ids["no_decay"] == {id(model[1].weight), id(model[1].bias), id(model[5].bias)}
    assert all(g["nesterov"] and g["momentum"] == 0.8 and g["lr"] == cfg.lr for g in opt.param_groups)


def _lr_trajectory(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    opt = make_optimizer(nn.Linear(2, 2), cfg)
    sched = make_scheduler(opt, cfg, steps_per_epoch)
    lrs = []
    for _ in range(cfg.epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_warmup_schedules_peak_then_anneal_to_zero(schedule):
    cfg = TrainConfig(epochs=4, lr=0.2, schedule=schedule, warmup_fraction=0.25)
    lrs = _lr_trajectory(cfg, steps_per_epoch=50)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert len(lrs) == 200
    assert lrs[peak] == pytest.approx(0.2, rel=1e-3)
    assert abs(peak - 50) <= 1  # peak at warmup_fraction of all steps
    assert lrs[0] < 0.05 * 0.2
    assert lrs[-1] < 1e-3 * 0.2
    assert all(a <= b for a, b in zip(lrs[: peak + 1], lrs[1 : peak + 1], strict=False))  # warm up
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :], strict=False))  # then anneal


def _warmup_cosine(lr: float, warmup_fraction: float, total: int, step: int) -> float:
    """The schedule torch's LinearLR + CosineAnnealingLR must reproduce, written out."""
    warmup = round(warmup_fraction * total)
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


@pytest.mark.parametrize(("epochs", "steps_per_epoch", "warmup_fraction"),
                         [(4, 50, 0.25), (3, 7, 0.15), (2, 5, 0.0), (1, 3, 0.9), (1, 1, 0.5)])
def test_cosine_schedule_is_linear_warmup_then_cosine(epochs, steps_per_epoch, warmup_fraction):
    cfg = TrainConfig(epochs=epochs, lr=0.2, schedule="cosine", warmup_fraction=warmup_fraction)
    total = epochs * steps_per_epoch
    expected = [_warmup_cosine(0.2, warmup_fraction, total, step) for step in range(total)]
    assert _lr_trajectory(cfg, steps_per_epoch) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_constant_schedule():
    assert _lr_trajectory(TrainConfig(epochs=2, lr=0.03, schedule="constant"), 5) == [0.03] * 10


def test_config_validation():
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(epochs=1, schedule="step")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=-1)


class DropoutLinear(nn.Module):
    """Identity-weight linear behind dropout: wrong (random) outputs unless evaluated in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.9)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(2))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x))


def test_evaluate_and_predict_match_hand_computation():
    # Uneven batches: a mean of batch means would give a different loss than the per-sample mean.
    x1, y1 = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), torch.tensor([0, 1, 1])
    x2, y2 = torch.tensor([[0.0, 5.0], [1.0, 0.0]]), torch.tensor([1, 1])
    loader = [(x1, y1), (x2, y2)]
    rows = [([2, 0], 0), ([0, 1], 1), ([3, 1], 1), ([0, 5], 1), ([1, 0], 1)]
    # logits == inputs (identity layer): CE = logsumexp(row) - row[label]
    expected_loss = sum(math.log(math.exp(a) + math.exp(b)) - (a, b)[t] for (a, b), t in rows) / 5

    model = DropoutLinear().train()
    result = evaluate(model, loader)
    assert result["accuracy"] == pytest.approx(3 / 5)  # rows 3 and 5 are wrong
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert model.training and model.drop.training

    preds = predict(model, loader)
    assert preds.dtype == torch.int64
    assert preds.tolist() == [0, 1, 0, 1, 0]
    assert model.training

    model.eval()
    evaluate(model, loader)
    assert not model.training


def test_evaluate_restores_mixed_submodule_modes():
    model = tiny_cnn().train()
    model[1].eval()  # e.g. frozen BN inside a training model
    evaluate(model, make_blobs(8, seed=0))
    assert model.training and not model[1].training


def test_evaluate_loss_matches_functional_on_real_model(blobs):
    seed_everything(0)
    model = tiny_cnn().eval()
    val = blobs[1]
    x, y = torch.cat([b[0] for b in val]), torch.cat([b[1] for b in val])
    with torch.no_grad():
        logits = model(x)
    res = evaluate(model, val)
    assert res["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert res["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert torch.equal(predict(model, val), logits.argmax(1))


def test_smoothed_value_window_and_global_average():
    v = SmoothedValue(window_size=3)
    for x in [10.0, 1.0, 2.0, 3.0]:
        v.update(x)
    assert v.median == 2.0 and v.avg == 2.0 and v.value == 3.0
    assert v.global_avg == 4.0
    v.update(6.0, n=4)  # batch-weighted
    assert v.global_avg == pytest.approx((16 + 24) / 8)


def test_metric_logger_prints_plain_lines_with_metrics():
    lines: list[str] = []
    logger = MetricLogger(print_fn=lines.append)
    seen = []
    for i in logger.log_every(range(10), print_freq=4, header="Epoch: [1/1]"):
        seen.append(i)
        logger.update(loss=1.0 / (i + 1), acc=torch.tensor(0.5))
    assert seen == list(range(10))
    progress, summary = lines[:-1], lines[-1]
    assert [line.split("  ")[1] for line in progress] == ["[1/10]", "[5/10]", "[9/10]", "[10/10]"]
    for line in progress:
        assert line.startswith("Epoch: [1/1]")
        for token in ("eta: ", "loss: ", "acc: 0.5000", "it/s"):
            assert token in line
    assert "Total time" in summary
    assert not any("\r" in line or "\n" in line for line in lines)
