"""Quantization with NNI 3.0's quantizers: one call from a float model to a fake-quantized (simulated) one.

`quantize_model(model, "qat", 8, ...)` deep-copies the model, wraps its Conv2d/Linear layers with one of
NNI's `PtqQuantizer` / `QATQuantizer` / `LsqQuantizer` / `DoReFaQuantizer`, calibrates (PTQ) or
fine-tunes with `nni.compression.TorchEvaluator` (the others), and returns the simulated model plus the
per-layer scales and zero points in a form `common.deploy` turns into a real int8 ONNX Runtime model.

NNI only *simulates* quantization (float tensors rounded to a grid): the simulated model is neither
smaller nor faster. `common/deploy.py` is what makes it real.

Quantization targets (chosen so that the simulated model computes what the deployed int8 graph computes):
- weights of every Conv2d and Linear, `bits` wide, symmetric (zero point 0), one scale per output
  channel. Symmetric because ONNX Runtime's fast int8 kernels (and most int8 runtimes) want weight
  zero points of 0; per output channel because deployment folds each BatchNorm into the conv before
  it, multiplying each output channel by its own factor: only per-channel scales keep NNI's integer
  weights exactly representable after folding (and per-channel scales are what make 4 bits usable).
- activations, always 8 bits, one scale per tensor, quantized once where they are produced, as in the
  int8 graph: ReLU outputs (a block's output feeds the next conv *and* the residual branch; quantizing
  only conv inputs would leave the identity branch float in the simulation while the int8 model adds
  8-bit tensors), the BatchNorm outputs that enter a residual addition, and the inputs of layers whose
  input no quantized module produced (the image into the stem, the pooled features into the
  classifier). See `activation_points`. The integer kernels of every CPU runtime here take 8-bit
  activations; simulating 4-bit activations would describe a model nothing here can execute. So `bits`
  is the *weight* width: 4 means W4A8, the configuration 4-bit weight formats are deployed with.
- no conv outputs: each feeds a BatchNorm that is folded away at deployment, so a fake-quant there would
  sit on a tensor that does not exist in the deployed graph.
- first and last layer: at 4 bits the stem conv (3 input channels, sees raw pixels) and the
  classifier (writes the logits) keep 8-bit weights, as in the DoReFa and LSQ papers: together they
  hold < 0.1% of ResNet-18's weights but are the layers most sensitive to quantization.
- DoReFa is the exception for activations (see `config_list`).
"""

from __future__ import annotations

import copy
import math
import operator
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from common.models import DEFAULT_MODEL, StageOf, stage_function
from common.nni_compat import quiet_nni, safe_dorefa_quantizer_class
from common.train import (
    TrainConfig,
    eval_mode,
    fit,
    fp32_exact,
    make_optimizer,
)

BITS: tuple[int, ...] = (4, 8)  # the weight widths every quantizer of the registry (QUANTIZERS, below) offers
ACTIVATION_BITS = 8
QUANTIZED_TYPES = ("Conv2d", "Linear")
DEFAULT_CALIBRATION_BATCHES = 8

Batches = Iterable[Any]
EpochCallback = Callable[[int, dict[str, float]], None]


class QuantizationError(RuntimeError):
    """Quantization produced something unusable (NaN/inf scales, weights or outputs)."""


def validate(algorithm: str, bits: int) -> None:
    """Fail fast, before any training, on parameters this module cannot honour."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown quantization algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    offered = QUANTIZERS[algorithm].bits
    if isinstance(bits, bool) or bits not in offered:
        raise ValueError(f"unsupported bit width {bits!r}; choose one of {', '.join(map(str, offered))} (weight bits)")


def _layer_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if type(m).__name__ in QUANTIZED_TYPES]


RELUS = ("ReLU", "ReLU6")  # activations NNI can quantize at their output (its QuantizationSetting registry)
_SHAPE_OPS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Identity)


def activation_points(model: nn.Module) -> dict[str, dict[str, bool]]:
    """Where each activation tensor is quantized, once, at its producer, as the int8 graph does it:
    `{module: {"input" | "output": signed}}`.

    - the output of every ReLU (its consumers, e.g. the next conv *and* the residual branch, all see
      the same 8-bit tensor; quantizing at each conv's input would leave the identity branch float);
    - the output of every BatchNorm2d that is an operand of a residual addition;
    - the input of a Conv2d/Linear whose input is not already quantized (the model input, the pooled
      and flattened features before the classifier).

    Found by tracing with torch.fx; if the model does not trace, every Conv2d/Linear input instead.
    `signed` says whether the tensor can be negative (LSQ's zero point is fixed at 0).
    """
    modules = dict(model.named_modules())
    try:
        graph = torch.fx.symbolic_trace(copy.deepcopy(model).cpu().eval()).graph
    except Exception:  # noqa: BLE001 - untraceable: fall back to per-layer inputs
        return {name: {"input": True} for name in _layer_names(model)}

    def kind(node: Any) -> str:
        if isinstance(node, torch.fx.Node) and node.op == "call_module":
            return type(modules[node.target]).__name__
        return ""

    def nonnegative(node: Any) -> bool:
        if kind(node) in RELUS:
            return True
        shape_only = (node.op == "call_module" and isinstance(modules[node.target], _SHAPE_OPS)) or (
            node.op == "call_function" and node.target in (torch.flatten,)) or (
            node.op == "call_method" and node.target in ("flatten", "view", "reshape"))
        return shape_only and isinstance(node.args[0], torch.fx.Node) and nonnegative(node.args[0])

    points: dict[str, dict[str, bool]] = {}
    for node in graph.nodes:
        k = kind(node)
        if k in RELUS:
            points.setdefault(node.target, {})["output"] = False
        elif k == "BatchNorm2d" and any(_is_add(u) for u in node.users):
            points.setdefault(node.target, {})["output"] = True
        elif k in QUANTIZED_TYPES and kind(node.args[0]) not in RELUS:
            points.setdefault(node.target, {})["input"] = not nonnegative(node.args[0])
    return points


def _is_add(node: torch.fx.Node) -> bool:
    return (node.op == "call_function" and node.target in (operator.add, torch.add)) or (
        node.op == "call_method" and node.target in ("add", "add_"))


def config_list(model: nn.Module, algorithm: str, bits: int, max_weight_bits: int = 8,
                stage_bits: Sequence[int] | None = None, stage_of: StageOf | None = None) -> list[dict[str, Any]]:
    """NNI config list for `model` (see the module docstring for why these targets). No weight grid is
    wider than `max_weight_bits` (7 on CPUs whose int8 kernels saturate at 8, see common/cpu.py).
    `stage_bits` (common/stagewise.py) gives each stage (`stage_of`, default ResNet's) its own weight bits; stem
    and classifier 8."""
    validate(algorithm, bits)
    if not 2 <= max_weight_bits <= 8:
        raise ValueError(f"max_weight_bits must be in 2..8, got {max_weight_bits}")
    layers = _layer_names(model)
    if not layers:
        raise ValueError("model has no Conv2d or Linear layer to quantize")
    edge = {layers[0], layers[-1]} if bits < 8 else set()  # stem and classifier keep 8-bit weights

    def layer_bits(name: str) -> int:
        if stage_bits is None:
            return 8 if name in edge else bits
        stage = (stage_of or stage_function(DEFAULT_MODEL))(name)
        return 8 if stage is None else int(stage_bits[stage])

    q = QUANTIZERS[algorithm]
    # One entry per layer and target: NNI applies top-level settings to every target of an entry.
    configs = [{"op_names": [name], "target_names": ["weight"],
                **q.weight(min(layer_bits(name), max_weight_bits))} for name in layers]
    points = {name: {"input": False} for name in layers} if q.layer_inputs_only else activation_points(model)
    for name, targets in points.items():
        for target, signed in targets.items():
            configs.append({"op_names": [name], "target_names": [f"_{target}_"], **q.activation(signed)})
    return configs


# ------------------------------------------------------------------------------------- NNI evaluator


def _loss_fn(cfg: TrainConfig) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


def _nni_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The project's optimizer (SGD + Nesterov, no decay on <=1-D params), traced so NNI can rebuild it
    for the wrapped model and add the quantizer's own parameters (LSQ step sizes) to it."""
    import nni

    plain = make_optimizer(model, cfg)
    groups = [{"params": list(g["params"]), "weight_decay": g["weight_decay"], "name": g["name"]}
              for g in plain.param_groups]
    return nni.trace(torch.optim.SGD)(groups, lr=cfg.lr, momentum=cfg.momentum,
                                      nesterov=cfg.nesterov and cfg.momentum > 0)


def _training_func(cfg: TrainConfig, train_loader: Batches, device: torch.device, label: str,
                   val_loader: Batches | None, on_epoch_end: EpochCallback | None,
                   history: dict[str, list[float]], teacher: nn.Module | None = None) -> Callable[..., None]:
    """common.train.fit in the shape NNI's TorchEvaluator calls: NNI owns the optimizer (it patches `step`
    to drive the quantizer) and the training step. Fake quantization runs in fp32, also on CUDA."""

    def training_func(model: nn.Module, optimizers: torch.optim.Optimizer, training_step: Callable,
                      lr_schedulers: Any = None, max_steps: int | None = None, max_epochs: int | None = None) -> None:
        epochs = max_epochs if max_epochs is not None else cfg.epochs
        history.update(fit(model, train_loader, replace(cfg, epochs=epochs), device=device, val_loader=val_loader,
                           on_epoch_end=on_epoch_end, optimizer=optimizers, training_step=training_step,
                           max_steps=max_steps, mixed_precision=False, name=label, teacher=teacher))

    return training_func


def _calibration_func(batches: Batches, device: torch.device) -> Callable[..., None]:
    """PTQ's "training": forward passes in eval mode, no gradients, no weight update. NNI's PTQ tracks
    min/max in every forward of this pass and turns them into scales afterwards."""

    def calibrate(model: nn.Module, optimizers: Any, training_step: Any, lr_schedulers: Any = None,
                  max_steps: int | None = None, max_epochs: int | None = None) -> None:
        with eval_mode(model), torch.no_grad():
            for i, batch in enumerate(batches):
                if max_steps is not None and i >= max_steps:
                    break
                model(_inputs(batch).to(device))

    return calibrate


def _inputs(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def take_inputs(batches: Batches, n: int) -> list[torch.Tensor]:
    """The inputs of the first `n` batches (labels dropped), e.g. as calibration data."""
    out = []
    for i, batch in enumerate(batches):
        if i >= n:
            break
        out.append(_inputs(batch))
    return out


# ------------------------------------------------------------------------------------ observation


def _observe(quantizer: Any, model: nn.Module, batches: list[torch.Tensor], device: torch.device,
             reduce: str) -> dict[tuple[str, str], torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """Run `batches` through the wrapped model and record, per (layer, target), the abs-max
    (`reduce="absmax"`) or (min, max) (`reduce="minmax"`), per output channel where the target has one."""
    seen: dict[tuple[str, str], Any] = {}

    def track(wrapper: Any, target_name: str, target: torch.Tensor) -> None:
        ts = wrapper.quantization_target_spaces.get(target_name)
        if ts is None or not isinstance(target, torch.Tensor):
            return
        t = target.detach()
        if ts._scaler is not None:
            lo = ts._scaler.shrink(t, lambda v: v.amin(dim=-1), keepdim=True)
            hi = ts._scaler.shrink(t, lambda v: v.amax(dim=-1), keepdim=True)
        else:
            lo, hi = t.amin(), t.amax()
        key = (wrapper.name, target_name)
        if key in seen:
            lo, hi = torch.minimum(seen[key][0], lo), torch.maximum(seen[key][1], hi)
        seen[key] = (lo, hi)

    # NNI has no public list of its wrappers nor a public way to add a track function to one.
    wrappers = [quantizer._module_wrappers[name] for name in quantizer._target_spaces]
    for w in wrappers:
        w.register_track_func(track)
    try:
        with eval_mode(model), torch.no_grad():
            for x in batches:
                model(x.to(device))
    finally:
        for w in wrappers:
            w._track_funcs.remove(track)
    if reduce == "absmax":
        return {k: torch.maximum(lo.abs(), hi.abs()) for k, (lo, hi) in seen.items()}
    return seen


def _init_lsq_scales(quantizer: Any, model: nn.Module, batches: list[torch.Tensor], device: torch.device) -> None:
    """NNI 3.0's LsqQuantizer starts every step size at 0.01 (lsq_quantizer.py `init_scale`, the paper's
    2<|v|>/sqrt(Qp) init commented out): at 0.01 an unsigned 8-bit input saturates at 2.55, far below a
    trained ResNet's activations, so a short fine-tune starts from a broken model. We start from
    min-max step sizes instead (the PTQ model), and LSQ learns from there."""
    # Set first: NNI's first-forward init must not run, neither now (the observed ranges would come from
    # a model already clamped at 0.01 steps) nor later (it would reset the step sizes to 0.01).
    quantizer.is_init = True
    absmax = _observe(quantizer, model, batches, device, "absmax")  # zero points unset: a float forward
    # Written into the target spaces, not through update_calibration_config: that replaces each step size with
    # a new tensor, and LSQ's step sizes are the nn.Parameters its optimizer already holds.
    for name, spaces in quantizer._target_spaces.items():
        for target_name, ts in spaces.items():
            scale = (absmax[(name, target_name)] / ts.qmax).clamp_min(torch.finfo(torch.float32).eps)
            if ts._scaler is None:
                scale = scale.reshape(1)
            ts.scale.data = scale.to(ts.scale.device)
            setattr(ts._wrapper, ts._zero_point_name, torch.zeros_like(ts.scale.data))


def _drop_track_func(quantizer: Any, method: Callable) -> None:
    for name in quantizer._target_spaces:
        wrapper = quantizer._module_wrappers[name]
        wrapper._track_funcs = [f for f in wrapper._track_funcs if getattr(f, "__func__", None) is not method]


def _freeze_dorefa_inputs(quantizer: Any, model: nn.Module, batches: list[torch.Tensor], device: torch.device) -> None:
    """NNI's DoReFa recomputes each input scale from the current batch, also at inference
    (dorefa_quantizer.py `update_scale_zp`): outputs then depend on what else is in the batch, and an
    int8 model needs one static scale. After fine-tuning we calibrate it once (min/max over the
    calibration batches, NNI's own affine formula) and freeze it, so simulated and deployed agree."""
    from nni.compression.quantization.dorefa_quantizer import DoReFaQuantizer, init_scale_zp

    ranges = _observe(quantizer, model, batches, device, "minmax")
    _drop_track_func(quantizer, DoReFaQuantizer.update_scale_zp)
    frozen: dict[str, dict[str, dict[str, Any]]] = {}
    for name, targets in quantizer.get_calibration_config().items():
        for target_name, config in targets.items():
            if target_name.startswith("_input_"):
                lo, hi = ranges[(name, target_name)]
                qmin, qmax = _dtype_range(config["quant_dtype"])
                scale, zero_point = init_scale_zp(hi, lo, qmax, qmin, "affine")
                frozen.setdefault(name, {})[target_name] = {**config, "scale": scale, "zero_point": zero_point}
    quantizer.update_calibration_config(frozen)


# --------------------------------------------------------------------------------------- results


def simulated_weights(sim_model: nn.Module) -> dict[str, torch.Tensor]:
    """The fake-quantized weight of every wrapped layer: exactly what the simulated model computes with."""
    out = {}
    for name, module in sim_model.named_modules():
        wrapper = getattr(module, "_nni_wrapper", None)
        if wrapper is None or "weight" not in wrapper.quantization_target_spaces:
            continue
        ts = wrapper.quantization_target_spaces["weight"]
        with torch.no_grad():
            out[name] = wrapper._apply_quant_helper(ts.target, ts).detach().float().cpu().clone()
    return out


def _dtype_range(quant_dtype: str) -> tuple[int, int]:
    """NNI's integer range of a quant_dtype (target_space.py `_compute_qmin_qmax`: int8 is [-127, 127])."""
    bits = int(quant_dtype.removeprefix("u").removeprefix("int"))
    return (0, 2 ** bits - 1) if quant_dtype.startswith("uint") else (-(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1)


def _weight_grid(nni_config: dict[str, Any], out_channels: int, algorithm: str) -> dict[str, Any]:
    """Per-output-channel scale of the grid the simulated weight lies on (integers = weight / scale)."""
    scale = QUANTIZERS[algorithm].weight_grid_factor * nni_config["scale"].detach().float().abs().reshape(-1)
    if scale.numel() == 1:  # per-tensor: one scale for every output channel
        scale = scale.expand(out_channels).clone()
    bits = nni_config["quant_bits"]
    qmin, qmax = _dtype_range(f"int{bits}")  # symmetric whatever the scheme (DoReFa's too, see above)
    return {"scale": scale, "zero_point": torch.zeros(out_channels, dtype=torch.int64),
            "bits": bits, "qmin": qmin, "qmax": qmax, "axis": 0}


def _activation_grid(nni_config: dict[str, Any], module: str, target_name: str, label: str) -> dict[str, Any]:
    scale = float(nni_config["scale"].detach().reshape(-1)[0])
    zero_point = float(nni_config["zero_point"].detach().reshape(-1)[0])
    if not (math.isfinite(scale) and scale > 0 and math.isfinite(zero_point)):
        kind = "input" if target_name.startswith("_input_") else "output"
        raise QuantizationError(f"{label}: {module} got {kind} scale {scale} / zero point {zero_point} "
                                "from NNI (NaN/inf activations upstream?)")
    qmin, qmax = _dtype_range(nni_config["quant_dtype"])
    return {"scale": scale, "zero_point": int(round(zero_point)), "bits": nni_config["quant_bits"],
            "qmin": qmin, "qmax": qmax}


def _calibration(quantizer: Any, out_channels: dict[str, int], algorithm: str,
                 label: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The integer grid of every quantized layer, from NNI's own get_calibration_config()."""
    calib: dict[str, dict[str, dict[str, Any]]] = {}
    for name, targets in quantizer.get_calibration_config().items():
        entry = calib.setdefault(name, {})
        if "weight" in targets:
            entry["weight"] = _weight_grid(targets["weight"], out_channels[name], algorithm)
        for kind, target_name in (("input", "_input_0"), ("output", "_output_0")):
            if target_name in targets:
                entry[kind] = _activation_grid(targets[target_name], name, target_name, label)
    return calib


def check_calibration(calibration: dict[str, dict[str, dict[str, Any]]], weights: dict[str, torch.Tensor],
                      label: str) -> float:
    """Raise QuantizationError on NaN/inf/non-positive scales or weights off their grid; return the
    largest distance of weight/scale from an integer (0 up to float rounding)."""
    worst = 0.0
    for name, targets in calibration.items():
        for kind in ("input", "output"):
            a = targets.get(kind)
            if a is not None and not (math.isfinite(a["scale"]) and a["scale"] > 0):
                raise QuantizationError(f"{label}: {name} got {kind} scale {a['scale']} from NNI")
        w = targets.get("weight")
        if w is None:
            continue
        if not (torch.isfinite(w["scale"]).all() and (w["scale"] > 0).all()):
            raise QuantizationError(f"{label}: layer {name} got non-finite or zero weight scales from NNI")
        weight = weights[name]
        if not torch.isfinite(weight).all():
            raise QuantizationError(f"{label}: layer {name} has NaN/inf weights after quantization")
        q = weight / w["scale"].view(-1, *([1] * (weight.dim() - 1)))
        if q.abs().max() > w["qmax"] + 0.01:
            raise QuantizationError(f"{label}: layer {name} weights exceed the {w['bits']}-bit range of their scale")
        worst = max(worst, float((q - q.round()).abs().max()))
    if worst > 1e-2:
        raise QuantizationError(f"{label}: simulated weights are off their integer grid by {worst:.3g}")
    return worst


def dequantized_model(sim_model: nn.Module, template: nn.Module) -> nn.Module:
    """A plain float copy of `template` (same architecture as `sim_model` before wrapping) holding the
    simulated model's state: fake-quantized weights, fine-tuned BatchNorm statistics and biases."""
    state = {k: v for k, v in sim_model.state_dict().items() if "_nni_wrapper" not in k}
    state.update({f"{name}.weight": w for name, w in simulated_weights(sim_model).items()})
    plain = copy.deepcopy(template).cpu()
    plain.load_state_dict({k: v.detach().cpu() for k, v in state.items()})
    return plain.eval()


def assert_finite_outputs(model: nn.Module, x: torch.Tensor, label: str) -> None:
    with eval_mode(model), torch.no_grad():
        out = fp32_exact(model)(x)
    if not torch.isfinite(out).all():
        raise QuantizationError(f"{label}: the quantized model outputs NaN/inf; refusing to report it")


# ---------------------------------------------------------------------------------------- the API


def quantize_model(
    model: nn.Module,
    algorithm: str,
    bits: int,
    *,
    train_loader: Batches,
    val_loader: Batches | None = None,
    finetune_cfg: TrainConfig,
    device: str | torch.device = "cpu",
    example_input: torch.Tensor,
    calibration_batches: int = DEFAULT_CALIBRATION_BATCHES,
    on_epoch_end: EpochCallback | None = None,
    max_weight_bits: int = 8,
    teacher: nn.Module | None = None,
    stage_bits: Sequence[int] | None = None,
    stage_of: StageOf | None = None,
) -> tuple[nn.Module, dict[str, dict[str, dict[str, Any]]], dict[str, Any]]:
    """Quantize a copy of `model` with NNI; `model` itself is left untouched.

    Returns `(sim_model, calibration, info)`:
    - `sim_model`: the NNI-wrapped, fake-quantized model (eval mode), for accuracy and export;
    - `calibration`: `{module: {"weight" | "input" | "output": {...}}}` with the scales and zero points
      NNI found, for the targets `config_list` chose. A weight entry holds one scale per output channel
      of the grid the simulated weight lies on (zero point 0, integers in `qmin..qmax`, `bits`); an
      activation entry one scale and one zero point in NNI's integer range `qmin..qmax`;
    - `info`: what was done (algorithm, bits, layers at 8 bits, fine-tune history, seconds).

    `max_weight_bits` caps every weight grid (the stem and classifier's 8 bits at `bits=4` included): 7 makes
    the grid one that saturating int8 kernels execute exactly (common/cpu.py).

    PTQ calibrates on `calibration_batches` training batches without training. QAT, LSQ and DoReFa
    fine-tune for `finetune_cfg.epochs` epochs through `nni.compression.TorchEvaluator`, distilling from
    `teacher` when `finetune_cfg.distill_weight` > 0 (common.train.fit mixes it into NNI's loss). Raises
    `QuantizationError` (or `NonFiniteLossError` from training) instead of returning NaN.
    """
    from nni.compression import TorchEvaluator

    validate(algorithm, bits)
    dev = torch.device(device)
    label = f"{algorithm} {min(bits, max_weight_bits)}-bit"
    start = time.perf_counter()
    sim = copy.deepcopy(model).to(dev).eval()
    configs = config_list(sim, algorithm, bits, max_weight_bits, stage_bits, stage_of)
    calib_batches = take_inputs(train_loader, calibration_batches)
    cfg = finetune_cfg

    def training_step(batch: tuple[torch.Tensor, torch.Tensor], m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        logits = m(batch[0])
        return _loss_fn(cfg)(logits, batch[1]), logits

    history: dict[str, list[float]] = {}
    if QUANTIZERS[algorithm].trains:
        train_fn = _training_func(cfg, train_loader, dev, label, val_loader, on_epoch_end, history, teacher)
    else:
        train_fn = _calibration_func(calib_batches, dev)
    # PTQ's post-processing calls evaluate(); calibration already happened in train_fn.
    evaluator = TorchEvaluator(train_fn, _nni_optimizer(sim, cfg), training_step, evaluating_func=lambda m: None)

    quantizer = _run_quantizer(algorithm, sim, configs, evaluator, calib_batches, cfg.epochs, dev)
    sim.eval()

    out_channels = {name: m.weight.shape[0] for name, m in sim.named_modules() if hasattr(m, "_nni_wrapper")
                    and isinstance(getattr(m, "weight", None), torch.Tensor)}
    calibration = _calibration(quantizer, out_channels, algorithm, label)
    weights = simulated_weights(sim)
    grid_error = check_calibration(calibration, weights, label)
    assert_finite_outputs(sim, example_input.to(dev), label)
    widest = min(8, max_weight_bits)
    eight_bit = sorted(n for n, c in calibration.items() if "weight" in c and c["weight"]["bits"] == widest)
    info = {
        "algorithm": algorithm,
        "nni_quantizer": type(quantizer).__name__,
        "weight_bits": min(bits, max_weight_bits),
        "activation_bits": ACTIVATION_BITS,
        "quantized_layers": sum("weight" in c for c in calibration.values()),
        "quantized_outputs": sum("output" in c for c in calibration.values()),
        "layers_kept_at_8_bits": eight_bit if bits < 8 or stage_bits is not None else [],
        "finetune_epochs": cfg.epochs if QUANTIZERS[algorithm].trains else 0,
        "calibration_batches": len(calib_batches),
        "weight_grid_error": grid_error,
        "history": history,
        "seconds": time.perf_counter() - start,
    }
    return sim, calibration, info


def _run_quantizer(algorithm: str, sim: nn.Module, configs: list[dict[str, Any]], evaluator: Any,
                   calib_batches: list[torch.Tensor], epochs: int, dev: torch.device) -> Any:
    """NNI's quantizer of `algorithm` wrapped around `sim` and run as its record says: a calibrating quantizer
    calibrates, a training one trains `epochs` (with none, it still needs forwards to set its scales)."""
    q = QUANTIZERS[algorithm]
    with quiet_nni():
        quantizer = q.nni_class()(sim, configs, evaluator)
        for hook in q.before_compress:
            hook(quantizer, sim, calib_batches, dev)
        if not q.trains:
            quantizer.compress(max_steps=len(calib_batches), max_epochs=None)
        elif epochs > 0:
            quantizer.compress(max_steps=None, max_epochs=epochs)
        else:
            _prime_without_training(quantizer, sim, calib_batches, dev, q.tracks_in_train_mode)
        for hook in q.after_compress:
            hook(quantizer, sim, calib_batches, dev)
    return quantizer


def _prime_without_training(quantizer: Any, model: nn.Module, batches: list[torch.Tensor],
                            device: torch.device, in_train_mode: bool) -> None:
    """Forwards that set the scales of a training quantizer given zero epochs (DoReFa at its first forward)."""
    if in_train_mode:
        # QAT only tracks ranges in training mode; BN must stay in eval so its statistics are not touched.
        with torch.no_grad():
            model.train()
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
            for x in batches:
                model(x.to(device))
        model.eval()
        return
    with eval_mode(model), torch.no_grad():
        for x in batches:
            model(x.to(device))
    if hasattr(quantizer, "is_init"):
        quantizer.is_init = True


def _stop_ptq_tracking(quantizer: Any, model: nn.Module, batches: list[torch.Tensor], device: torch.device) -> None:
    """PTQ keeps tracking min/max in every later forward (its scales are already computed): a third of the
    simulated model's inference time, and it would make NNI's reported ranges drift."""
    _drop_track_func(quantizer, type(quantizer).track_min_max_val)


# ------------------------------------------------------------------------------------------ the registry

Hook = Callable[[Any, nn.Module, list[torch.Tensor], torch.device], None]  # (NNI quantizer, model, batches, device)


def _symmetric_per_channel(bits: int) -> dict[str, Any]:
    return {"quant_dtype": f"int{bits}", "quant_scheme": "symmetric", "granularity": "out_channel"}


def _affine_unsigned(signed: bool) -> dict[str, Any]:
    return {"quant_dtype": f"uint{ACTIVATION_BITS}", "quant_scheme": "affine"}


@dataclass(frozen=True)
class Quantizer:
    """One NNI quantization algorithm: how it sets weights and activations, whether it trains, what runs before
    and after NNI's `compress`, and the weight widths it offers. Adding one is adding a record to QUANTIZERS."""

    name: str  # `--algorithm`
    nni_class: Callable[[], type]  # NNI's quantizer class (imported on first use: NNI's import is slow)
    trains: bool  # True: fine-tunes through TorchEvaluator; False: calibrates on training batches
    weight: Callable[[int], dict[str, Any]]  # NNI's setting of a `bits`-wide weight
    activation: Callable[[bool], dict[str, Any]]  # NNI's setting of an 8-bit activation (`signed`: can be < 0)
    before_compress: tuple[Hook, ...] = ()
    after_compress: tuple[Hook, ...] = ()
    layer_inputs_only: bool = False  # activations at every layer input instead of `activation_points`
    weight_grid_factor: float = 1.0  # the integer grid's scale is this times NNI's weight scale
    tracks_in_train_mode: bool = False  # with zero epochs, its priming forwards run in training mode
    bits: tuple[int, ...] = BITS


def _nni(name: str) -> Callable[[], type]:
    def cls() -> type:
        import nni.compression.quantization as q

        return getattr(q, name)

    return cls


QUANTIZERS: dict[str, Quantizer] = {q.name: q for q in (
    Quantizer("ptq", _nni("PtqQuantizer"), trains=False, weight=_symmetric_per_channel, activation=_affine_unsigned,
              after_compress=(_stop_ptq_tracking,)),
    Quantizer("qat", _nni("QATQuantizer"), trains=True, weight=_symmetric_per_channel, activation=_affine_unsigned,
              tracks_in_train_mode=True),
    # LSQ only learns a scale (zero point fixed at 0): unsigned activations after a ReLU, signed elsewhere; its
    # step sizes start from min-max (the PTQ model), not NNI's 0.01.
    Quantizer("lsq", _nni("LsqQuantizer"), trains=True, weight=_symmetric_per_channel,
              activation=lambda signed: {"quant_dtype": f"{'' if signed else 'u'}int{ACTIVATION_BITS}",
                                         "quant_scheme": "symmetric"},
              before_compress=(_init_lsq_scales,)),
    # DoReFa rejects granularity and wants affine weights: its transform 2*Q(tanh(w)/2max+1/2)-1 lands on a
    # zero-centred per-tensor grid anyway (per channel once BN is folded); NNI's DoReFa maps w = 2 * (q - zp) * s - 1
    # with zp = qmin, s = 1 / (qmax - qmin), qmin = -qmax, so w = 2 * s * q: the grid's scale is 2 * s. Its output
    # quantizer is a clamp(0, 1) activation for nets trained with it from scratch; on a pretrained net it keeps
    # its input quantizer at every conv/linear instead (residual identity branches stay float in the simulation,
    # 8-bit once deployed: the sim/int8 agreement shows what that costs), frozen after fine-tuning.
    Quantizer("dorefa", safe_dorefa_quantizer_class, trains=True,
              weight=lambda bits: {"quant_dtype": f"int{bits}", "quant_scheme": "affine"},
              activation=_affine_unsigned, after_compress=(_freeze_dorefa_inputs,), layer_inputs_only=True,
              weight_grid_factor=2.0),
)}
ALGORITHMS: tuple[str, ...] = tuple(QUANTIZERS)
