"""Benchmarks that print ratios (speed and size targets are checked here, not in timed tests).

    python3 -m common.cli.bench pruning   # dense vs 50% FPGM ResNet-18: params, FLOPs, latency b1/b64
    python3 -m common.cli.bench data      # tensor loader vs torchvision DataLoader images/s
    python3 -m common.cli.bench train     # ResNet-18 train/eval images/s per input shape (sizes the `cpu` profile)
    python3 -m common.cli.bench quant     # fp32 torch / fp32 ORT / int8 ORT (NNI scales), dense and 50% pruned
    python3 -m common.cli.bench pipeline  # the pipeline trial's default output vs dense fp32 ResNet-18, trained (smoke)
    python3 -m common.cli.bench all --json results/bench.json   # every one above
    python3 -m common.cli.bench headline  # every headline configuration side by side: results/speed/<cpu class>.json

Latency is the median of many forwards at a fixed thread count, the compared models interleaved
in one process, so machine load hits both alike; weights are random (speed does not depend on
them). Numbers depend on the CPU: rerun here rather than trusting the README's table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import nni_compat
from common.cli import bench_headline
from common.cli.bench_quant import benchmark_quant, print_quant
from common.cpu import cpu_info
from common.data import CIFAR10_MEAN, CIFAR10_STD, TensorLoader
from common.metrics import count_flops, count_params, measure_latency, model_size_bytes
from common.models import resnet18
from common.pruning import prune_model

BATCHES = (1, 64)


def _thread_settings() -> list[int]:
    cores = os.cpu_count() or 1
    return [1] if cores == 1 else [1, cores]


def bench_pruning(pruner: str = "fpgm", sparsity: float = 0.5, repeats: int = 30, warmup: int = 5) -> dict:
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
        lat = measure_latency({"dense": dense, "pruned": pruned}, BATCHES, threads=threads, warmup=warmup,
                              repeats=repeats)
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


class _PILDataset(torch.utils.data.Dataset):
    """The stock per-image path: NHWC uint8 array -> PIL -> torchvision transforms (module level: picklable)."""

    def __init__(self, images_nhwc: np.ndarray, labels: np.ndarray, transform: Callable[[Any], torch.Tensor]) -> None:
        self.images, self.labels, self.transform = images_nhwc, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def _images_per_second(batches: Iterable, epochs: int) -> float:
    seen = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for x, _y in batches:
            seen += len(x)
    return seen / (time.perf_counter() - start)


def bench_data(n_images: int = 4096, batch_size: int = 128, epochs: int = 2) -> dict[str, float]:
    """Training-pipeline throughput (images/s) of ``TensorLoader`` vs a stock torchvision DataLoader.

    Both read the same in-memory random uint8 32x32 data on CPU with the same batch size and equivalent
    augmentation (pad-4 crop + flip + normalise). Timings include DataLoader worker start-up, as a trial
    would see it. ``speedup`` is relative to the faster stock configuration; ``dataloader_workers2_ips``
    is NaN if worker processes cannot start here.
    """
    from torchvision import transforms

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n_images,), generator=gen)

    loader = TensorLoader(images, labels, batch_size, train=True, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    results = {"tensor_loader_ips": _images_per_second(loader, epochs)}

    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )
    dataset = _PILDataset(images.permute(0, 2, 3, 1).numpy(), labels.numpy(), transform)
    for key, workers in (("dataloader_ips", 0), ("dataloader_workers2_ips", 2)):
        try:
            stock = torch.utils.data.DataLoader(
                dataset,
                batch_size=batch_size,
                shuffle=True,
                drop_last=n_images > batch_size,  # same batches as TensorLoader
                num_workers=workers,
                persistent_workers=workers > 0,
            )
            results[key] = _images_per_second(stock, epochs)
        except (OSError, RuntimeError):  # e.g. no /dev/shm or fork disallowed in a sandbox
            results[key] = float("nan")
    stock_best = max((v for k, v in results.items() if k != "tensor_loader_ips" and v == v), default=math.nan)
    results["speedup"] = results["tensor_loader_ips"] / stock_best
    return results


def print_data(r: dict) -> None:
    print("\n## Data pipeline (train augmentation: pad-4 random crop + flip, CPU)")
    print(f"tensor loader          {r['tensor_loader_ips']:>12,.0f} images/s")
    print(f"DataLoader, 0 workers  {r['dataloader_ips']:>12,.0f} images/s")
    if "dataloader_workers2_ips" in r:
        print(f"DataLoader, 2 workers  {r['dataloader_workers2_ips']:>12,.0f} images/s")
    print(f"speed-up vs the faster DataLoader: {r['speedup']:.1f}x")


# The pipeline's default output (50% FPGM, QAT int8, deployed) against the dense model in fp32 torch and in
# fp32 ONNX Runtime (the strongest fp32 CPU deployment); the ORT target depends on the CPU's int8 kernels.
PIPELINE_TARGETS = {"speedup_b1": 6.0, "speedup_b64": 6.0, "size_ratio": 0.10}
PIPELINE_VS_DENSE_ORT = {"exact": 12.0, "saturating": 6.5}


# How a 28x28 grey image (Fashion-MNIST) can enter the CIFAR ResNet: (channels, side). The first is what
# common.data serves; the others are the alternatives it was measured against.
TRAIN_INPUTS = {"1x28x28 native": (1, 28), "1x32x32 zero-padded": (1, 32), "3x32x32 grey as RGB": (3, 32)}


def bench_train(steps: int = 4, batch_size: int = 128) -> dict:
    """ResNet-18 training and evaluation images/s through common.train.fit and TensorLoader (random pixels; speed
    does not depend on them), per input shape, with the cores the process actually got (others' load shows)."""
    from common.models import DEFAULT_MODEL, build_model
    from common.train import TrainConfig, evaluate, fit

    quiet = lambda _: None  # noqa: E731
    results = {}
    for name, (channels, side) in TRAIN_INPUTS.items():
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (batch_size * steps, channels, side, side), dtype=torch.uint8, generator=gen)
        labels = torch.arange(len(images)) % 10
        norm = {"mean": (0.5,) * channels, "std": (0.25,) * channels}
        model = build_model(DEFAULT_MODEL, 10, channels)
        train = TensorLoader(images, labels, batch_size, train=True, **norm)
        fit(model, train, TrainConfig(epochs=1, lr=0.05, steps_per_epoch=1), print_fn=quiet)  # warm-up
        cpu, start = sum(os.times()[:2]), time.perf_counter()
        fit(model, train, TrainConfig(epochs=1, lr=0.05), print_fn=quiet)
        wall = time.perf_counter() - start
        cores = (sum(os.times()[:2]) - cpu) / wall
        start = time.perf_counter()
        evaluate(model, TensorLoader(images, labels, 256, train=False, **norm))
        results[name] = {"train_ips": len(images) / wall, "eval_ips": len(images) / (time.perf_counter() - start),
                         "cores_used": cores, "batch_size": batch_size}
    return results


def print_train(r: dict) -> None:
    print("\nResNet-18 (CIFAR variant), fp32, torch threads = cores:")
    # Per core-second of the process: comparable between rows even when other load takes cores away mid-run.
    print("| input | batch | train images/s | per core-second | eval images/s | cores used |")
    print("|---|---|---|---|---|---|")
    for name, v in r.items():
        print(f"| {name} | {v['batch_size']} | {v['train_ips']:.1f} | {v['train_ips'] / v['cores_used']:.1f} "
              f"| {v['eval_ips']:.1f} | {v['cores_used']:.2f} |")


def pipeline_targets(exact_int8: bool) -> dict[str, float]:
    goal = PIPELINE_VS_DENSE_ORT["exact" if exact_int8 else "saturating"]
    return {**PIPELINE_TARGETS, **{f"speedup_vs_dense_ort_b{b}": goal for b in BATCHES}}


def bench_pipeline(profile: str = "smoke", repeats: int = 30) -> list[dict]:
    """The pipeline trial's defaults (ResNet-18 → FPGM 50% → QAT 8-bit → int8 ORT), trained on the profile's
    data in a throwaway cache, measured at 1 thread and at all cores. Accuracy is the profile's (smoke: synthetic)."""
    import tempfile
    from dataclasses import replace

    from common.models import DEFAULT_MODEL
    from common.profiles import get_profile
    from common.stages import compress_pipeline
    from common.trial import base_parser, parse_params, stage_context, start_session

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as home:
        for threads in _thread_settings():
            args = parse_params(base_parser(""), ["--profile", profile, "--latency-threads", str(threads),
                                                  "--cache-dir", f"{home}/artifacts", "--data-dir", f"{home}/data"])
            # The data set's own image size (32x32 for smoke's synthetic data, which trains at 16x16 to keep smoke
            # runs short): the targets are for ResNet-18 at CIFAR's input size.
            timed = replace(get_profile(profile), latency_repeats=repeats, latency_warmup=5, image_size=None)
            session = start_session(args, timed)
            m = compress_pipeline(stage_context(session), DEFAULT_MODEL, pruner="fpgm",
                                  sparsity=0.5, algorithm="qat", bits=8)
            targets = {k: {"value": m[k], "target": t, "met": m[k] <= t if k == "size_ratio" else m[k] >= t}
                       for k, t in pipeline_targets(cpu_info().exact_int8).items()}
            results.append({"threads": threads, "profile": profile, "dataset": session.profile.dataset,
                            "targets": targets, **{k: v for k, v in m.items() if isinstance(v, (int, float, str))}})
    return results


def print_pipeline(results: list[dict]) -> None:
    r0 = results[0]
    print(f"\n## Pipeline default (ResNet-18, FPGM 50%, NNI QAT 8-bit, int8 on {r0['runtime_used']}) vs dense fp32 "
          f"({r0['profile']} profile, {r0['dataset']} data)")
    print(f"CPU {r0['cpu_model']} [{r0['cpu_isa']}], int8 scheme {r0['int8_scheme_used']} ({r0['weight_bits']}-bit "
          f"weights), agreement with NNI's simulation {r0['agreement_val']:.4f} (val)")
    print(f"MB: dense fp32 ONNX {r0['dense_ort_size_mb']:.2f}  deployed int8 ONNX {r0['size_mb']:.2f} "
          f"(x{r0['size_ratio']:.3f}); params x{r0['params_ratio']:.3f}")
    print(f"test accuracy: dense {r0['dense_test_acc']:.4f}  pruned {r0['pruned_test_acc']:.4f}  "
          f"deployed int8 {r0['int8_test_acc']:.4f} (Δ {100 * r0['delta_test_acc']:+.2f} pt)")
    print("| threads | batch | dense torch fp32 ms | dense ORT fp32 ms | pruned ORT fp32 ms | deployed int8 ms |"
          " vs dense torch | vs dense ORT fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        for b in BATCHES:
            ms = [r[f"{m}_latency_ms_b{b}"] for m in ("dense", "dense_ort", "pruned_ort", "int8")]
            print(f"| {r['threads']} | {b} | {ms[0]:.2f} | {ms[1]:.2f} | {ms[2]:.2f} | {ms[3]:.2f} | "
                  f"{r[f'speedup_b{b}']:.2f}x | {r[f'speedup_vs_dense_ort_b{b}']:.2f}x |")
    for r in results:
        for name, t in r["targets"].items():
            op = "<=" if name == "size_ratio" else ">="
            print(f"threads {r['threads']}: {name} = {t['value']:.3f} (target {op} {t['target']}): "
                  f"{'met' if t['met'] else 'NOT met'}")


BENCHES: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
    "pruning": (bench_pruning, print_pruning),
    "data": (bench_data, print_data),
    "train": (bench_train, print_train),
    "quant": (benchmark_quant, print_quant),
    "pipeline": (bench_pipeline, print_pipeline),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=[*BENCHES, "all", "headline"])
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--speed-dir", type=Path, default=bench_headline.SPEED_DIR,
                        help="headline: write <cpu class>.json here (not with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="headline: 16x16 inputs, 2 timed rounds, written only to --json (a check, not a result)")
    args = parser.parse_args(argv)
    nni_compat.quiet()
    where = cpu_info()
    print(f"machine: {where.model} [{where.isa}], {os.cpu_count()} cores, torch {torch.__version__}")
    if args.which == "headline":
        results = _headline(args)
    else:
        results = {}
        for name in list(BENCHES) if args.which == "all" else [args.which]:
            run, show = BENCHES[name]
            results[name] = run()
            show(results[name])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


def _headline(args: argparse.Namespace) -> dict[str, Any]:
    """The headline bench; a full run is written to --speed-dir as <cpu class>.json, the record docs/ cite."""
    data = bench_headline.bench_headline(bench_headline.QUICK if args.quick else bench_headline.Size())
    bench_headline.print_headline(data)
    if not args.quick:
        path = args.speed_dir / f"{data['cpu_class']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {path}; then: python3 -m common.cli.docs --write")
    return data


if __name__ == "__main__":
    main()
