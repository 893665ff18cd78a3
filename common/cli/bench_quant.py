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
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from common import cpu
from common.data import load_splits, make_loaders
from common.deploy import OrtModule, deploy_int8, export_fp32, openvino_available, runtime_module
from common.metrics import measure_latency
from common.models import resnet18
from common.pruning import prune_model
from common.quantization import dequantized_model, quantize_model, take_inputs
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


def _quantize_and_deploy(model: torch.nn.Module, name: str, algorithm: str, loaders: dict, workdir: Path,
                         example: torch.Tensor, weight_bits: int) -> tuple[Path, dict[str, Any]]:
    cfg = TrainConfig(epochs=1, lr=0.01, schedule="constant", print_freq=1000)
    sim, calibration, qinfo = quantize_model(model, algorithm, 8, train_loader=loaders["train"], finetune_cfg=cfg,
                                             example_input=example, calibration_batches=2,
                                             max_weight_bits=weight_bits)
    deployment = deploy_int8(dequantized_model(sim, model), calibration, workdir, example,
                             take_inputs(loaders["train"], 2), name=name)
    return deployment.int8_path, {**deployment.info, "nni_quantizer": qinfo["nni_quantizer"]}


def benchmark_quant(threads_list: Sequence[int | None] = (1, None), *, algorithm: str = "qat", repeats: int = 20,
                    warmup: int = 3, train_images: int = 64, int8_scheme: str = "auto") -> list[dict[str, Any]]:
    """One dict per thread setting (`None`: torch's default thread count, all cores): latency in ms of
    dense fp32 torch, dense fp32 ORT, dense int8 on ORT and OpenVINO, pruned fp32 torch and pruned int8
    on both at batch 1 and 64, the speed-up and size ratios, and whether each target is met.

    The dense and the 50%-FPGM-pruned ResNet-18 are quantized to int8 by NNI's `algorithm` ("qat": one
    epoch over `train_images` synthetic images; "ptq": calibration only) and deployed by common.deploy.
    """
    where = cpu.cpu_info()
    scheme = cpu.resolve_int8_scheme(int8_scheme, where)
    weight_bits = cpu.deployed_weight_bits(8, scheme)
    runtimes = ["ort", "openvino"] if openvino_available() else ["ort"]
    torch.manual_seed(0)
    example = torch.randn(2, 3, 32, 32)
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        workdir = Path(tmp)
        splits = load_splits("synthetic", workdir, train_limit=train_images, eval_limit=64)
        loaders = make_loaders(splits, 32)
        dense = resnet18(splits.num_classes).eval()
        pruned, _ = prune_model(copy.deepcopy(dense), "fpgm", 0.5, example[:1])
        dense_fp32 = export_fp32(dense, workdir / "dense.fp32.onnx", example)
        dense_int8, dense_info = _quantize_and_deploy(dense, "dense", algorithm, loaders, workdir, example,
                                                      weight_bits)
        pruned_int8, pruned_info = _quantize_and_deploy(pruned, "pruned", algorithm, loaders, workdir, example,
                                                        weight_bits)
        sizes = {"dense_fp32_bytes": os.path.getsize(dense_fp32), "dense_int8_bytes": os.path.getsize(dense_int8),
                 "pruned_int8_bytes": os.path.getsize(pruned_int8)}
        sizes["dense_int8_file_ratio"] = sizes["dense_int8_bytes"] / sizes["dense_fp32_bytes"]
        sizes["pruned_int8_file_ratio"] = sizes["pruned_int8_bytes"] / sizes["dense_fp32_bytes"]
        scale_keys = ("activations_from_nni", "activations_from_ort", "weights_from_nni", "weights_from_ort")
        scales = {"dense": {k: dense_info[k] for k in scale_keys}, "pruned": {k: pruned_info[k] for k in scale_keys},
                  "nni_quantizer": dense_info["nni_quantizer"]}
        kernels = {"dense": dense_info["integer_ops"], "pruned": pruned_info["integer_ops"]}

        results = []
        for threads in threads_list:
            n = threads if threads is not None else torch.get_num_threads()
            models = {
                "dense_torch_fp32": dense, "dense_ort_fp32": OrtModule(dense_fp32, n),
                **{f"dense_int8_{r}": runtime_module(r, dense_int8, n) for r in runtimes},
                "pruned_torch_fp32": pruned,
                **{f"pruned_int8_{r}": runtime_module(r, pruned_int8, n) for r in runtimes},
            }
            lat = measure_latency(models, BATCHES, threads=n, warmup=warmup, repeats=repeats)
            # The headline int8 numbers are ONNX Runtime's; OpenVINO's are reported beside them.
            lat["dense_int8"], lat["pruned_int8"] = lat["dense_int8_ort"], lat["pruned_int8_ort"]
            ratios = {
                **{f"dense_int8_vs_ort_fp32_b{b}": lat["dense_ort_fp32"][b] / lat["dense_int8"][b] for b in BATCHES},
                **{f"dense_int8_vs_dense_torch_b{b}": lat["dense_torch_fp32"][b] / lat["dense_int8"][b]
                   for b in BATCHES},
                **{f"pruned_int8_vs_dense_torch_b{b}": lat["dense_torch_fp32"][b] / lat["pruned_int8"][b]
                   for b in BATCHES},
                **{f"pruned_int8_vs_pruned_torch_b{b}": lat["pruned_torch_fp32"][b] / lat["pruned_int8"][b]
                   for b in BATCHES},
                **{f"{m}_int8_{r}_vs_ort_fp32_b{b}": lat["dense_ort_fp32"][b] / lat[f"{m}_int8_{r}"][b]
                   for m in ("dense", "pruned") for r in runtimes for b in BATCHES},
            }
            values = {**ratios, **sizes}
            targets = {
                name: {"value": values[name], "target": goal,
                       "met": values[name] <= goal if name.endswith("file_ratio") else values[name] >= goal}
                for name, goal in targets_for(where).items()
            }
            results.append({"threads": n, "threads_setting": "all" if threads is None else threads,
                            "cpu_model": where.model, "cpu_isa": where.isa, "int8_scheme": scheme,
                            "weight_bits": weight_bits, "runtimes": runtimes,
                            "latency_ms": lat, "ratios": ratios, "sizes": sizes, "targets": targets,
                            "scales": scales, "integer_ops": kernels})
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
