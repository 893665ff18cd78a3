"""Quantization trial: cached dense (or 50%-pruned) ResNet-18 → NNI quantizer (PTQ calibrates; QAT, LSQ and
DoReFa fine-tune through NNI's TorchEvaluator) → a real int8 ONNX Runtime model carrying NNI's scales →
accuracy of both, their agreement, CPU latency (fp32 torch, fp32 ORT, int8 ORT) and size → report to NNI.

    python trials/quant.py --algorithm qat --bits 8 --start pruned --profile smoke

`--bits` is the weight width; activations are 8-bit (common/quantization.py says why). No CPU runtime here
executes 4-bit convolutions: a 4-bit trial's latency is the int8 runtime running its 4-bit weights, and
`packed_bytes` is what a 4-bit format would store.
"""

import copy
import os
import shutil
import tempfile
import time
from pathlib import Path

import _path  # noqa: F401
import torch

from common.deploy import OrtModule, deploy_int8, export_fp32, packed_weight_bytes
from common.metrics import measure_latency
from common.quantization import (
    ALGORITHMS,
    BITS,
    DEFAULT_CALIBRATION_BATCHES,
    dequantized_model,
    fp32_exact,
    quantize_model,
    simulated_weights,
    take_inputs,
    validate,
)
from common.train import predict
from common.trial import (
    LATENCY_BATCHES,
    base_parser,
    parse_params,
    report_final,
    report_intermediate,
    run_main,
    start_session,
)

STARTS = ("dense", "pruned")
SPLITS = ("val", "test")
PRUNED = ("fpgm", 0.5)  # the pruning stage's 50% FPGM model, shared through the artifact cache


def get_parser():
    parser = base_parser(__doc__)
    parser.add_argument("--algorithm", default="qat", choices=ALGORITHMS)
    parser.add_argument("--bits", type=int, default=8, choices=BITS, help="weight bits; activations are 8-bit")
    parser.add_argument("--start", default="dense", choices=STARTS, help="quantize the dense or the 50%%-pruned model")
    parser.add_argument("--calibration-batches", type=int, default=DEFAULT_CALIBRATION_BATCHES,
                        help="training batches for PTQ / ONNX Runtime calibration")
    return parser


def accuracy(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    return float((predictions == targets).float().mean())


def main() -> None:
    args = parse_params(get_parser())
    validate(args.algorithm, args.bits)  # before any training: a bad value must fail in seconds
    session = start_session(args)
    loaders, device, example = session.loaders, session.device, session.example_input
    labels = {"val": session.splits.val_labels, "test": session.splits.test_labels}  # loaders keep this order

    # Model: the cached dense baseline, or the cached 50%-pruned one built from it.
    dense, _ = session.dense_model("resnet18")
    start = dense if args.start == "dense" else session.pruned_model("resnet18", *PRUNED)[0]

    # Quantize: NNI wraps a copy of the model; PTQ calibrates, the others fine-tune.
    sim, calibration, qinfo = quantize_model(
        start, args.algorithm, args.bits, train_loader=loaders["train"], val_loader=loaders["val"],
        finetune_cfg=session.finetune_config(), device=device, example_input=example,
        calibration_batches=args.calibration_batches, on_epoch_end=report_intermediate)
    sim = fp32_exact(sim)
    seconds = {"quantize": qinfo["seconds"]}

    with tempfile.TemporaryDirectory(prefix="quant-trial-") as tmp:
        t0 = time.perf_counter()
        workdir = Path(tmp)
        # Deploy: BN-folded ONNX, NNI's scales pinned as Q/DQ, checked to run on ORT's integer kernels.
        calib_batches = take_inputs(loaders["train"], args.calibration_batches)
        deployment = deploy_int8(dequantized_model(sim.inner, start), calibration, workdir, example, calib_batches)
        start_fp32 = export_fp32(start, workdir / "start.fp32.onnx", example)
        dense_fp32 = start_fp32 if args.start == "dense" else export_fp32(dense, workdir / "dense.fp32.onnx", example)
        int8 = OrtModule(deployment.int8_path, threads=args.latency_threads)
        ort_fp32 = OrtModule(start_fp32, threads=args.latency_threads)
        seconds["deploy"] = time.perf_counter() - t0
        print(f"deployed: {deployment.info['integer_ops']} in {seconds['deploy']:.0f}s", flush=True)

        # Measure: accuracy of what NNI simulated and of what ships, and how often they agree (one pass each).
        models = {"sim": sim, "int8": int8, "dense": dense} | ({"start": start} if args.start != "dense" else {})
        preds = {name: {split: predict(m, loaders[split], device=device) for split in SPLITS}
                 for name, m in models.items()}
        preds.setdefault("start", preds["dense"])
        acc = {name: {f"{split}_acc": accuracy(p[split], labels[split]) for split in SPLITS}
               for name, p in preds.items()}
        agree = {split: accuracy(preds["sim"][split], preds["int8"][split]) for split in SPLITS}
        seconds["evaluate"] = time.perf_counter() - t0 - seconds["deploy"]

        # Latency on the CPU the int8 model runs on, all four interleaved in one call (same thread count).
        models = {"torch_fp32": copy.deepcopy(start).cpu(), "ort_fp32": ort_fp32, "int8": int8}
        if args.start != "dense":
            models["dense_torch_fp32"] = copy.deepcopy(dense).cpu()
        lat = measure_latency(models, LATENCY_BATCHES, input_shape=tuple(example.shape[1:]),
                              threads=args.latency_threads, warmup=session.profile.latency_warmup,
                              repeats=session.profile.latency_repeats, device="cpu")
        lat.setdefault("dense_torch_fp32", lat["torch_fp32"])
        seconds["latency"] = time.perf_counter() - t0 - seconds["deploy"] - seconds["evaluate"]

        sizes = {"int8_bytes": os.path.getsize(deployment.int8_path),
                 "packed_bytes": packed_weight_bytes(calibration, simulated_weights(sim.inner)),
                 "fp32_onnx_bytes": os.path.getsize(start_fp32), "dense_fp32_onnx_bytes": os.path.getsize(dense_fp32)}
        kept = _keep(deployment.int8_path)

    # Report: `default` is the deployed int8 model's validation accuracy, what the user ships.
    metrics = {
        "accuracy": acc["int8"]["test_acc"], "val_acc": acc["int8"]["val_acc"], "test_acc": acc["int8"]["test_acc"],
        **{f"{name}_{split}": v for name, a in acc.items() for split, v in a.items()},
        "delta_test_acc": acc["int8"]["test_acc"] - acc["dense"]["test_acc"],
        "agreement_val": agree["val"], "agreement_test": agree["test"],
        **{f"{name}_ms_b{b}": ms for name, per in lat.items() for b, ms in per.items()},
        **{f"latency_ms_b{b}": lat["int8"][b] for b in LATENCY_BATCHES},
        **{f"speedup_b{b}": lat["dense_torch_fp32"][b] / lat["int8"][b] for b in LATENCY_BATCHES},
        **{f"speedup_vs_ort_fp32_b{b}": lat["ort_fp32"][b] / lat["int8"][b] for b in LATENCY_BATCHES},
        **{f"speedup_vs_torch_fp32_b{b}": lat["torch_fp32"][b] / lat["int8"][b] for b in LATENCY_BATCHES},
        "latency_runtime": "onnxruntime CPU int8" + (" (4-bit weights run as int8)" if args.bits < 8 else ""),
        **sizes,
        "size_mb": sizes["int8_bytes"] / 1e6,
        "size_ratio": sizes["int8_bytes"] / sizes["dense_fp32_onnx_bytes"],
        "packed_size_ratio": sizes["packed_bytes"] / sizes["dense_fp32_onnx_bytes"],
        **{k: qinfo[k] for k in ("weight_bits", "activation_bits", "nni_quantizer")},
        "quant_finetune_epochs": qinfo["finetune_epochs"],
        "layers_kept_at_8_bits": len(qinfo["layers_kept_at_8_bits"]),
        **{f"seconds_{k}": v for k, v in seconds.items()},
        **{k: deployment.info[k] for k in ("activations_from_nni", "activations_from_ort", "weights_from_nni",
                                           "weights_from_ort", "integer_kernels")},
        "shared_input_conflicts": len(deployment.info["shared_input_conflicts"]),
        "integer_ops": sum(deployment.info["integer_ops"].values()),
        "int8_model": kept,
    }
    report_final(metrics["int8_val_acc"], metrics, args)


def _keep(int8_path: Path) -> str:
    """Copy the deployed model into the NNI trial's output directory, if there is one."""
    out = os.environ.get("NNI_OUTPUT_DIR")
    if not out:
        return ""
    target = Path(out) / "model.int8.onnx"
    shutil.copyfile(int8_path, target)
    return str(target)


if __name__ == "__main__":
    run_main(main)
