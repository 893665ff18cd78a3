"""Benchmark of real int8 deployment: dense fp32 torch / fp32 ORT / int8 on ONNX Runtime and on OpenVINO,
and 50%-pruned + int8, on CIFAR ResNet-18, with scales from NNI's quantizers, on the weight grid this CPU
executes exactly (`--int8-scheme auto`, common/cpu.py).

    python3 -m common.cli.bench quant

Weights are random plus a short NNI QAT (or PTQ) on synthetic data: speed and size do not depend on how
well the weights are trained, but the scales do come from NNI, not from ONNX Runtime's calibration
(`scales` in the result counts where every quantized tensor's scale came from). Latency is the median
of interleaved forwards at a fixed thread count (torch and ORT pinned to the same count), as in
common.metrics.measure_latency. Numbers depend on the CPU and its load: rerun rather than trust a table.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from common import cpu
from common.cache import ArtifactCache
from common.context import StageContext
from common.data import load_splits, make_loaders
from common.metrics import LatencySetting
from common.models import resnet18
from common.pruning import prune_model
from common.record import read
from common.stages import quantize_deploy_measure
from common.train import TrainConfig

BATCHES = (1, 64)
# int8 at least this much faster than the same model in fp32 ONNX Runtime, by CPU kind: integer kernels
# without VNNI (two instructions per multiply-add pair) gain less than with it.
INT8_VS_ORT_FP32 = {"exact": 2.5, "saturating": 1.8}
TARGETS = {
    "pruned_int8_vs_dense_torch_b1": 6.0,  # 50%-pruned + int8 at least 6x faster than dense fp32 torch
    "pruned_int8_vs_dense_torch_b64": 6.0,
    "dense_int8_file_ratio": 0.30,  # int8 file at most 30% of the fp32 file's bytes
    "pruned_int8_file_ratio": 0.10,  # pruned + int8 at most 10%
}


def targets_for(info: cpu.CpuInfo) -> dict[str, float]:
    """The targets on a CPU of `info`'s kind (the int8 speed-up target depends on VNNI)."""
    goal = INT8_VS_ORT_FP32["exact" if info.exact_int8 else "saturating"]
    return {**{f"dense_int8_vs_ort_fp32_b{b}": goal for b in BATCHES}, **TARGETS}


def benchmark_quant(threads_list: Sequence[int | None] = (1, None), *, algorithm: str = "qat", repeats: int = 20,
                    warmup: int = 3, train_images: int = 64, int8_scheme: str = "auto") -> list[dict[str, Any]]:
    """One dict per thread setting (`None`: torch's default thread count, all cores): latency in ms of
    dense fp32 torch, dense fp32 ORT, dense int8 on ORT and OpenVINO, pruned fp32 torch and pruned int8
    on both at batch 1 and 64, the speed-up and size ratios, and whether each target is met.

    The dense and the 50%-FPGM-pruned ResNet-18 go through the trials' own stage (common.stages.
    quantize_deploy_measure: NNI's `algorithm` on `train_images` synthetic images, deployment, the kernel
    check), once per thread setting; its agreement gate is off (random weights give near-tie logits).
    """
    where = cpu.cpu_info()
    scheme = cpu.resolve_int8_scheme(int8_scheme, where)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        splits = load_splits("synthetic", Path(tmp), train_limit=train_images, eval_limit=64)
        dense = resnet18(splits.num_classes).eval()
        example = torch.randn(1, *splits.train_images.shape[1:])
        pruned, _ = prune_model(copy.deepcopy(dense), "fpgm", 0.5, example)
        results = []
        for threads in threads_list:
            n = threads if threads is not None else torch.get_num_threads()
            qat = TrainConfig(epochs=1, lr=0.01, schedule="constant", print_freq=1000)
            # Only the quantize stages run: the cache and the dense/fine-tune recipes are never read.
            inputs = StageContext(loaders=make_loaders(splits, 32),
                                  labels={"val": splits.val_labels, "test": splits.test_labels},
                                  device=torch.device("cpu"), cache=ArtifactCache(Path(tmp) / "artifacts"),
                                  data_key={"data": splits.fingerprint}, num_classes=splits.num_classes,
                                  image_shape=tuple(splits.train_images.shape[1:]), seed=0, train=qat, finetune=qat,
                                  qat=qat, latency=LatencySetting(n, warmup, repeats))
            options = {"algorithm": algorithm, "bits": 8, "calibration_batches": 2, "int8_scheme": scheme,
                       "min_agreement": 0.0}
            # Each start is timed in its own call, beside the dense model: ratios stay within one interleaved run.
            d = quantize_deploy_measure(inputs, dense, {"dense": dense}, start_name="start", **options)
            p = quantize_deploy_measure(inputs, pruned, {"dense": dense}, start_name="pruned", **options)
            runtimes = [r for r in ("ort", "openvino") if read(d, f"int8_{r}").latency is not None]
            ms = {name: read(result, model).latency.ms for name, (result, model) in {
                "dense_torch_fp32": (d, "dense"), "dense_ort_fp32": (d, "dense_ort"),
                "pruned_torch_fp32": (p, "pruned"), "dense_torch_fp32_beside_pruned": (p, "dense"),
                **{f"dense_int8_{r}": (d, f"int8_{r}") for r in runtimes},
                **{f"pruned_int8_{r}": (p, f"int8_{r}") for r in runtimes}}.items()}
            # The headline int8 numbers are ONNX Runtime's; OpenVINO's are reported beside them.
            ms["dense_int8"], ms["pruned_int8"] = ms["dense_int8_ort"], ms["pruned_int8_ort"]
            ratios = {
                **{f"dense_int8_vs_ort_fp32_b{b}": ms["dense_ort_fp32"][b] / ms["dense_int8"][b] for b in BATCHES},
                **{f"dense_int8_vs_dense_torch_b{b}": ms["dense_torch_fp32"][b] / ms["dense_int8"][b]
                   for b in BATCHES},
                **{f"pruned_int8_vs_dense_torch_b{b}": ms["dense_torch_fp32_beside_pruned"][b] / ms["pruned_int8"][b]
                   for b in BATCHES},
                **{f"pruned_int8_vs_pruned_torch_b{b}": ms["pruned_torch_fp32"][b] / ms["pruned_int8"][b]
                   for b in BATCHES},
                **{f"dense_int8_{r}_vs_ort_fp32_b{b}": ms["dense_ort_fp32"][b] / ms[f"dense_int8_{r}"][b]
                   for r in runtimes for b in BATCHES},
            }
            sizes = {"dense_fp32_bytes": read(d, "dense_ort").size_bytes, "dense_int8_bytes": read(d).size_bytes,
                     "pruned_int8_bytes": read(p).size_bytes}
            sizes["dense_int8_file_ratio"] = sizes["dense_int8_bytes"] / sizes["dense_fp32_bytes"]
            sizes["pruned_int8_file_ratio"] = sizes["pruned_int8_bytes"] / sizes["dense_fp32_bytes"]
            values = {**ratios, **sizes}
            targets = {
                name: {"value": values[name], "target": goal,
                       "met": values[name] <= goal if name.endswith("file_ratio") else values[name] >= goal}
                for name, goal in targets_for(where).items()
            }
            scale_keys = ("activations_from_nni", "activations_from_ort", "weights_from_nni", "weights_from_ort")
            results.append({"threads": n, "threads_setting": "all" if threads is None else threads,
                            "cpu_model": where.model, "cpu_isa": where.isa, "int8_scheme": scheme,
                            "weight_bits": d["weight_bits"], "runtimes": runtimes,
                            "latency_ms": ms, "ratios": ratios, "sizes": sizes, "targets": targets,
                            "scales": {"dense": {k: d[k] for k in scale_keys}, "pruned": {k: p[k] for k in scale_keys},
                                       "nni_quantizer": d["nni_quantizer"]},
                            "integer_ops": {"dense": d["integer_ops"], "pruned": p["integer_ops"]}})
    return results


# A table cell from one thread setting's (latency_ms, ratios) at one batch size.
Cell = Callable[[dict[str, Any], dict[str, Any], int], str]


def _ms(model: str) -> Cell:
    return lambda lat, _ratios, b: f"{lat[model][b]:.2f}"


def _times(ratio: str) -> Cell:
    return lambda _lat, ratios, b: f"{ratios[f'{ratio}_b{b}']:.2f}x"


def _print_table(results: list[dict[str, Any]], columns: Sequence[tuple[str, Cell]]) -> None:
    """A markdown table with one row per (thread setting, batch size) and `columns` after those two."""
    print("| threads | batch | " + " | ".join(header for header, _ in columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for r in results:
        for b in BATCHES:
            cells = [cell(r["latency_ms"], r["ratios"], b) for _, cell in columns]
            print(f"| {r['threads_setting']} ({r['threads']}) | {b} | " + " | ".join(cells) + " |")


def print_quant(results: list[dict[str, Any]]) -> None:
    print("\n## Quantization: CIFAR ResNet-18, NNI scales deployed as int8 on ONNX Runtime and OpenVINO (CPU)")
    first = results[0]
    print(f"CPU {first['cpu_model']} [{first['cpu_isa']}]: int8 scheme {first['int8_scheme']} "
          f"({first['weight_bits']}-bit weights), runtimes {', '.join(first['runtimes'])}")
    print(f"scales from NNI ({first['scales']['nni_quantizer']}): {first['scales']}")
    s = first["sizes"]
    print(f"file bytes  fp32 {s['dense_fp32_bytes']:,}  int8 {s['dense_int8_bytes']:,} "
          f"(x{s['dense_int8_file_ratio']:.3f})  pruned int8 {s['pruned_int8_bytes']:,} "
          f"(x{s['pruned_int8_file_ratio']:.3f})")
    _print_table(results, [
        ("torch fp32 ms", _ms("dense_torch_fp32")), ("ORT fp32 ms", _ms("dense_ort_fp32")),
        ("ORT int8 ms", _ms("dense_int8")), ("pruned torch ms", _ms("pruned_torch_fp32")),
        ("pruned int8 ms", _ms("pruned_int8")), ("int8/ORT fp32", _times("dense_int8_vs_ort_fp32")),
        ("int8/torch", _times("dense_int8_vs_dense_torch")),
        ("pruned int8/dense torch", _times("pruned_int8_vs_dense_torch")),
    ])
    if "openvino" in first["runtimes"]:
        print()
        _print_table(results, [
            ("ORT fp32 ms", _ms("dense_ort_fp32")), ("ORT int8 ms", _ms("dense_int8_ort")),
            ("OpenVINO int8 ms", _ms("dense_int8_openvino")),
            ("ORT int8/ORT fp32", _times("dense_int8_ort_vs_ort_fp32")),
            ("OpenVINO int8/ORT fp32", _times("dense_int8_openvino_vs_ort_fp32")),
            ("OpenVINO vs ORT int8",
             lambda lat, _ratios, b: f"{lat['dense_int8_ort'][b] / lat['dense_int8_openvino'][b]:.2f}x"),
            ("pruned: ORT int8 ms", _ms("pruned_int8_ort")), ("OpenVINO int8 ms", _ms("pruned_int8_openvino")),
        ])
    for r in results:
        for name, t in r["targets"].items():
            op = "<=" if name.endswith("file_ratio") else ">="
            print(f"threads {r['threads_setting']}: {name} = {t['value']:.3f} (target {op} {t['target']}): "
                  f"{'met' if t['met'] else 'NOT met'}")
