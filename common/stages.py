"""The stages trials chain, each a function of one `StageContext` (common/context.py: data, device, cache,
recipes, latency setting; `common.trial.stage_context(session)` builds it) that returns a model and what was
measured:

- `dense_stage(ctx, arch)`: the architecture trained, once, through the artifact cache;
- `pruned_stage(ctx, arch, pruner, sparsity, ...)`: the cached dense model pruned (one-shot or gradual)
  and fine-tuned, cached too, so trials sharing this prefix (quantization from a 50%-pruned model, the
  pipeline) do not repeat it;
- `quantize_deploy_measure(ctx, start, references, ...)`, which the quantization and pipeline trials share.

`quantize_deploy_measure(ctx, start, {"dense": dense_model, ...}, ...)`
quantizes `start` with an NNI quantizer (PTQ calibrates; QAT, LSQ and DoReFa fine-tune through NNI's
TorchEvaluator), deploys the result as a real int8 ONNX Runtime model carrying NNI's scales, and measures,
in one process:

- accuracy (val and test) of every model: the references, `start`, NNI's simulation (`sim`) and the
  deployed `int8` model, and how often simulation and deployment agree;
- CPU latency, all models interleaved in one call at one thread count: each fp32 model in torch,
  `start` in fp32 ONNX Runtime (so the int8 gain alone is visible), the int8 model;
- size: fp32 ONNX bytes of each, int8 bytes, and what a packed `bits`-wide format would store;
- params and FLOPs of each fp32 model (the int8 model has `start`'s).

Keys are `<model>_<metric>`; the headline keys (`accuracy`, `val_acc`, `size_mb`, `latency_ms_b1`,
`speedup_b64`, ...) describe the deployed int8 model, and every ratio and Δ compares it with the
reference named `dense`. A reference that is the same object as `start` or as another reference is
measured once and reported under each name.

`compress_pipeline(ctx, arch, ...)` is the combined experiment (NAS → prune → QAT) built on the three: the
architecture trained and pruned through the artifact cache, then quantized and deployed, with the dense
ResNet-18 as `dense`.
"""

from __future__ import annotations

import argparse
import copy
import errno
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common import cpu, params, portability, stagewise
from common.cache import atomic_write
from common.context import StageContext
from common.data import TensorLoader
from common.deploy import (
    RUNTIME_NAMES,
    RUNTIMES,
    DeploymentError,
    OrtModule,
    deploy_int8,
    export_fp32,
    openvino_available,
    openvino_kernel_report,
    packed_weight_bytes,
    qdq_reference,
    runtime_module,
)
from common.metrics import contention, measure_latency, size_measurement
from common.models import DEFAULT_MODEL, StageOf, arch_key, stage_function
from common.profiles import MIN_AGREEMENT
from common.pruning import PruneStats, prune_gradually, prune_model, split_finetune
from common.quantization import (
    ALGORITHMS,
    BITS,
    DEFAULT_CALIBRATION_BATCHES,
    dequantized_model,
    quantize_model,
    simulated_weights,
    take_inputs,
)
from common.quantization import validate as validate_quantization
from common.record import LATENCY_BATCHES, SPLITS, Latency, Measurement, comparison_keys, result_keys
from common.train import TrainConfig, evaluate, fit, fp32_exact, predict, seed_everything, training_precision

DEPLOYED_MODEL_FILE = "model.int8.onnx"
RUNTIME_CHOICES = ("auto", "ort", "openvino")


def add_quantization_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algorithm", default="qat", choices=ALGORITHMS, help="NNI quantizer")
    parser.add_argument("--bits", type=int, default=8, choices=BITS, help="weight bits; activations are 8-bit")
    parser.add_argument("--stage-bits", default=None, metavar="B1,B2,B3,B4",
                        help="weight bits per stage of --model instead of --bits (common/stagewise.py); stem and "
                             "classifier 8")
    parser.add_argument("--calibration-batches", type=int, default=DEFAULT_CALIBRATION_BATCHES,
                        help="training batches for PTQ / ONNX Runtime calibration")
    parser.add_argument("--int8-scheme", default="reduced", choices=cpu.INT8_SCHEMES,
                        help="weight grid: reduced (7-bit: exact on every CPU, the portable default), full (8-bit: "
                             "exact only on VNNI/AMX/ARM targets, saturates on AVX2-only x86), auto (full where this "
                             "CPU is exact: for a file that runs only on this kind of CPU)")
    parser.add_argument("--portability-check", default=None, choices=portability.CHECKS,
                        help="avx2: also run the deployed file on an emulated AVX2-only CPU (qemu-user) and report "
                             "portable_avx2; none: skip (default: the profile's, avx2 for cpu and full)")
    parser.add_argument("--portability-images", type=int, default=portability.DEFAULT_IMAGES,
                        help="validation images the portability check runs under emulation, per runtime")
    parser.add_argument("--runtime", default="auto", choices=RUNTIME_CHOICES,
                        help="int8 CPU runtime: ort (ONNX Runtime), openvino, auto (the faster, measured here)")
    parser.add_argument("--min-agreement", type=_fraction, default=None,
                        help="fail the trial when deployed and simulated top-1 agree on fewer validation images "
                             "(default: the profile's, 0.99 on real data)")
    parser.add_argument("--keep-model", default=None, metavar="PATH",
                        help="also copy the deployed int8 ONNX model to PATH (an NNI trial keeps it in its output "
                             "directory; a hand-run trial otherwise discards it)")
    params.add_check(parser, check_quantization_arguments)
    params.add_resolver(parser, _resolve_deployment_defaults)


def check_quantization_arguments(args: argparse.Namespace) -> None:
    """What argparse cannot check (or a tuner's value bypassed): ValueError naming the flag."""
    validate_quantization(args.algorithm, args.bits)
    for flag, value in (("--calibration-batches", args.calibration_batches),
                        ("--portability-images", args.portability_images)):
        params.require(params.is_int(value) and value >= 1, flag, "an integer >= 1", value)
    if args.stage_bits is not None:
        stagewise.parse("stage_bits", args.stage_bits)
        stage_function(args.model)  # a model whose record names no stages fails here
    if args.keep_model:  # the deployed model is written after all training: a path that cannot work must fail now
        target = Path(args.keep_model).expanduser()
        writable = os.access(target, os.W_OK) if target.exists() else os.access(target.parent, os.W_OK)
        if target.is_dir() or not target.parent.is_dir() or not writable or not _regular_or_new(target):
            raise ValueError(f"--keep-model {args.keep_model}: not a writable file path (is {target.parent} a "
                             "writable folder?)")


def _regular_or_new(path: Path) -> bool:
    """A file --keep-model may write: a new path or an existing regular file (not /proc, not a device)."""
    if str(path.resolve()).startswith(("/proc/", "/sys/", "/dev/")):  # writable for root, yet no file lands there
        return False
    return not path.exists() or path.is_file()


def _resolve_deployment_defaults(values: dict[str, Any], profile: Any) -> None:
    """The agreement gate and the portability check default to the profile's; the result echoes what ran."""
    if values["min_agreement"] is None:
        values["min_agreement"] = profile.min_agreement
    if values["portability_check"] is None:
        values["portability_check"] = profile.portability_check


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text}")
    return value


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a == b).float().mean())


def _distinct(models: Mapping[str, nn.Module]) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """The models to measure (first name of each distinct object) and every name's measured name."""
    unique: dict[str, nn.Module] = {}
    alias: dict[str, str] = {}
    for name, model in models.items():
        first = next((n for n, m in unique.items() if m is model), None)
        if first is None:
            unique[name] = model
        alias[name] = first or name
    return unique, alias


def dense_key(ctx: StageContext, arch: str | dict) -> dict[str, Any]:
    return {"stage": "dense", "arch": arch_key(arch), **ctx.data_key, "seed": ctx.seed,
            "train": asdict(ctx.train),
            "precision": training_precision(ctx.train, ctx.device)}  # bf16 only where this CPU has it


def dense_stage(ctx: StageContext, arch: str | dict = DEFAULT_MODEL,
                report_epochs: bool = False) -> tuple[nn.Module, dict]:
    """The trained dense model from the artifact cache; trained here (once, under a lock) if missing.
    Returns the model (on `ctx.device`, in eval mode) and its training history."""

    def build() -> tuple[dict, dict]:
        seed_everything(ctx.seed)
        model = ctx.build(arch).to(ctx.device)
        history = fit(model, ctx.loaders["train"], ctx.train, device=ctx.device,
                      val_loader=ctx.loaders["val"], on_epoch_end=ctx.on_epoch_end if report_epochs else None)
        return _cpu_state(model), {"history": history}

    key = dense_key(ctx, arch)
    state, info, built = ctx.cache.get_or_build("dense", key, build)
    print(f"dense {arch_key(arch)}: {_outcome(ctx, built, 'trained', 'dense', key)}", flush=True)
    return ctx.build(arch, state).to(ctx.device).eval(), info


def pruned_key(ctx: StageContext, arch: str | dict, pruner: str, sparsity: float, schedule: str = "oneshot",
               steps: int = 1, stage_sparsity: tuple[float, ...] | None = None) -> dict[str, Any]:
    return {**dense_key(ctx, arch), "stage": "pruned", "pruner": pruner, "sparsity": float(sparsity),
            "finetune": asdict(ctx.finetune),
            "finetune_precision": training_precision(ctx.finetune, ctx.device),
            # Named only for more than one round, so one-shot entries stay valid (gradual in 1 step is one-shot).
            **({"prune_schedule": schedule, "prune_steps": steps} if steps > 1 else {}),
            # Named only when per stage, so uniform entries stay valid.
            **({"stage_sparsity": [float(s) for s in stage_sparsity]} if stage_sparsity is not None else {})}


def pruned_stage(ctx: StageContext, arch: str | dict, pruner: str, sparsity: float, *,
                 schedule: str = "oneshot", steps: int = 1, report_epochs: bool = False,
                 stage_sparsity: tuple[float, ...] | None = None) -> tuple[nn.Module, dict]:
    """The cached dense model, pruned and fine-tuned (with distillation from it when `ctx.finetune` says
    so), from the artifact cache or built here. `pruner` and `sparsity` as parse_params checked them
    (common.pruning.validate), `schedule` and `steps` as resolve_steps gave them: with more than one step,
    gradual pruning (its info adds `rounds`). Info: PruneStats as `stats`, `val_acc_before_finetune`, history."""

    def build() -> tuple[dict, dict]:
        dense, _ = dense_stage(ctx, arch)  # only when the pruned entry is missing: the key does not need it
        seed_everything(ctx.seed)
        if steps > 1:
            return _prune_gradually(ctx, dense, pruner, sparsity, steps, report_epochs)
        stage_of = stage_function(arch) if stage_sparsity is not None else None
        pruned, stats = prune_model(copy.deepcopy(dense).cpu(), pruner, sparsity, ctx.example_input, stage_sparsity,
                                    stage_of)
        pruned = pruned.to(ctx.device)
        before = evaluate(pruned, ctx.loaders["val"], device=ctx.device)["accuracy"]
        level = stage_sparsity or f"{sparsity:.2f}"
        print(f"pruned {pruner} {level}: params x{stats.params_ratio:.3f}, FLOPs x{stats.flops_ratio:.3f}, "
              f"val_acc before fine-tune {before:.4f}", flush=True)
        history = _finetune(ctx, pruned, ctx.finetune, dense, report_epochs)
        return _cpu_state(pruned), {"stats": asdict(stats), "val_acc_before_finetune": before, "history": history}

    key = pruned_key(ctx, arch, pruner, sparsity, schedule, steps, stage_sparsity)
    state, info, built = ctx.cache.get_or_build("pruned", key, build)
    how = f" gradual in {steps} steps" if steps > 1 else ""
    print(f"pruned {arch_key(arch)} {pruner} {stage_sparsity or sparsity}{how}: "
          f"{_outcome(ctx, built, 'built', 'pruned', key)}", flush=True)
    return ctx.build(arch, state).to(ctx.device).eval(), info


def _outcome(ctx: StageContext, built: bool, verb: str, name: str, key: dict[str, Any]) -> str:
    """What became of a cached stage's model: `loaded from cache`, `<verb> and cached`, or, when the cache could not
    keep it (a full disk: the cache's own log line says why), `<verb>, not cached`."""
    if not built:
        return "loaded from cache"
    return f"{verb} and cached" if ctx.cache.saved(name, key) else f"{verb}, not cached"


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


class _FromEpoch:
    """A training loader that starts at loader epoch `epoch` (`fit` resets its loader first)."""

    def __init__(self, loader: TensorLoader, epoch: int) -> None:
        self.loader, self.epoch = loader, epoch

    def reset(self) -> None:
        self.loader.epoch = self.epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


def _finetune(ctx: StageContext, model: nn.Module, config: TrainConfig, teacher: nn.Module,
              report_epochs: bool, first_epoch: int = 0) -> dict:
    """Fine-tune `model` with `config` (distilling from `teacher` when its distill_weight > 0). `first_epoch`:
    the loader epoch to start at, so that a later gradual-pruning round trains on fresh batches (as one-shot's
    later epochs do), not on the first round's again."""
    train = ctx.loaders["train"]
    loader = train if first_epoch == 0 else _FromEpoch(train, first_epoch)
    return fit(model, loader, config, device=ctx.device, val_loader=ctx.loaders["val"],
               on_epoch_end=ctx.on_epoch_end if report_epochs else None, teacher=teacher)


def _prune_gradually(ctx: StageContext, dense: nn.Module, pruner: str, sparsity: float, steps: int,
                     report_epochs: bool) -> tuple[dict, dict]:
    """`steps` rounds of (prune to the next level of common.pruning.sparsity_schedule, fine-tune), together
    with one-shot's fine-tune steps (split_finetune): the comparison with one-shot is at equal training cost."""
    cfg = split_finetune(ctx.finetune, steps, len(ctx.loaders["train"]))
    rounds: list[dict[str, float]] = []
    history: dict[str, list[float]] = {}

    def finetune_round(k: int, model: nn.Module, stats: PruneStats) -> None:
        model.to(ctx.device)
        before = evaluate(model, ctx.loaders["val"], device=ctx.device)["accuracy"]
        print(f"pruning round {k + 1}/{steps}: {pruner} to {stats.sparsity:.3f}, params {stats.params_after:,}, "
              f"val_acc before fine-tune {before:.4f}", flush=True)
        # Round k trains on loader epochs [k * e, (k + 1) * e): fresh batches, like one-shot's later epochs.
        # Only the last round, at the target sparsity, reports to NNI: an assessor (Medianstop) compares
        # intermediate results step by step with one-shot trials', which are all at the target sparsity.
        h = _finetune(ctx, model, cfg, dense, report_epochs and k == steps - 1, first_epoch=k * cfg.epochs)
        for name, values in h.items():
            history.setdefault(name, []).extend(values)
        rounds.append({"sparsity": stats.sparsity, "params": stats.params_after, "flops": stats.flops_after,
                       "val_acc_before_finetune": before, "val_acc_after_finetune": (h["val_acc"] or [before])[-1]})

    pruned, stats, _ = prune_gradually(copy.deepcopy(dense).cpu(), pruner, sparsity, steps, ctx.example_input,
                                       finetune_round)
    print(f"pruned {pruner} {sparsity:.2f} in {steps} rounds: params x{stats.params_ratio:.3f}, "
          f"FLOPs x{stats.flops_ratio:.3f}", flush=True)
    # val_acc_before_finetune: after the first cut, the only one made to a model that has not been fine-tuned.
    return _cpu_state(pruned), {"stats": asdict(stats), "val_acc_before_finetune": rounds[0]["val_acc_before_finetune"],
                                "rounds": rounds, "finetune_per_round": asdict(cfg), "history": history}


@dataclass(frozen=True)
class Quantized:
    """NNI's simulated model, the scales it found, what it did and on which weight grid."""

    sim: nn.Module
    calibration: Mapping[str, Any]
    info: Mapping[str, Any]
    scheme: str  # "full" or "reduced" (common/cpu.py)


def quantize_stage(ctx: StageContext, start: nn.Module, teacher: nn.Module, *, algorithm: str, bits: int,
                   calibration_batches: int, scheme: str, stage_bits: tuple[int, ...] | None = None,
                   stage_of: StageOf | None = None) -> Quantized:
    """NNI quantizes a copy of `start` on the `scheme` grid: PTQ calibrates, the others fine-tune (epochs
    reported to NNI), distilling from `teacher` when the recipe says so."""
    ctx.loaders["train"].reset()  # calibration batches must not depend on what this process trained before
    try:
        sim, calibration, info = quantize_model(
            start, algorithm, bits, train_loader=ctx.loaders["train"], val_loader=ctx.loaders["val"],
            finetune_cfg=ctx.qat, device=ctx.device, example_input=ctx.example_input,
            calibration_batches=calibration_batches, on_epoch_end=ctx.on_epoch_end,
            max_weight_bits=cpu.deployed_weight_bits(8, scheme), teacher=teacher, stage_bits=stage_bits,
            stage_of=stage_of)
    except (TypeError, AttributeError, IndexError, KeyError) as err:
        # NNI's own failures are opaque (`cannot unpack non-iterable NoneType object`): say what it was asked.
        raise RuntimeError(f"NNI's {algorithm} quantizer failed for --algorithm {algorithm} --bits {bits} "
                           f"--calibration-batches {calibration_batches}: {type(err).__name__}: {err}") from err
    return Quantized(fp32_exact(sim), calibration, info, scheme)


@dataclass(frozen=True)
class Deployed:
    """The int8 file, each candidate runtime running it, and what decides which may ship."""

    path: Path
    info: Mapping[str, Any]  # deploy_int8's: where scales came from, ORT's kernels, bytes
    runtimes: Mapping[str, nn.Module]
    kernels: Mapping[str, Mapping[str, Any]]
    preds: Mapping[str, Mapping[str, torch.Tensor]]  # "sim" and each runtime: top-1 per split
    agreement: Mapping[str, Mapping[str, float]]  # each runtime with the simulation, per split
    shippable: list[str]  # passed the gate (and the portability check, where any runtime passed it)
    portability: portability.Portability
    seconds: Mapping[str, float]


def deploy_stage(ctx: StageContext, quantized: Quantized, start: nn.Module, workdir: Path, *,
                 candidates: list[str], calibration_batches: int, min_agreement: float, portability_check: str,
                 portability_images: int) -> Deployed:
    """BN-folded ONNX with NNI's scales pinned as Q/DQ, run by each candidate runtime on integer kernels, gated
    against NNI's simulation (DeploymentError below `min_agreement`) and, if asked, checked on an AVX2-only CPU."""
    t0 = time.perf_counter()
    loaders, example = ctx.loaders, ctx.example_input
    deployment = deploy_int8(dequantized_model(quantized.sim.inner, start), quantized.calibration, workdir, example,
                             take_inputs(loaders["train"], calibration_batches))
    runtimes = {r: runtime_module(r, deployment.int8_path, threads=ctx.latency.threads) for r in candidates}
    kernels = {"ort": deployment.info}
    if "openvino" in runtimes:
        kernels["openvino"] = openvino_kernel_report(runtimes["openvino"], tuple(example.shape))
    deployed_s = time.perf_counter() - t0
    print(f"deployed ({quantized.scheme} grid, {quantized.info['weight_bits']}-bit weights): "
          + ", ".join(f"{r} {kernels[r]['integer_ops']}" for r in runtimes) + f" in {deployed_s:.0f}s", flush=True)

    t0 = time.perf_counter()
    preds = {name: {split: predict(m, loaders[split], device=ctx.device) for split in SPLITS}
             for name, m in {"sim": quantized.sim, **runtimes}.items()}
    agreement = {r: {split: _agreement(preds["sim"][split], preds[r][split]) for split in SPLITS} for r in runtimes}
    sound = shippable_runtimes(kernels, agreement, min_agreement)
    if not sound:
        worst = candidates[0]
        # The QDQ graph's own float execution tells a runtime that saturates from a simulation that differs.
        reference = predict(qdq_reference(deployment.int8_path), loaders["val"], device=ctx.device)
        raise DeploymentError(_gate_message(worst, quantized.scheme, quantized.info["weight_bits"],
                                            agreement[worst]["val"], _agreement(reference, preds[worst]["val"]),
                                            min_agreement))
    evaluated_s = time.perf_counter() - t0
    checked = _check_portability(portability_check, deployment.int8_path, loaders["val"],
                                 {r: preds[r]["val"] for r in sound}, agreement, portability_images, min_agreement)
    shippable = shippable_runtimes(kernels, agreement, min_agreement, checked)
    return Deployed(deployment.int8_path, deployment.info, runtimes, kernels, preds, agreement, shippable, checked,
                    {"deploy": deployed_s, "evaluate": evaluated_s, "portability": checked.seconds})


def measure_stage(ctx: StageContext, fp32: Mapping[str, nn.Module], deployed: Deployed,
                  workdir: Path) -> tuple[dict[str, Any], dict[str, dict[int, float]], dict[str, int]]:
    """Accuracy of every fp32 model, and latency of every model (fp32 torch, fp32 ONNX Runtime, each int8
    runtime) interleaved in one call at one thread count, on the CPU the int8 model runs on. Returns the
    accuracies (with the deployed runtimes'), the latencies and the fp32 ONNX sizes."""
    loaders, example, threads = ctx.loaders, ctx.example_input, ctx.latency.threads
    onnx_fp32 = {name: export_fp32(m, workdir / f"{name}.fp32.onnx", example) for name, m in fp32.items()}
    preds = {**{name: {split: predict(m, loaders[split], device=ctx.device) for split in SPLITS}
                for name, m in fp32.items()}, **deployed.preds}
    acc = {name: {split: _agreement(p[split], ctx.labels[split]) for split in SPLITS} for name, p in preds.items()}
    timed = {**{f"{name}_torch_fp32": copy.deepcopy(m).cpu() for name, m in fp32.items()},
             # fp32 ONNX Runtime, the strongest fp32 CPU baseline, for the int8 gain alone and against dense
             **{f"{name}_ort_fp32": OrtModule(path, threads=threads) for name, path in onnx_fp32.items()},
             **{f"int8_{r}": m for r, m in deployed.runtimes.items()}}
    lat = measure_latency(timed, LATENCY_BATCHES, input_shape=tuple(example.shape[1:]), threads=threads,
                          warmup=ctx.latency.warmup, repeats=ctx.latency.repeats, device="cpu")
    return acc, lat, {name: os.path.getsize(path) for name, path in onnx_fp32.items()}


def quantize_deploy_measure(ctx: StageContext, start: nn.Module, references: Mapping[str, nn.Module], *,
                            algorithm: str, bits: int, calibration_batches: int = DEFAULT_CALIBRATION_BATCHES,
                            start_name: str = "start", int8_scheme: str = "reduced", runtime: str = "auto",
                            min_agreement: float = MIN_AGREEMENT, keep_model: str | None = None,
                            portability_check: str = "none",
                            portability_images: int = portability.DEFAULT_IMAGES,
                            stage_bits: tuple[int, ...] | None = None,
                            stage_of: StageOf | None = None) -> dict[str, Any]:
    """Quantize `start`, deploy it as int8, measure it beside `references` (see module doc): `quantize_stage`,
    `deploy_stage` and `measure_stage`, then the fastest shippable runtime is the headline.

    `references` must hold `dense`: the model that speed-up, size ratio and Δaccuracy are relative to.
    `int8_scheme` picks the weight grid (common/cpu.py), `runtime` the int8 runtime (`auto`: the faster
    of ONNX Runtime and OpenVINO among those that pass the agreement gate and, with `portability_check="avx2"`,
    agree on an emulated AVX2-only CPU too, common/portability.py). Raises DeploymentError when
    the deployed model agrees with NNI's simulation on fewer than `min_agreement` of the validation images.
    The deployed model is copied to `keep_model` and to the NNI trial's output directory (key `int8_model`).
    """
    if "dense" not in references:
        raise ValueError(f"references need a 'dense' model to compare with; got {sorted(references)}")
    if start_name in references or start_name in ("sim", "int8", "ort", "openvino"):
        raise ValueError(f"start_name {start_name!r} collides with another model's name")
    if runtime not in RUNTIME_CHOICES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIME_CHOICES)}")
    if runtime == "openvino" and not openvino_available():
        raise DeploymentError("--runtime openvino needs the openvino package: pip install openvino")
    scheme = cpu.resolve_int8_scheme(int8_scheme)
    if scheme == "full":
        print(f"warning: {cpu.FULL_GRID_WARNING}", flush=True)
    candidates = [r for r in RUNTIMES if runtime in (r, "auto") and (r != "openvino" or openvino_available())]
    fp32, alias = _distinct({start_name: start, **references})

    quantized = quantize_stage(ctx, start, references["dense"], algorithm=algorithm, bits=bits,
                               calibration_batches=calibration_batches, scheme=scheme, stage_bits=stage_bits,
                               stage_of=stage_of)
    with tempfile.TemporaryDirectory(prefix="int8-stage-") as tmp:
        deployed = deploy_stage(ctx, quantized, start, Path(tmp), candidates=candidates,
                                calibration_batches=calibration_batches, min_agreement=min_agreement,
                                portability_check=portability_check, portability_images=portability_images)
        t0 = time.perf_counter()
        acc, lat, sizes = measure_stage(ctx, fp32, deployed, Path(tmp))
        seconds = {"quantize": quantized.info["seconds"], **deployed.seconds, "latency": time.perf_counter() - t0}
        load = contention(ctx.latency.threads)
        int8_bytes = os.path.getsize(deployed.path)
        kept = _keep(deployed.path, keep_model)
    chosen = _fastest(deployed.shippable, lat)
    checked = portability.decide(deployed.portability, chosen, min_agreement)
    return {
        **_measurement_keys(ctx, quantized, deployed, chosen, fp32, alias, start_name, list(references),
                            acc, lat, sizes, int8_bytes, bits),
        "agreement_val": deployed.agreement[chosen]["val"], "agreement_test": deployed.agreement[chosen]["test"],
        **{f"agreement_{split}_{r}": a[split] for r, a in deployed.agreement.items() for split in SPLITS},
        "min_agreement": min_agreement,
        "runtime_used": chosen, "int8_scheme_used": scheme, **cpu.describe(), **load, **checked.result_keys(RUNTIMES),
        # What NNI and the deployment did.
        **{k: quantized.info[k] for k in ("weight_bits", "activation_bits", "nni_quantizer")},
        "quant_finetune_epochs": quantized.info["finetune_epochs"],
        "layers_kept_at_8_bits": len(quantized.info["layers_kept_at_8_bits"]),
        **{f"seconds_{k}": v for k, v in seconds.items()},
        **{k: deployed.info[k] for k in ("activations_from_nni", "activations_from_ort", "weights_from_nni",
                                         "weights_from_ort")},
        "integer_kernels": bool(deployed.kernels[chosen]["integer_kernels"]),
        "shared_input_conflicts": len(deployed.info["shared_input_conflicts"]),
        "integer_ops": sum(deployed.kernels[chosen]["integer_ops"].values()),
        "int8_model": kept,
    }


def _measurement_keys(ctx: StageContext, quantized: Quantized, deployed: Deployed, chosen: str,
                      fp32: Mapping[str, nn.Module], alias: Mapping[str, str], start_name: str, references: list[str],
                      acc: Mapping[str, Mapping[str, float]], lat: Mapping[str, Mapping[int, float]],
                      sizes: Mapping[str, int], int8_bytes: int, bits: int) -> dict[str, Any]:
    """Every model's result keys (common/record.py) and the shipped model's against the references."""
    threads, shape = ctx.latency.threads, ctx.image_shape
    described = {name: size_measurement(m, shape) for name, m in fp32.items()}

    def timed_on_cpu(key: str, runtime: str) -> Latency:
        return Latency(lat[key], "cpu", runtime, threads)

    models: dict[str, Measurement] = {}
    for name in [start_name, *references]:
        a = alias[name]
        models[name] = replace(described[a], val_acc=acc[a]["val"], test_acc=acc[a]["test"],
                               latency=timed_on_cpu(f"{a}_torch_fp32", "torch fp32"))
        models[f"{name}_ort"] = Measurement(size_bytes=sizes[a], size_kind="fp32_onnx",
                                            latency=timed_on_cpu(f"{a}_ort_fp32", "onnxruntime fp32"))
    models["sim"] = Measurement(val_acc=acc["sim"]["val"], test_acc=acc["sim"]["test"])
    for r in deployed.runtimes:
        models[f"int8_{r}"] = Measurement(val_acc=acc[r]["val"], test_acc=acc[r]["test"],
                                          latency=timed_on_cpu(f"int8_{r}", f"{RUNTIME_NAMES[r]} int8"))
    # The headline: what ships, the int8 model on the chosen runtime (4-bit weights run on int8 kernels).
    start = described[alias[start_name]]
    shipped = replace(models[f"int8_{chosen}"], params=start.params, flops=start.flops, size_bytes=int8_bytes,
                      size_kind="int8_onnx",
                      latency=replace(models[f"int8_{chosen}"].latency, runtime=f"{RUNTIME_NAMES[chosen]} int8"
                                      + (f" ({bits}-bit weights on int8 kernels)" if bits < 8 else "")))
    packed = packed_weight_bytes(quantized.calibration, simulated_weights(quantized.sim.inner))
    models["int8"] = replace(models[f"int8_{chosen}"], latency=shipped.latency)  # `int8_*`: the shipped runtime
    models["packed"] = Measurement(size_bytes=packed, size_kind="packed")
    return {
        **result_keys(shipped),
        **{k: v for name, m in models.items() for k, v in result_keys(m, name).items()},
        # Against the dense model: accuracy delta, ratios, speed-up over dense eager torch; size to its fp32 ONNX.
        **comparison_keys(shipped, models["dense"], "dense", size_ref=models["dense_ort"]),
        # fp32 ONNX Runtime is the strongest fp32 CPU baseline: the int8 gain alone and against dense.
        **comparison_keys(shipped, models[f"{start_name}_ort"], f"{start_name}_ort"),
        **comparison_keys(shipped, models["dense_ort"], "dense_ort"),
        **comparison_keys(shipped, models[start_name], start_name),
        "packed_size_ratio": packed / models["dense_ort"].size_bytes,
    }


def _gate_message(runtime: str, scheme: str, weight_bits: int, agreement: float, kernel_agreement: float,
                  min_agreement: float) -> str:
    where = cpu.cpu_info()
    advice = ("; this CPU's int8 kernels can saturate at 8 bits: use --int8-scheme reduced"
              if scheme == "full" and not where.exact_int8 else "")
    return (f"deployed int8 model ({RUNTIME_NAMES[runtime]}, {scheme} {weight_bits}-bit weight grid) agrees with "
            f"NNI's simulation on {agreement:.1%} of validation images (< {min_agreement:.0%}; {kernel_agreement:.1%} "
            f"with its own QDQ graph) on CPU {where.model} [{where.isa}]{advice}")


def shippable_runtimes(kernels: Mapping[str, Mapping[str, Any]], agreement: Mapping[str, Mapping[str, float]],
                       min_agreement: float, checked: portability.Portability | None = None) -> list[str]:
    """The runtimes that run integer kernels and pass the gate; of those, only the ones the portability check
    passed when it passed any (never ship a file that saturates elsewhere when another runtime is portable)."""
    sound = [r for r in agreement if kernels[r]["integer_kernels"] and agreement[r]["val"] >= min_agreement]
    if checked is None:
        return sound
    return [r for r in sound if checked.runtime_ok(r, min_agreement)] or sound


def _fastest(shippable: list[str], lat: Mapping[str, Mapping[int, float]]) -> str:
    """The runtime to ship: the fastest (geometric mean over batch sizes) of those that may ship."""

    def cost(r: str) -> float:
        per = lat[f"int8_{r}"]
        return math.prod(per.values()) ** (1 / len(per))

    return min(shippable, key=cost)


def _check_portability(check: str, path: Path, val_loader: TensorLoader, host_val_top1: Mapping[str, torch.Tensor],
                       host_agreement: Mapping[str, Mapping[str, float]], images: int,
                       min_agreement: float) -> portability.Portability:
    """The AVX2 check of the deployed file for each runtime that passed the host gate (common/portability.py)."""
    if check == "none":
        return portability.skipped()
    if portability.host_is_avx2_only():
        return portability.from_host_gate({r: host_agreement[r]["val"] for r in host_val_top1})
    x = torch.cat(take_inputs(val_loader, math.ceil(images / val_loader.batch_size)))[:images].cpu().float()
    return portability.check_avx2(path, x.numpy(), {r: top1[:len(x)].numpy() for r, top1 in host_val_top1.items()},
                                  min_agreement=min_agreement)


class KeepModelError(RuntimeError):
    """--keep-model could not write the deployed model (a full disk): the trial fails, nothing is left at the path."""


def _keep(int8_path: Path, keep: str | None = None) -> str:
    """Copy the deployed model into the NNI trial's output directory, where there is one (a warning if it cannot),
    and to `keep` (--keep-model: KeepModelError if it cannot); returns where it was kept, `keep` first, "" if
    nowhere. Each copy is atomic: a path holds the whole model or nothing."""
    kept = ""
    out = os.environ.get("NNI_OUTPUT_DIR")
    if out:
        try:
            _copy_whole(int8_path, Path(out) / DEPLOYED_MODEL_FILE)
            kept = str(Path(out) / DEPLOYED_MODEL_FILE)
        except OSError as err:  # the measurements are worth reporting even when NNI's copy cannot be kept
            print(f"warning: could not keep the deployed model at {out}: {_why(err)}", flush=True)
    if not keep:
        return kept
    target = Path(keep).expanduser()
    try:
        _copy_whole(int8_path, target)
    except OSError as err:  # the user asked for this file: a trial that cannot write it must not end as a success
        elsewhere = f"; the trial's copy is at {kept}" if kept else ""
        raise KeepModelError(f"--keep-model {target}: {_why(err)}; nothing was written there{elsewhere}") from None
    return str(target)


def _copy_whole(source: Path, target: Path) -> None:
    with open(source, "rb") as src:
        atomic_write(target, lambda f: shutil.copyfileobj(src, f))


def _why(err: OSError) -> str:
    return "no space left on device" if err.errno == errno.ENOSPC else (err.strerror or str(err))


def compress_pipeline(ctx: StageContext, arch: str | dict, *, pruner: str,
                      sparsity: float, algorithm: str, bits: int,
                      calibration_batches: int = DEFAULT_CALIBRATION_BATCHES, prune_schedule: str = "oneshot",
                      prune_steps: int = 1,
                      stage_sparsity: tuple[float, ...] | None = None, stage_bits: tuple[int, ...] | None = None,
                      model: str = DEFAULT_MODEL, **deployment_options: Any) -> dict[str, Any]:
    """The combined experiment: `arch` trained (cached) → pruned + fine-tuned (cached) → quantized → deployed int8,
    every stage measured beside the dense `model` (`--model`, ResNet-18 by default; `arch` is `model` itself or a
    NAS architecture). Keys: `dense_*` the baseline, `arch_*` the trained architecture, `pruned_*`, `sim_*` (NNI's
    simulation), `int8_*` and the headline keys the deployed model.
    """
    baseline, _ = dense_stage(ctx, model)
    trained = baseline if arch == model else dense_stage(ctx, arch)[0]
    pruned, prune_info = pruned_stage(ctx, arch, pruner, sparsity, schedule=prune_schedule, steps=prune_steps,
                                      stage_sparsity=stage_sparsity)
    metrics = quantize_deploy_measure(ctx, pruned, {"dense": baseline, "arch": trained},
                                      algorithm=algorithm,
                                      bits=bits, calibration_batches=calibration_batches, start_name="pruned",
                                      stage_bits=stage_bits, stage_of=stage_function(arch) if stage_bits else None,
                                      **deployment_options)
    return metrics | {"arch_key": arch_key(arch),
                      "pruned_val_acc_before_finetune": prune_info["val_acc_before_finetune"]}
