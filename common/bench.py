"""Benchmarks that print ratios (speed and size targets are checked here, not in timed tests).

    python -m common.bench pruning      # dense vs 50% FPGM ResNet-18: params, FLOPs, latency b1/b64
    python -m common.bench data         # tensor loader vs torchvision DataLoader images/s
    python -m common.bench quant        # fp32 torch / fp32 ORT / int8 ORT (NNI scales), dense and 50% pruned
    python -m common.bench all --json results/bench.json

Latency is the median of many forwards at a fixed thread count, the compared models interleaved
in one process, so machine load hits both alike; weights are random (speed does not depend on
them). Numbers depend on the CPU: rerun here rather than trusting the README's table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from common import nni_compat  # noqa: F401
from common.bench_quant import benchmark_quant, print_quant
from common.metrics import count_flops, count_params, measure_latency, model_size_bytes
from common.models import resnet18
from common.pruning import prune_model

BATCHES = (1, 64)


def _thread_settings() -> list[int]:
    cores = os.cpu_count() or 1
    return [1] if cores == 1 else [1, cores]


def bench_pruning(pruner: str = "fpgm", sparsity: float = 0.5, repeats: int = 30) -> dict:
    torch.manual_seed(0)
    dense = resnet18().eval()
    pruned, stats = prune_model(resnet18().eval(), pruner, sparsity, torch.randn(1, 3, 32, 32))
    result = {
        "model": f"ResNet-18 (CIFAR), {pruner} {sparsity:.0%} dependency-aware + speed-up",
        "params_dense": stats.params_before, "params_pruned": stats.params_after, "params_ratio": stats.params_ratio,
        "flops_dense": stats.flops_before, "flops_pruned": stats.flops_after, "flops_ratio": stats.flops_ratio,
        "size_ratio": model_size_bytes(pruned) / model_size_bytes(dense),
        "latency": {},
    }
    assert count_params(pruned) == stats.params_after and count_flops(pruned) == stats.flops_after
    for threads in _thread_settings():
        lat = measure_latency({"dense": dense, "pruned": pruned}, BATCHES, threads=threads, warmup=5, repeats=repeats)
        result["latency"][threads] = {
            b: {"dense_ms": lat["dense"][b], "pruned_ms": lat["pruned"][b],
                "speedup": lat["dense"][b] / lat["pruned"][b]}
            for b in BATCHES
        }
    return result


def print_pruning(r: dict) -> None:
    print(f"\n## Pruning: {r['model']}")
    print(f"params  {r['params_dense']:,} -> {r['params_pruned']:,}  ratio {r['params_ratio']:.3f}")
    print(f"FLOPs   {r['flops_dense']:,} -> {r['flops_pruned']:,}  ratio {r['flops_ratio']:.3f}")
    print(f"size    ratio {r['size_ratio']:.3f}")
    print("| threads | batch | dense ms | pruned ms | speed-up |\n|---|---|---|---|---|")
    for threads, per_batch in r["latency"].items():
        for b, v in per_batch.items():
            print(f"| {threads} | {b} | {v['dense_ms']:.2f} | {v['pruned_ms']:.2f} | {v['speedup']:.2f}x |")


def bench_data() -> dict:
    from common.data import benchmark_pipeline

    return benchmark_pipeline(n_images=4096, batch_size=128, epochs=2)


def print_data(r: dict) -> None:
    print("\n## Data pipeline (train augmentation: pad-4 random crop + flip, CPU)")
    print(f"tensor loader          {r['tensor_loader_ips']:>12,.0f} images/s")
    print(f"DataLoader, 0 workers  {r['dataloader_ips']:>12,.0f} images/s")
    if "dataloader_workers2_ips" in r:
        print(f"DataLoader, 2 workers  {r['dataloader_workers2_ips']:>12,.0f} images/s")
    print(f"speed-up vs the faster DataLoader: {r['speedup']:.1f}x")


BENCHES: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
    "pruning": (bench_pruning, print_pruning),
    "data": (bench_data, print_data),
    "quant": (benchmark_quant, print_quant),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=[*BENCHES, "all"])
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    names = list(BENCHES) if args.which == "all" else [args.which]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    results = {}
    for name in names:
        run, show = BENCHES[name]
        results[name] = run()
        show(results[name])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
