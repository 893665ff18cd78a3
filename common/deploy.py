"""Real int8 deployment on CPU: NNI's simulated model → ONNX with Q/DQ nodes carrying NNI's scales → ONNX
Runtime integer kernels.

NNI's quantizers only simulate quantization and NNI's one real backend is TensorRT on a GPU, so CPU users
get nothing from NNI alone. The route here (measured fastest on this CPU; graph shape decides it):

1. fold every BatchNorm into the conv before it, in torch, on the *simulated* weights;
2. export fp32 with `torch.onnx.export(dynamo=True)` and run ORT's `quant_pre_process`: a flat
   Conv → Relu → Add graph with nothing between the convs;
3. `quantize_static` to QDQ, with `TensorQuantOverrides` pinning every conv/linear input and weight to the
   scale and zero point NNI found. Weight overrides are NNI's per-channel scales times the folded BN
   factor, so the int8 weights are NNI's integers exactly. Tensors NNI did not quantize (residual-add
   operands, pooling) get ORT's min-max calibration; `info` counts which came from where;
4. ORT's CPU provider fuses DQ → Conv → Q into QLinearConv (Add → QLinearAdd, Gemm → QGemm); we check
   the optimized graph it saved, so a model that silently ran float convs between Q/DQ pairs is caught.

4-bit weights are stored in int8 (values in -7..7): no CPU runtime here executes 4-bit convolutions, so a
4-bit model's latency is the int8 runtime's. `packed_weight_bytes` is what a 4-bit format would store.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import io
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.nni_compat import quiet_loggers

# Ops that compute in integers after ORT's CPU graph optimizations (QDQ node units fused by ORT).
INTEGER_OPS = frozenset({
    "QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QGemm", "QLinearAdd", "QLinearMul",
    "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "NhwcQLinearConv", "QLinearReduceMean",
})
# Float ops that do the heavy lifting; none may survive in an int8 model's optimized graph.
FLOAT_COMPUTE_OPS = frozenset({"Conv", "FusedConv", "NchwcConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"})
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


class DeploymentError(RuntimeError):
    """The int8 model could not be built or does not run on integer kernels."""


# ------------------------------------------------------------------------------------------ torch side


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, dict[str, torch.Tensor], dict[str, str]]:
    """A CPU eval copy of `model` with every BatchNorm2d folded into the Conv2d feeding it (found by
    tracing with torch.fx). Also returns, per conv, the per-output-channel factor gamma / sqrt(var + eps)
    its weight was multiplied by, and which conv each BatchNorm went into."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).cpu().eval()
    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    factors: dict[str, torch.Tensor] = {}
    folded_into: dict[str, str] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0]
        if not (isinstance(src, torch.fx.Node) and src.op == "call_module"
                and isinstance(modules.get(src.target), nn.Conv2d) and len(src.users) == 1):
            continue
        conv, bn = modules[src.target], modules[node.target]
        gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)
        factors[src.target] = (gamma / torch.sqrt(bn.running_var + bn.eps)).float()
        folded_into[node.target] = src.target
        model.set_submodule(src.target, fuse_conv_bn_eval(conv, bn))
        model.set_submodule(node.target, nn.Identity())
    return model, factors, folded_into


def export_onnx(model: nn.Module, path: str | os.PathLike, example_input: torch.Tensor) -> Path:
    """fp32 ONNX of `model` (dynamo exporter, opset 18+, dynamic batch) as one self-contained file."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = example_input.detach().float().cpu()
    if x.shape[0] < 2:  # a batch of 1 would be specialised into the graph
        x = x.repeat(2, *([1] * (x.dim() - 1)))
    batch = torch.export.Dim("batch", min=1)
    # The exporter prints progress to stdout and its optimizer logs each pass at INFO (NNI trials log the
    # root logger at INFO): trial logs only need to hear about failures.
    exporter_loggers = dict.fromkeys(("onnxscript", "onnx_ir", "torch.onnx"), logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()), quiet_loggers(exporter_loggers), torch.no_grad():
        program = torch.onnx.export(model.cpu().eval(), (x,), dynamo=True, dynamic_shapes=({0: batch},),
                                    verbose=False)
    onnx.save_model(program.model_proto, path, save_as_external_data=False)
    return path


# ------------------------------------------------------------------------------------------- ORT side


def _session_options(threads: int | None, optimized_path: str | os.PathLike | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    so.intra_op_num_threads = 0 if threads is None else int(threads)  # 0: ORT's default, all physical cores
    so.log_severity_level = 3  # ORT warns when saving an NCHWc-optimized graph; that is what we inspect
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return so


class OrtModule(nn.Module):
    """An ONNX Runtime CPU session as an nn.Module: takes a float NCHW torch tensor (any device), returns
    the logits as a torch tensor on the input's device. A module so that common.train.evaluate/predict
    and common.metrics.measure_latency take it like the torch models they are compared with.

    `threads` fixes ORT's intra-op thread count; give it the count measure_latency pins torch to.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = 1, fused: bool = True) -> None:
        super().__init__()
        import onnxruntime as ort

        self.path = str(path)
        self.threads = threads
        options = _session_options(threads)
        if not fused:  # run the graph as written: no fusion of Q/DQ pairs into integer kernels
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(out).to(x.device)

    def extra_repr(self) -> str:
        return f"{Path(self.path).name}, threads={self.threads}"


def optimized_graph_ops(path: str | os.PathLike, optimized_path: str | os.PathLike) -> Counter:
    """Op types of the graph ORT's CPU provider actually runs (saved via optimized_model_filepath)."""
    import onnx
    import onnxruntime as ort

    ort.InferenceSession(str(path), _session_options(1, optimized_path), providers=["CPUExecutionProvider"])
    return Counter(node.op_type for node in onnx.load(str(optimized_path)).graph.node)


def integer_kernel_report(path: str | os.PathLike, optimized_path: str | os.PathLike) -> dict[str, Any]:
    """Which kernels ORT runs for the model at `path`: integer kernels must do all conv/matmul work."""
    ops = optimized_graph_ops(path, optimized_path)
    integer = {k: v for k, v in ops.items() if k in INTEGER_OPS}
    float_compute = {k: v for k, v in ops.items() if k in FLOAT_COMPUTE_OPS}
    return {"integer_ops": integer, "float_compute_ops": float_compute,
            "integer_kernels": bool(integer) and not float_compute, "optimized_ops": dict(ops)}


class _Batches:
    """ORT CalibrationDataReader over torch batches (inputs only)."""

    def __init__(self, input_name: str, batches: Iterable[torch.Tensor]) -> None:
        self.input_name = input_name
        self._data = [b.detach().to("cpu", torch.float32).numpy() for b in batches]
        self._iter = iter(self._data)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._iter, None)
        return None if x is None else {self.input_name: x}

    def rewind(self) -> None:
        self._iter = iter(self._data)


def _initializers(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def _weight_nodes(model, folded_weights: Mapping[str, torch.Tensor]) -> dict[str, tuple[Any, bool]]:
    """For each torch layer, the ONNX node computing it and whether its weight is stored transposed.

    Matched by initializer name (the dynamo exporter keeps `layer.weight`), else by value, so renamed or
    transposed constants (Linear as MatMul) are still found.
    """
    inits = _initializers(model)
    nodes = [n for n in model.graph.node if n.op_type in WEIGHT_OPS and len(n.input) > 1 and n.input[1] in inits]
    found: dict[str, tuple[Any, bool]] = {}
    for name, w in folded_weights.items():
        target = w.detach().cpu().numpy()
        for node in nodes:
            arr = inits[node.input[1]]
            if node.input[1] == f"{name}.weight" and arr.shape == target.shape:
                found[name] = (node, False)
                break
        else:
            for node in nodes:
                arr = inits[node.input[1]]
                if arr.shape == target.shape and np.allclose(arr, target, rtol=1e-5, atol=1e-7):
                    found[name] = (node, False)
                    break
                if arr.ndim == 2 and arr.T.shape == target.shape and np.allclose(arr.T, target, rtol=1e-5, atol=1e-7):
                    found[name] = (node, True)
                    break
    return found


def _weight_axis(node, transposed: bool) -> int:
    """Axis of the output channels in the stored weight of `node`."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 0 if transposed else 1  # MatMul: x @ W with W stored (in, out)


def _module_outputs(model) -> dict[str, str]:
    """The output tensor of each torch module, from the `pkg.torch.onnx.name_scopes` metadata the dynamo
    exporter attaches to every node (`['', 'layer1', 'layer1.0', 'layer1.0.act1', 'relu_1']`): the last
    node of a module's scope produces its output."""
    out: dict[str, str] = {}
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = meta.get("pkg.torch.onnx.name_scopes")
        if not scopes or not node.output:
            continue
        try:
            names = ast.literal_eval(scopes)
        except (ValueError, SyntaxError):
            continue
        if len(names) >= 2 and names[-2]:
            out[names[-2]] = node.output[0]
    return out


def _activation_override(spec: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    # NNI's integer range qmin..qmax shifted onto uint8: same scale, zero point - qmin, so the same grid.
    if spec["qmax"] - spec["qmin"] > 255:
        raise DeploymentError(f"{where}: range {spec['qmin']}..{spec['qmax']} does not fit uint8")
    return [{"scale": np.array(spec["scale"], dtype=np.float32),
             "zero_point": np.array(spec["zero_point"] - spec["qmin"], dtype=np.uint8)}]


def tensor_overrides(model, calibration: Mapping[str, Mapping[str, Mapping[str, Any]]],
                     folded_weights: Mapping[str, torch.Tensor], factors: Mapping[str, torch.Tensor],
                     folded_into: Mapping[str, str]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """ORT `TensorQuantOverrides` carrying NNI's scales for the pre-processed fp32 ONNX `model`, and
    which NNI entries could not be mapped (those tensors fall back to ORT's calibration).

    Weights: per output channel, NNI's grid scale times |BN factor|, zero point 0 (NNI's integers).
    Layer inputs: the input of the ONNX node computing the layer. Outputs: a folded BatchNorm's output
    is its conv node's output; any other module's output is found by the exporter's scope metadata.
    """
    overrides: dict[str, list[dict[str, Any]]] = {}
    nodes = _weight_nodes(model, folded_weights)
    module_outputs = _module_outputs(model)
    unmapped, conflicts = [], []

    def pin(tensor: str, override: list[dict[str, Any]], name: str) -> None:
        previous = overrides.get(tensor)
        if previous is None:
            overrides[tensor] = override
        elif not (math.isclose(float(previous[0]["scale"]), float(override[0]["scale"]), rel_tol=1e-4)
                  and int(previous[0]["zero_point"]) == int(override[0]["zero_point"])):
            # One tensor read by two NNI layers (a block's conv1 and its downsample conv): ONNX gives it
            # one quantization. Identical for PTQ/QAT/DoReFa (same data); LSQ may learn two step sizes.
            conflicts.append(name)

    for name, spec in calibration.items():
        if "weight" in spec:
            if name not in nodes:
                unmapped.append(f"{name}.weight")
                continue
            node, transposed = nodes[name]
            factor = factors.get(name)
            scale = spec["weight"]["scale"].double() * (factor.abs().double() if factor is not None else 1.0)
            # A channel whose BN weight is 0 folds to all-zero weights: any positive scale stores them exactly.
            scale = torch.where(scale > 0, scale, spec["weight"]["scale"].double())
            axis = _weight_axis(node, transposed)
            overrides[node.input[1]] = [{"axis": axis, "scale": np.float32(s), "zero_point": np.int8(0)}
                                        for s in scale.tolist()]
            if "input" in spec:
                pin(node.input[0], _activation_override(spec["input"], f"{name} input"), name)
        if "output" in spec:
            if name in folded_into and folded_into[name] in nodes:
                tensor = nodes[folded_into[name]][0].output[0]
            elif name in module_outputs:
                tensor = module_outputs[name]
            else:
                unmapped.append(f"{name}.output")
                continue
            pin(tensor, _activation_override(spec["output"], f"{name} output"), name)
    stats = {"nni_entries_unmapped": unmapped, "shared_input_conflicts": conflicts}
    return overrides, stats


def _quantized_tensor_sources(qdq_model, overrides: Mapping[str, Any]) -> dict[str, int]:
    """Count the quantized activations and weights of a QDQ model by where their scale came from."""
    inits = {i.name for i in qdq_model.graph.initializer}
    activations = {n.input[0] for n in qdq_model.graph.node if n.op_type == "QuantizeLinear"}
    weights = {n.input[0] for n in qdq_model.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    # Weight initializers are renamed `<name>_quantized` by ORT.
    weight_sources = [w[: -len("_quantized")] if w.endswith("_quantized") else w for w in weights]
    nni_weights = sum(1 for w in weight_sources if w in overrides)
    int32 = sum(1 for n in qdq_model.graph.initializer if n.name in weights and n.data_type == 6)  # INT32 biases
    nni_acts = sum(1 for a in activations if a in overrides)
    return {
        "activations_from_nni": nni_acts,
        "activations_from_ort": len(activations) - nni_acts,
        "weights_from_nni": nni_weights,
        "weights_from_ort": len(weights) - nni_weights - int32,
        "biases_int32": int32,
    }


def preprocess(fp32_path: str | os.PathLike, pre_path: str | os.PathLike) -> Path:
    """ORT's `quant_pre_process` (shape inference + graph cleanup): the graph quantize_static expects."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    quant_pre_process(str(fp32_path), str(pre_path))
    return Path(pre_path)


def quantize_onnx(pre_path: str | os.PathLike, int8_path: str | os.PathLike,
                  calibration_batches: Iterable[torch.Tensor],
                  overrides: Mapping[str, Any] | None = None) -> dict[str, int]:
    """QDQ int8 model from a pre-processed fp32 ONNX (`preprocess`): uint8 activations, int8 per-channel
    weights, ORT min-max calibration for every tensor `overrides` does not pin. Returns where the
    quantized tensors' scales came from."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    input_name = onnx.load(str(pre_path)).graph.input[0].name
    quantize_static(
        str(pre_path), str(int8_path), _Batches(input_name, calibration_batches),
        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
        extra_options={
            "TensorQuantOverrides": dict(overrides or {}),
            # Keep NNI's weight scales even when a bias scale (input scale x weight scale) is tiny.
            "QDQDisableWeightAdjustForInt32Bias": True,
            # The classifier's output stays float: NNI never quantized the logits, and 8-bit logits
            # would turn near-ties into wrong argmaxes.
            "OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"],
        },
    )
    return _quantized_tensor_sources(onnx.load(str(int8_path)), overrides or {})


# ---------------------------------------------------------------------------------------- deployment


def packed_weight_bytes(calibration: Mapping[str, Mapping[str, Mapping[str, Any]]],
                        weights: Mapping[str, torch.Tensor]) -> int:
    """Bytes of the quantized model with each layer's weights packed at its own bit width (two 4-bit
    values per byte), plus per output channel an fp32 scale and an int32 bias, plus per quantized
    activation an fp32 scale and a zero point byte. What a 4-bit weight format would store; no runtime here runs it."""
    total = 0
    for name, spec in calibration.items():
        total += 5 * sum(kind in spec for kind in ("input", "output"))
        if "weight" in spec:
            w = weights[name]
            total += math.ceil(w.numel() * spec["weight"]["bits"] / 8) + w.shape[0] * (4 + 4)
    return total


@dataclass
class Deployment:
    """An int8 ONNX model built from NNI's simulated model, and how it was built."""

    int8_path: Path
    optimized_path: Path
    info: dict[str, Any] = field(default_factory=dict)

    def session(self, threads: int | None = 1) -> OrtModule:
        return OrtModule(self.int8_path, threads)


def export_fp32(model: nn.Module, path: str | os.PathLike, example_input: torch.Tensor) -> Path:
    """The float model as ORT would run it without quantization: BN folded, dynamo export."""
    folded, _, _ = fold_batchnorm(model)
    return export_onnx(folded, path, example_input)


def deploy_int8(dequantized: nn.Module, calibration: Mapping[str, Mapping[str, Mapping[str, Any]]],
                workdir: str | os.PathLike, example_input: torch.Tensor,
                calibration_batches: Iterable[torch.Tensor], *, name: str = "model",
                require_integer_kernels: bool = True) -> Deployment:
    """Build `<workdir>/<name>.int8.onnx` from NNI's result and check ORT runs it on integer kernels.

    `dequantized` is the plain float copy of the simulated model (fake-quantized weights, see
    common.quantization.dequantized_model); `calibration` its scales and zero points. Raises
    DeploymentError if layers cannot be mapped or float convs remain in ORT's optimized graph.
    """
    workdir = Path(workdir)
    folded, factors, folded_into = fold_batchnorm(dequantized)
    folded_weights = {n: m.weight.detach() for n, m in folded.named_modules()
                      if n in calibration and "weight" in calibration[n]}
    fp32_path = export_onnx(folded, workdir / f"{name}.dequantized.fp32.onnx", example_input)
    import onnx

    pre_path = preprocess(fp32_path, workdir / f"{name}.dequantized.pre.onnx")
    overrides, mapping = tensor_overrides(onnx.load(str(pre_path)), calibration, folded_weights, factors, folded_into)
    missing = [n for n in mapping["nni_entries_unmapped"] if n.endswith(".weight")]
    if missing:
        # Activations may fall back to ORT's calibration; weights must be NNI's or the model is not NNI's.
        raise DeploymentError(f"could not find these weights in the exported graph: {missing}")
    int8_path = workdir / f"{name}.int8.onnx"
    sources = quantize_onnx(pre_path, int8_path, calibration_batches, overrides)
    optimized_path = workdir / f"{name}.int8.optimized.onnx"
    kernels = integer_kernel_report(int8_path, optimized_path)
    if require_integer_kernels and not kernels["integer_kernels"]:
        raise DeploymentError(
            f"ONNX Runtime does not run {int8_path.name} on integer kernels: integer ops {kernels['integer_ops']}, "
            f"float conv/matmul ops {kernels['float_compute_ops']}")
    info = {**mapping, **sources, **{k: v for k, v in kernels.items() if k != "optimized_ops"},
            "int8_bytes": os.path.getsize(int8_path), "dequantized_fp32_bytes": os.path.getsize(fp32_path)}
    return Deployment(int8_path=int8_path, optimized_path=optimized_path, info=info)


# ------------------------------------------------------------------------------------ OpenVINO side

RUNTIMES: tuple[str, ...] = ("ort", "openvino")
RUNTIME_NAMES = {"ort": "onnxruntime", "openvino": "openvino"}
# Layer types of OpenVINO's CPU plugin that do the heavy lifting; int8 means runtimePrecision u8/i8.
OPENVINO_COMPUTE_LAYERS = frozenset({"Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution"})


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVinoModule(nn.Module):
    """The same QDQ ONNX file compiled by OpenVINO's CPU plugin, as an nn.Module like OrtModule.

    OpenVINO turns each Q/DQ pair into a FakeQuantize with the same scale and zero point and runs the
    convolutions between them in int8. Float parts are pinned to f32 (on bf16/AMX CPUs it would otherwise
    pick bf16 and no longer compute NNI's grid). One compiled model per input shape: static shapes are
    what OpenVINO's CPU plugin runs fastest.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = 1) -> None:
        super().__init__()
        import openvino as ov

        self.path = str(path)
        self.threads = threads
        self._core = ov.Core()
        self._model = self._core.read_model(self.path)
        self._compiled: dict[tuple[int, ...], Any] = {}

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1}
        if self.threads:
            cfg["INFERENCE_NUM_THREADS"] = int(self.threads)
        return cfg

    def compiled(self, shape: tuple[int, ...]) -> Any:
        if shape not in self._compiled:
            model = self._model.clone()
            model.reshape({model.inputs[0].get_any_name(): list(shape)})
            self._compiled[shape] = self._core.compile_model(model, "CPU", self.config())
        return self._compiled[shape]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        request = self.compiled(tuple(array.shape)).create_infer_request()
        out = request.infer({0: array})[0]
        return torch.from_numpy(np.array(out, copy=True)).to(x.device)

    def extra_repr(self) -> str:
        return f"{Path(self.path).name}, threads={self.threads}"


def openvino_kernel_report(module: OpenVinoModule, shape: tuple[int, ...]) -> dict[str, Any]:
    """Which precision OpenVINO's CPU plugin runs each conv/matmul layer of the compiled model in."""
    layers: Counter = Counter()
    for op in module.compiled(shape).get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if kind in OPENVINO_COMPUTE_LAYERS:
            precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
            layers[f"{kind}:{precision}"] += 1
    integer = {k: v for k, v in layers.items() if k.split(":")[1] in ("u8", "i8")}
    floats = {k: v for k, v in layers.items() if k not in integer}
    return {"integer_ops": integer, "float_compute_ops": floats, "integer_kernels": bool(integer) and not floats}


def runtime_module(runtime: str, path: str | os.PathLike, threads: int | None = 1) -> nn.Module:
    """The int8 model at `path` as an nn.Module on `runtime` (`ort` or `openvino`)."""
    if runtime == "ort":
        return OrtModule(path, threads)
    if runtime == "openvino":
        if not openvino_available():
            raise DeploymentError("--runtime openvino needs the openvino package: pip install openvino")
        return OpenVinoModule(path, threads)
    raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")


def qdq_reference(path: str | os.PathLike, threads: int | None = 1) -> OrtModule:
    """The QDQ model executed as its ONNX definition says, without ORT's fusions into integer kernels:
    DequantizeLinear → float Conv → QuantizeLinear. What the integer grid means, computed in float; a
    runtime whose integer kernels saturate disagrees with it."""
    return OrtModule(path, threads, fused=False)
