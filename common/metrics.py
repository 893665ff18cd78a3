"""Model-cost metrics for the compression trials: parameters, FLOPs, serialized size and latency.

Latency is measured on a noisy, shared 2-core box, so ``measure_latency`` pins the thread count, warms
up, interleaves the models round-robin (drift hits every model alike) and reports medians.
"""

from __future__ import annotations

import gc
import io
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from common.record import Measurement
from common.train import eval_mode

__all__ = [
    "count_flops",
    "count_params",
    "measure_latency",
    "model_size_bytes",
    "torch_threads",
]


def count_params(model: nn.Module) -> int:
    """Number of parameters, trainable or frozen (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32)) -> int:
    """FLOPs of one forward pass at ``input_shape`` (batch included), via torch's FlopCounterMode.

    Convs and matmuls count 2 FLOPs per multiply-accumulate, so MACs = flops / 2; biases, BN and
    activations are not counted. Runs in eval mode under no_grad and restores the model's mode.
    """
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    x = torch.zeros(tuple(input_shape), device=device, dtype=dtype)
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` (what a checkpoint of this model costs on disk)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def size_measurement(model: nn.Module, input_shape: Sequence[int]) -> Measurement:
    """Parameters, FLOPs of one input of `input_shape` (C, H, W) and bytes of the saved fp32 state dict."""
    return Measurement(params=count_params(model), flops=count_flops(model, (1, *input_shape)),
                       size_bytes=model_size_bytes(model), size_kind="state_dict")


@dataclass(frozen=True)
class LatencySetting:
    """How latency is measured: CPU threads (None: leave torch's), warm-up and timed repeats per model."""

    threads: int | None = 1
    warmup: int = 3
    repeats: int = 20


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count; None leaves it."""
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


Runnable = nn.Module | Callable[[torch.Tensor], object]


def measure_latency(
    models: Mapping[str, Runnable],
    batch_sizes: Sequence[int] = (1, 64),
    *,
    input_shape: Sequence[int] = (3, 32, 32),
    threads: int | None = 1,
    warmup: int = 3,
    repeats: int = 20,
    device: str | torch.device = "cpu",
    min_time_s: float | None = None,
) -> dict[str, dict[int, float]]:
    """Median milliseconds per forward pass: ``{name: {batch_size: median_ms}}``.

    ``nn.Module``s are moved to ``device`` and run in eval mode under ``torch.inference_mode()`` (their
    train/eval flags are restored afterwards); other callables (e.g. an ONNX Runtime session wrapper)
    get the CPU input tensor as-is. For each batch size every model runs ``warmup`` untimed calls, then
    ``repeats`` timed rounds in which each model runs once, round-robin with a rotating start so that
    noise, drift and "who ran just before me" cache effects are shared evenly. ``min_time_s`` keeps
    adding rounds until that much time was spent measuring the batch size (more samples for fast models).
    CUDA modules are timed with CUDA events; everything else with ``time.perf_counter``.
    """
    if not models:
        raise ValueError("no models to measure")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    dev = torch.device(device)
    names = list(models)
    sizes = list(dict.fromkeys(batch_sizes))  # de-duplicate, keep order
    samples: dict[str, dict[int, list[float]]] = {n: {b: [] for b in sizes} for n in names}
    gen = torch.Generator().manual_seed(0)  # same inputs on every call of this function

    with ExitStack() as stack:
        stack.enter_context(torch_threads(threads))
        for m in models.values():
            if isinstance(m, nn.Module):
                m.to(dev)
                stack.enter_context(eval_mode(m))
        # GC pauses would land on whichever model happens to allocate; timeit disables it for the same reason.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        stack.callback(lambda: gc.enable() if gc_was_enabled else None)

        for bs in sizes:
            x_cpu = torch.randn((bs, *input_shape), generator=gen)
            x_dev = x_cpu.to(dev)
            for _ in range(warmup):
                for name in names:
                    _time_call(models[name], x_cpu, x_dev, dev)
            rounds, start = 0, time.perf_counter()
            while rounds < repeats or (min_time_s is not None and time.perf_counter() - start < min_time_s):
                k = rounds % len(names)
                for name in names[k:] + names[:k]:
                    samples[name][bs].append(_time_call(models[name], x_cpu, x_dev, dev))
                rounds += 1

    return {n: {b: statistics.median(v) for b, v in per.items()} for n, per in samples.items()}


def _time_call(model: Runnable, x_cpu: torch.Tensor, x_dev: torch.Tensor, dev: torch.device) -> float:
    """Milliseconds of one call."""
    is_module = isinstance(model, nn.Module)
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)  # don't bill this call for work queued by the previous one
    if cuda and is_module:
        # Events time the GPU work itself, without host-side launch jitter around synchronize().
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.inference_mode():
            start.record()
            model(x_dev)
            end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    if is_module:
        with torch.inference_mode():
            model(x_dev)
    else:
        model(x_cpu)
    if cuda:
        torch.cuda.synchronize(dev)
    return (time.perf_counter() - t0) * 1e3


def contention(threads: int | None) -> dict[str, Any]:
    """How busy the machine was while latencies were measured (call right after): the 1-minute load average
    and whether other work competed for the cores (load average above the core count: this process counts
    as its `threads`). A contended latency on a shared machine can be ~3x its idle value; its ratios to a
    model timed in the same interleaved call remain comparable, its milliseconds do not."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return {"latency_loadavg_1m": None, "latency_contended": None}
    cores = os.cpu_count() or 1
    contended = load > max(cores, threads or cores)
    if contended:  # in trial.log, where a user reading the milliseconds looks
        print(f"warning: latencies timed while the machine was busy (1-minute load average {load:.2f} on {cores} "
              "cores, latency_contended): trust their ratios to the dense model, not their milliseconds", flush=True)
    return {"latency_loadavg_1m": round(load, 2), "latency_contended": contended}
