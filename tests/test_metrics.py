"""Tests for common.metrics: parameter/FLOP/size counting and interleaved latency measurement."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from common.metrics import (
    count_flops,
    count_params,
    measure_latency,
    model_size_bytes,
    torch_threads,
)


def test_count_params_known_layers():
    assert count_params(nn.Linear(10, 5)) == 10 * 5 + 5
    assert count_params(nn.Conv2d(3, 8, 3)) == 8 * 3 * 3 * 3 + 8
    assert count_params(nn.Conv2d(3, 8, 3, bias=False)) == 8 * 3 * 3 * 3
    bn = nn.BatchNorm2d(16)
    assert count_params(bn) == 32  # affine weight + bias; running stats are buffers
    frozen = nn.Linear(4, 4)
    frozen.requires_grad_(False)
    assert count_params(frozen) == 20


def test_count_flops_conv_is_two_macs():
    c_in, c_out, k = 3, 8, 3
    # padding=1 keeps 32x32; stride 2 halves it -> check both output-size paths
    assert count_flops(nn.Conv2d(c_in, c_out, k, padding=1)) == 2 * c_out * c_in * k * k * 32 * 32
    assert count_flops(nn.Conv2d(c_in, c_out, k, stride=2, padding=1)) == 2 * c_out * c_in * k * k * 16 * 16
    assert count_flops(nn.Conv2d(c_in, c_out, k), (2, 3, 10, 10)) == 2 * 2 * c_out * c_in * k * k * 8 * 8


def test_count_flops_linear_and_restores_mode():
    model = nn.Sequential(nn.Linear(10, 5), nn.Dropout(0.5)).train()
    model[1].eval()
    assert count_flops(model, (4, 10)) == 2 * 10 * 5 * 4
    assert model.training and model[0].training and not model[1].training


def test_model_size_grows_with_params():
    small, big = model_size_bytes(nn.Linear(10, 10)), model_size_bytes(nn.Linear(100, 100))
    extra_param_bytes = 4 * (count_params(nn.Linear(100, 100)) - count_params(nn.Linear(10, 10)))
    assert small > 4 * 110  # at least the raw fp32 payload
    # Same structure, so the difference is the fp32 payload up to zip record alignment (64-byte padding).
    assert abs((big - small) - extra_param_bytes) <= 256


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with torch_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(target):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


class Recorder:
    """A callable model that logs each call (name, batch size, thread count) and can sleep."""

    def __init__(self, name: str, log: list, sleep_s: float = 0.0) -> None:
        self.name, self.log, self.sleep_s = name, log, sleep_s

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append((self.name, x.shape[0], torch.get_num_threads(), x.device.type))
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return x


def test_latency_interleaves_models_round_robin():
    log: list = []
    models = {"a": Recorder("a", log), "b": Recorder("b", log)}
    measure_latency(models, batch_sizes=(1, 2), input_shape=(3, 4, 4), warmup=2, repeats=5, threads=None)

    assert len(log) == 2 * (2 + 5) * 2  # batch sizes x (warmup + repeats) x models
    assert [bs for _, bs, *_ in log] == [1] * 14 + [2] * 14  # batch sizes measured one after another
    names = [name for name, *_ in log]
    rounds = [tuple(names[i : i + 2]) for i in range(0, len(names), 2)]
    assert all(set(r) == {"a", "b"} for r in rounds)  # every round runs each model exactly once
    # The start alternates between rounds so neither model is always first after the other.
    timed = rounds[2:7]
    assert timed == [("a", "b"), ("b", "a"), ("a", "b"), ("b", "a"), ("a", "b")]
    assert {device for *_, device in log} == {"cpu"}


def test_latency_positive_medians_thread_context_and_slow_model():
    log: list = []
    before = torch.get_num_threads()
    models = {
        "fast": Recorder("fast", log),
        "slow": Recorder("slow", log, sleep_s=0.005),
        "net": nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()),
    }
    lat = measure_latency(models, batch_sizes=(1, 8), input_shape=(3, 8, 8), warmup=1, repeats=5, threads=1)

    assert torch.get_num_threads() == before
    assert {threads for _, _, threads, _ in log} == {1}  # every call ran under the requested thread count
    assert set(lat) == {"fast", "slow", "net"}
    for per_batch in lat.values():
        assert set(per_batch) == {1, 8}
        assert all(ms > 0 for ms in per_batch.values())
    for bs in (1, 8):
        assert lat["slow"][bs] >= 5.0  # sleep(5 ms) is a lower bound
        assert lat["slow"][bs] > lat["fast"][bs]


def test_latency_deeper_module_is_slower():
    shallow = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1))
    deep = nn.Sequential(*[nn.Conv2d(8, 8, 3, padding=1) for _ in range(24)])
    lat = measure_latency({"shallow": shallow, "deep": deep}, batch_sizes=(4,), input_shape=(8, 16, 16), repeats=9)
    assert lat["deep"][4] > 3 * lat["shallow"][4]


class ModeProbe(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, torch.is_inference_mode_enabled()))
        return self.fc(x)


def test_latency_modules_run_in_eval_inference_mode_and_mode_is_restored():
    probe = ModeProbe().train()
    measure_latency({"probe": probe}, batch_sizes=(2,), input_shape=(3,), warmup=1, repeats=3)
    assert probe.seen == [(False, True)] * 4
    assert probe.training


def test_latency_min_time_adds_rounds():
    log: list = []
    measure_latency({"s": Recorder("s", log, sleep_s=0.002)}, batch_sizes=(1,), warmup=0, repeats=2, min_time_s=0.05)
    assert len(log) >= 5  # beyond the 2 requested repeats (loose: sleeps overshoot on a loaded box)
    assert len(log) < 0.05 / 0.002 + 2  # but it stops once the time budget is spent


def test_a_latency_measured_beside_other_work_is_flagged_contended(monkeypatch):
    from common import metrics

    monkeypatch.setattr(metrics.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(metrics.os, "getloadavg", lambda: (3.4, 2.0, 1.0))
    assert metrics.contention(1) == {"latency_loadavg_1m": 3.4, "latency_contended": True}
    monkeypatch.setattr(metrics.os, "getloadavg", lambda: (1.1, 2.0, 1.0))
    assert metrics.contention(1) == {"latency_loadavg_1m": 1.1, "latency_contended": False}
