"""The headline's speed, side by side on one CPU: every headline configuration's deployed model, built through the
trials' own code (common.pruning, common.stages: NNI's pruners and quantizers, the int8 deployment on the portable
7-bit grid), timed interleaved in one process against the dense model in fp32 ONNX Runtime (and, as a second
reference, in eager torch), at batch 1 and 64, 1 thread and 2.

    python3 -m common.cli.bench headline            # writes results/speed/<cpu class>.json (common/cpu.py)
    python3 -m common.cli.bench headline --quick    # a minute: 16x16 inputs, 2 timed rounds (not citable)

Weights are untrained (`torch.manual_seed(0)`; QAT/LSQ take a few steps on random images): speed depends on the
shapes, the weight grid and the runtime, not on what the weights learned. The run shows it once: a model trained on
Fashion-MNIST for a few seconds, deployed as PTQ 8-bit, is timed beside the untrained one (`trained_check`).
Input: the `cpu` profile's (Fashion-MNIST, 1x28x28), so the ratios are the README's configurations'.
"""

from __future__ import annotations

import copy
import importlib.metadata
import math
import os
import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common import cpu
from common.cache import ArtifactCache
from common.context import StageContext
from common.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, DatasetNotFoundError, TensorLoader, load_splits
from common.deploy import RUNTIME_NAMES, RUNTIMES, OrtModule, export_fp32, openvino_available, runtime_module
from common.metrics import LatencySetting, contention, measure_latency
from common.models import DEFAULT_MODEL, build_model
from common.pruning import prune_model
from common.stages import _fastest, deploy_stage, quantize_stage
from common.train import TrainConfig, evaluate, fit

BATCHES = (1, 64)
THREADS = (1, 2)
SPEED_DIR = Path("results/speed")
REFERENCE = "dense ResNet-18"  # the dense model in fp32 ONNX Runtime: every speed-up is against it


@dataclass(frozen=True)
class Config:
    """One deployed model: its start (`dense` or a 50 % pruned shape) and, for int8, NNI's algorithm and bits."""

    label: str
    start: str  # "dense", "fpgm", "l1"
    algorithm: str | None = None  # None: fp32 (ONNX Runtime; eager torch beside it)
    bits: int = 8


CONFIGS: tuple[Config, ...] = (
    Config(REFERENCE, "dense"),
    Config("FPGM 50 %", "fpgm"),
    Config("L1 50 %", "l1"),
    Config("QAT 8-bit from dense", "dense", "qat"),
    Config("PTQ 8-bit from dense", "dense", "ptq"),
    Config("LSQ 4-bit from FPGM 50 %", "fpgm", "lsq", 4),
    Config("PTQ 8-bit from FPGM 50 %", "fpgm", "ptq"),
    Config("pipeline FPGM 50 % → QAT 8-bit", "fpgm", "qat"),
)
# The headline rows (common.report.HEADLINE) and the deployed model that times each: pruned rows of one shape
# (one-shot, gradual, distilled) share a file's speed; so do the plain and the distilled pipeline.
HEADLINE_SPEED: dict[str, str] = {
    "dense ResNet-18": REFERENCE, "FPGM 50 %, one-shot": "FPGM 50 %", "FPGM 50 %, gradual": "FPGM 50 %",
    "FPGM 50 %, distilled": "FPGM 50 %", "L1 50 %, one-shot": "L1 50 %",
    "QAT 8-bit from dense": "QAT 8-bit from dense", "PTQ 8-bit from dense": "PTQ 8-bit from dense",
    "LSQ 4-bit from FPGM 50 %": "LSQ 4-bit from FPGM 50 %", "PTQ 8-bit from FPGM 50 %": "PTQ 8-bit from FPGM 50 %",
    "pipeline FPGM 50 % → QAT 8-bit": "pipeline FPGM 50 % → QAT 8-bit",
    "pipeline, distilled": "pipeline FPGM 50 % → QAT 8-bit",
}
TRAINED = "PTQ 8-bit from dense, trained weights"  # timed beside its untrained twin


@dataclass(frozen=True)
class Size:
    """How big a headline bench is: input side, timed rounds, and the seconds of training for the trained twin."""

    side: int = 28
    repeats: int = 20
    warmup: int = 3
    train_steps: int = 60
    quick: bool = False


QUICK = Size(side=16, repeats=2, warmup=1, train_steps=4, quick=True)


def _context(tmp: Path, side: int) -> StageContext:
    """What the quantize and deploy stages read: random 1xSxS images (calibration, one QAT step, the agreement
    check on 16 images, whose gate is off), one thread; the cache and the dense recipes are never read."""
    gen = torch.Generator().manual_seed(0)

    def loader(n: int, train: bool) -> TensorLoader:
        images = torch.randint(0, 256, (n, 1, side, side), dtype=torch.uint8, generator=gen)
        return TensorLoader(images, torch.arange(n) % 10, 32, train=train, mean=FASHION_MNIST_MEAN,
                            std=FASHION_MNIST_STD, pad=0)

    loaders = {"train": loader(128, True), "val": loader(16, False), "test": loader(16, False)}
    # One step of QAT / LSQ (NNI's training loop runs; a larger step on random weights can drive an LSQ scale negative).
    steps = TrainConfig(epochs=1, lr=1e-4, schedule="constant", steps_per_epoch=1, print_freq=1000)
    return StageContext(loaders=loaders, labels={s: loaders[s].labels for s in ("val", "test")},
                        device=torch.device("cpu"), cache=ArtifactCache(tmp / "artifacts"), data_key={},
                        num_classes=10, image_shape=(1, side, side), seed=0, train=steps, finetune=steps, qat=steps,
                        latency=LatencySetting(1, 1, 1))


def _starts(ctx: StageContext) -> dict[str, nn.Module]:
    """The untrained dense ResNet-18 (seed 0) and its 50 % FPGM and L1 shapes (dependency-aware + speed-up)."""
    torch.manual_seed(0)
    dense = build_model(DEFAULT_MODEL, ctx.num_classes, ctx.image_shape[0]).eval()
    example = torch.randn(1, *ctx.image_shape)
    return {"dense": dense, **{p: prune_model(copy.deepcopy(dense), p, 0.5, example)[0].eval() for p in ("fpgm", "l1")}}


def _int8(ctx: StageContext, start: nn.Module, algorithm: str, bits: int, workdir: Path) -> Path:
    """The int8 file a quantization trial would ship from `start` (portable 7-bit grid), through its stages."""
    quantized = quantize_stage(ctx, start, start, algorithm=algorithm, bits=bits, calibration_batches=2,
                               scheme="reduced")
    workdir.mkdir(parents=True)
    candidates = [r for r in RUNTIMES if r != "openvino" or openvino_available()]
    deployed = deploy_stage(ctx, quantized, start, workdir, candidates=candidates, calibration_batches=2,
                            min_agreement=0.0, portability_check="none", portability_images=0)
    return deployed.path


def _trained_dense(side: int, steps: int, tmp: Path) -> tuple[nn.Module, dict[str, Any]]:
    """A dense ResNet-18 trained for `steps` SGD steps on Fashion-MNIST (random images where it is not installed):
    seconds of training, enough to move every weight far from its initialisation."""
    try:
        splits = load_splits("fashion-mnist", tmp / "data", download=False, train_limit=64 * steps, eval_limit=1000,
                             image_size=side)
        images, labels, data = splits.train_images, splits.train_labels, "fashion-mnist"
        test = TensorLoader(splits.test_images, splits.test_labels, 250, train=False, mean=splits.mean, std=splits.std)
    except DatasetNotFoundError:
        gen = torch.Generator().manual_seed(1)
        images = torch.randint(0, 256, (64 * steps, 1, side, side), dtype=torch.uint8, generator=gen)
        labels, data, test = torch.arange(len(images)) % 10, "random images", None
    torch.manual_seed(1)
    model = build_model(DEFAULT_MODEL, 10, 1)
    train = TensorLoader(images, labels, 64, train=True, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD, pad=0)
    start = time.perf_counter()
    fit(model, train, TrainConfig(epochs=1, lr=0.05, schedule="cosine", print_freq=10_000), print_fn=lambda _: None)
    info = {"data": data, "steps": len(train), "seconds": round(time.perf_counter() - start, 1),
            "test_acc": evaluate(model, test)["accuracy"] if test is not None else None}
    return model.eval(), info


def build(tmp: Path, size: Size, configs: Sequence[Config] = CONFIGS
          ) -> tuple[dict[str, Path], dict[str, nn.Module], dict[str, Any]]:
    """Every configuration's deployed file (fp32 ONNX or int8 ONNX), the eager torch models of the fp32 ones, and
    the trained twin's file (`TRAINED`) with how it was trained."""
    ctx = _context(tmp, size.side)
    starts = _starts(ctx)
    example = torch.randn(1, *ctx.image_shape)
    files: dict[str, Path] = {}
    eager: dict[str, nn.Module] = {}
    for i, c in enumerate(configs):
        if c.algorithm is None:
            files[c.label] = export_fp32(starts[c.start], tmp / f"{i}.fp32.onnx", example)
            eager[c.label] = starts[c.start]
        else:
            files[c.label] = _int8(ctx, starts[c.start], c.algorithm, c.bits, tmp / f"int8-{i}")
    trained, info = _trained_dense(size.side, size.train_steps, tmp)
    files[TRAINED] = _int8(ctx, trained, "ptq", 8, tmp / "int8-trained")
    return files, eager, info


def _runnables(files: Mapping[str, Path], eager: Mapping[str, nn.Module], threads: int) -> dict[str, Any]:
    """`<label> | <runtime>` for each file on each runtime that runs it, `<label> | torch fp32` for the eager ones."""
    runtimes = [r for r in RUNTIMES if r != "openvino" or openvino_available()]
    out: dict[str, Any] = {}
    for label, path in files.items():
        if path.name.endswith(".fp32.onnx"):
            out[f"{label} | onnxruntime fp32"] = OrtModule(path, threads=threads)
        else:
            out |= {f"{label} | {r}": runtime_module(r, path, threads=threads) for r in runtimes}
    return out | {f"{label} | torch fp32": m for label, m in eager.items()}


def time_all(files: Mapping[str, Path], eager: Mapping[str, nn.Module], size: Size, threads: int
             ) -> tuple[dict[str, dict[int, float]], dict[str, Any]]:
    """Median ms of every model on every runtime, all interleaved in one call at `threads` threads."""
    models = _runnables(files, eager, threads)
    ms = measure_latency(models, BATCHES, input_shape=(1, size.side, size.side), threads=threads,
                         warmup=size.warmup, repeats=size.repeats)
    return ms, contention(threads)


def _row(label: str, ms: Mapping[str, Mapping[int, float]], threads: int) -> dict[str, Any]:
    """One configuration at one thread count: the runtime a trial ships (an int8 file: the fastest, as `--runtime
    auto` picks) and its speed-ups against the dense model in fp32 ONNX Runtime and in eager torch."""
    mine = {key.split(" | ")[1]: per for key, per in ms.items() if key.split(" | ")[0] == label}
    int8 = [r for r in RUNTIMES if r in mine]
    runtime = f"{_fastest(int8, {f'int8_{r}': mine[r] for r in int8})}" if int8 else "onnxruntime fp32"
    own, ort, eager = mine[runtime], ms[f"{REFERENCE} | onnxruntime fp32"], ms[f"{REFERENCE} | torch fp32"]
    row = {"threads": threads, "runtime": f"{RUNTIME_NAMES[runtime]} int8" if int8 else runtime,
           "ms": {str(b): own[b] for b in BATCHES},
           "vs_dense_ort": {str(b): ort[b] / own[b] for b in BATCHES},
           "vs_dense_torch": {str(b): eager[b] / own[b] for b in BATCHES},
           "all_runtimes_ms": {r: {str(b): v[b] for b in BATCHES} for r, v in mine.items()}}
    if "torch fp32" in mine:  # an fp32 shape in eager torch too: the in-trial kind of ratio
        row["torch_vs_dense_torch"] = {str(b): eager[b] / mine["torch fp32"][b] for b in BATCHES}
    return row


def _versions() -> dict[str, str | None]:
    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"python": platform.python_version(), **{p: version(p) for p in ("torch", "onnxruntime", "openvino", "nni")}}


def _trained_check(rows: Mapping[str, Mapping[int, dict[str, Any]]], info: dict[str, Any]) -> dict[str, Any]:
    """The trained file's time over its untrained twin's on each runtime, thread count and batch (1.0: the same)."""
    twin = "PTQ 8-bit from dense"
    ratio = {str(t): {r: {b: ms / rows[twin][t]["all_runtimes_ms"][r][b] for b, ms in per.items()}
                      for r, per in rows[TRAINED][t]["all_runtimes_ms"].items()} for t in rows[twin]}
    return {"configuration": twin, "trained": info, "trained_over_untrained_ms": ratio}


def bench_headline(size: Size = Size(), threads: tuple[int, ...] = THREADS,
                   configs: Sequence[Config] = CONFIGS) -> dict[str, Any]:
    """Build every configuration (`configs` must hold the reference and PTQ 8-bit from dense, the trained twin's),
    time them all interleaved at each thread count, and say on what."""
    where, t0 = cpu.cpu_info(), time.perf_counter()
    threads = tuple(t for t in threads if t <= (os.cpu_count() or 1)) or (1,)
    with tempfile.TemporaryDirectory(prefix="bench-headline-") as tmp:
        files, eager, info = build(Path(tmp), size, configs)
        built = time.perf_counter() - t0
        timed = {t: time_all(files, eager, size, t) for t in threads}
        sizes = {label: path.stat().st_size for label, path in files.items()}
    rows = {label: {t: _row(label, ms, t) for t, (ms, _) in timed.items()} for label in files}
    configurations = [{"label": label, "start": c.start, "algorithm": c.algorithm, "bits": c.bits,
                       "file": "fp32 ONNX" if c.algorithm is None else "int8 ONNX", "file_bytes": sizes[label],
                       "size_ratio": sizes[label] / sizes[REFERENCE], "by_threads": {str(t): r for t, r in
                                                                                    rows[label].items()}}
                      for c in configs for label in [c.label]]
    return {
        "cpu_class": where.isa_class, "cpu_model": where.model, "cpu_isa": where.isa,
        "native_bf16": where.native_bf16, "exact_int8": where.exact_int8, "machine": where.machine,
        "cores": os.cpu_count(), "versions": _versions(), "threads": list(threads),
        "input_shape": [1, size.side, size.side], "batches": list(BATCHES), "repeats": size.repeats,
        "warmup": size.warmup, "quick": size.quick, "int8_scheme": "reduced", "weights": "untrained (seed 0)",
        "reference": f"{REFERENCE} in fp32 ONNX Runtime", "configurations": configurations,
        "headline_rows": dict(HEADLINE_SPEED), "trained_check": _trained_check(rows, info),
        "load": {str(t): load for t, (_, load) in timed.items()},
        "seconds": {"build": round(built, 1), "total": round(time.perf_counter() - t0, 1)},
    }


def headline_speedups(data: Mapping[str, Any], threads: int = 1) -> dict[str, tuple[float, float]]:
    """{headline row label: (speed-up b1, b64) against dense fp32 ONNX Runtime} from a speed file, at `threads`."""
    by_label = {c["label"]: c["by_threads"][str(threads)]["vs_dense_ort"] for c in data["configurations"]}
    return {row: (by_label[c]["1"], by_label[c]["64"]) for row, c in data["headline_rows"].items() if c in by_label}


def speed_markdown(data: Mapping[str, Any]) -> list[str]:
    """One CPU's speed table: every configuration at each thread count, against dense fp32 ORT and eager torch."""
    check = data["trained_check"]
    trained = check["trained"]
    # Judged at one thread, the thread count of the headline's columns: at all the cores of a 2-core machine a
    # 1-ms forward shares its cores with the OS and the timings of batch 1 scatter (both files alike, run to run).
    ratios = check["trained_over_untrained_ms"]
    worst = max(abs(math.log(v)) for per in ratios["1"].values() for v in per.values())
    others = [abs(math.log(v)) for t, per_rt in ratios.items() if t != "1" for per in per_rt.values()
              for v in per.values()]
    lines = [f"`{data['cpu_model']}` [{data['cpu_isa']}{', native bf16' if data['native_bf16'] else ''}], "
             f"{data['cores']} cores; torch {data['versions']['torch']}, ONNX Runtime "
             f"{data['versions']['onnxruntime']}, OpenVINO {data['versions']['openvino'] or '–'}. Input "
             f"{'x'.join(map(str, data['input_shape']))}, medians of {data['repeats']} interleaved rounds, int8 on the "
             f"portable 7-bit grid, each int8 file on the faster runtime (as `--runtime auto` ships it); untrained "
             f"weights. Trained for {trained['seconds']} s on {trained['data']} ({trained['steps']} steps"
             + (f", test accuracy {100 * trained['test_acc']:.1f} %" if trained.get("test_acc") is not None else "")
             + f"), the {check['configuration']} file timed within {100 * (math.exp(worst) - 1):.0f} % of the "
             f"untrained one's on each runtime and batch at 1 thread"
             + (": speed does not depend on the weights" if worst <= math.log(1.15) else
                " (over 15 %: the machine was not idle; rerun it)")
             + (f" (within {100 * (math.exp(max(others)) - 1):.0f} % at {data['cores']} threads, where batch 1 "
                "scatters)." if others else "."), "",
             "| configuration | threads | runs as | size ratio | b1 ms | b64 ms | vs dense fp32 ORT b1 | b64 "
             "| vs dense eager torch b1 | b64 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in data["configurations"]:
        for t, r in c["by_threads"].items():
            lines.append(f"| {c['label']} | {t} | {r['runtime']} | {c['size_ratio']:.3f} | {r['ms']['1']:.2f} "
                         f"| {r['ms']['64']:.1f} | {r['vs_dense_ort']['1']:.2f}× | {r['vs_dense_ort']['64']:.2f}× "
                         f"| {r['vs_dense_torch']['1']:.2f}× | {r['vs_dense_torch']['64']:.2f}× |")
    return lines


def print_headline(data: Mapping[str, Any]) -> None:
    print(f"\n## Headline speed on {data['cpu_class']}: {data['seconds']['total']:.0f} s")
    print("\n".join(speed_markdown(data)))
