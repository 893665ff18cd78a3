"""What is measured about a model, and the one spelling of it as NNI result keys (and back).

Every trial reports the model it produced (the *headline*: unprefixed keys) and the models it compares
with (`dense_*`, `pruned_*`, `sim_*`, `int8_ort_*`, ...), each as a `Measurement`. `result_keys` turns
measurements into flat keys, `comparison_keys` the headline against a reference into ratios, and
`read` a result back into a Measurement (the report, the NAS export). No other module spells these keys.

Two numbers are only comparable when they mean the same thing, so each says what it is:
- size: `size_mb` is the bytes / 1e6 of `size_kind` (SIZE_KINDS), the artifact the trial would ship;
- latency: `latency_ms_b{batch}` (median ms per batch) was measured with `latency_runtime` on
  `latency_device` with `latency_threads` CPU threads; the CPU is named by the result's `cpu_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LATENCY_BATCHES: tuple[int, ...] = (1, 64)
SPLITS: tuple[str, ...] = ("val", "test")

# What a size counts. A ratio of two sizes is reported only between artifacts one would ship.
SIZE_KINDS: dict[str, str] = {
    "state_dict": "fp32 state dict (torch.save)",
    "fp32_onnx": "fp32 ONNX file",
    "int8_onnx": "int8 QDQ ONNX file",
    "packed": "weights packed at their bit width (what a sub-8-bit format would store)",
}

# Keys of earlier releases -> their names now (the report reads results recorded with either).
RENAMED: dict[str, str] = {
    **{f"{m}_torch_fp32_ms_b{b}": f"{m}_latency_ms_b{b}" for m in ("dense", "arch", "pruned", "start")
       for b in LATENCY_BATCHES},
    **{f"{m}_ort_fp32_ms_b{b}": f"{m}_ort_latency_ms_b{b}" for m in ("dense", "arch", "pruned", "start")
       for b in LATENCY_BATCHES},
    **{f"int8{r}_ms_b{b}": f"int8{r}_latency_ms_b{b}" for r in ("", "_ort", "_openvino") for b in LATENCY_BATCHES},
    **{f"baseline_{k}": f"dense_{k}" for k in ("val_acc", "test_acc")},
    **{f"baseline_latency_ms_b{b}": f"dense_latency_ms_b{b}" for b in LATENCY_BATCHES},
    **{f"speedup_vs_dense_ort_fp32_b{b}": f"speedup_vs_dense_ort_b{b}" for b in LATENCY_BATCHES},
}
# Byte counts that became sizes in MB with a kind: old key -> (new prefix, kind).
RENAMED_BYTES: dict[str, tuple[str, str]] = {
    **{f"{m}_fp32_onnx_bytes": (f"{m}_ort", "fp32_onnx") for m in ("dense", "arch", "pruned", "start")},
    "int8_bytes": ("int8", "int8_onnx"),
    "packed_bytes": ("packed", "packed"),
}


# The costs a trial reports that a budget can cap (common/objective.py: `--max-<key>`), with what they are.
COST_KEYS: dict[str, str] = {
    **{f"latency_ms_b{b}": f"median latency (ms) of a batch of {b} (`latency_runtime` on `latency_device`)"
       for b in LATENCY_BATCHES},
    **{f"latency_ratio_b{b}": f"latency of a batch of {b} as a fraction of dense ResNet-18's (measured interleaved "
                              "in the same trial)" for b in LATENCY_BATCHES},
    "params": "parameter count",
    "params_ratio": "parameters as a fraction of ResNet-18's",
    "flops": "FLOPs of one image",
    "size_mb": "size (MB) of the artifact the trial ships (`size_kind`)",
    "size_ratio": "size as a fraction of ResNet-18's in the same format",
}


# What each key of a trial's final result means (docs/result-keys.md is generated from this and the tables above:
# python3 -m common.cli.docs --write). Keys of one row share a meaning; `<model>_` prefixes are the other models.
RESULT_KEYS: tuple[tuple[str, str], ...] = (
    ("default", "what the tuner maximises: validation accuracy, penalised over a budget if the config sets one"),
    ("accuracy, test_acc, val_acc", "top-1 of the compressed model on the test / validation split"),
    ("dense_test_acc, dense_val_acc, delta_test_acc", "the cached dense baseline, and the difference"),
    ("params, flops", "parameters, FLOPs of one input image (MACs = FLOPs / 2)"),
    ("size_mb, size_kind", "bytes / 1e6 of the artifact the trial ships, and what it is (a size kind below)"),
    ("params_ratio, flops_ratio, size_ratio", "compressed / dense (sizes in the same format: an int8 file against "
                                              "the dense fp32 ONNX file)"),
    ("latency_ms_b1, latency_ms_b64, speedup_b1, speedup_b64", "median ms per batch, measured interleaved with the "
     "dense model in the same process; the speed-up is against the dense model in eager torch, same device/threads"),
    ("latency_device, latency_runtime, latency_threads", "where the latency was measured: `cpu` or a CUDA device, "
     "the runtime (`torch fp32`, `onnxruntime int8`, `openvino int8`, ...), CPU threads (`--latency-threads`)"),
    ("latency_ratio_b1, latency_ratio_b64", "latency / dense latency (1 / speed-up), for budgets relative to dense"),
    ("latency_loadavg_1m, latency_contended", "the 1-minute load average right after timing, and whether other work "
                                              "competed for the cores (then trust ratios, not milliseconds)"),
    ("<model>_val_acc, <model>_test_acc, <model>_params, <model>_size_mb, <model>_latency_ms_b*, ...",
     "the same measurements of each other model in the trial: `dense`, `dense_ort` (its fp32 ONNX Runtime file), "
     "`pruned`, `arch`, `sim` (NNI's simulation), `int8_ort`, `int8_openvino`, `packed`"),
    ("within_budget, budget_factor, budget_<metric>", "whether the trial met the config's budgets, and by how much "
                                                      "it missed"),
    ("val_acc_before_finetune", "what fine-tuning recovered (gradual pruning: after the first round's cut)"),
    ("int8_scheme_used, portability_check_used, portable_avx2, agreement_val_avx2_ort, agreement_val_avx2_openvino",
     "the int8 weight grid, the AVX2 check that ran (`avx2`; `skipped`: asked for but impossible here, "
     "`portability_note` says why; `none`: not asked for), and whether the deployed file computes the same on an "
     "emulated AVX2-only CPU (null: not checked)"),
    ("cpu_model, cpu_isa", "the CPU the trial ran on and its int8-relevant instruction sets"),
    ("trial_seconds, seconds_<step>", "the trial's wall time from its process's start to its report, and the "
                                      "quantization steps' (`quantize`, `deploy`, `evaluate`, `portability`, "
                                      "`latency`)"),
    ("trial", "the kind of trial (`baseline`, `prune`, `quant`, `nas`, `pipeline`), declared by the script"),
    ("pruner, sparsity, stage_sparsity, stage_bits, profile, seed, dataset, ...", "the trial's own parameters, "
     "echoed as parsed (every default resolved)"),
)


@dataclass(frozen=True)
class Latency:
    """Median milliseconds per batch size, and where they were measured."""

    ms: Mapping[int, float]
    device: str  # "cpu" or a CUDA device, e.g. "cuda:0"
    runtime: str  # e.g. "torch fp32", "ONNX Runtime fp32", "OpenVINO int8"
    threads: int | None = None  # CPU threads (None: the runtime's default / a GPU)

    def same_setting(self, other: Latency) -> bool:
        return (self.device, self.threads) == (other.device, other.threads)


@dataclass(frozen=True)
class Measurement:
    """What was measured about one model; a field left None was not measured (and yields no key)."""

    val_acc: float | None = None
    test_acc: float | None = None
    params: int | None = None
    flops: int | None = None  # of one input image (MACs = FLOPs / 2)
    size_bytes: int | None = None
    size_kind: str | None = None  # a SIZE_KINDS key
    latency: Latency | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # stage-specific facts, emitted under the same prefix

    def __post_init__(self) -> None:
        if (self.size_bytes is None) != (self.size_kind is None):
            raise ValueError("a size needs its kind (and a kind its size)")
        if self.size_kind is not None and self.size_kind not in SIZE_KINDS:
            raise ValueError(f"unknown size kind {self.size_kind!r}; one of {', '.join(SIZE_KINDS)}")


def latency_key(batch: int, name: str = "") -> str:
    return f"{_prefix(name)}latency_ms_b{batch}"


def _prefix(name: str) -> str:
    return f"{name}_" if name else ""


def result_keys(m: Measurement, name: str = "") -> dict[str, Any]:
    """Flat result keys of `m`: unprefixed for the headline model (`name=""`), else `<name>_<key>`.

    The headline's test accuracy is also `accuracy`, the key NNI's web UI and the report rank by.
    """
    p = _prefix(name)
    keys: dict[str, Any] = {}
    for split in SPLITS:
        value = getattr(m, f"{split}_acc")
        if value is not None:
            keys[f"{p}{split}_acc"] = value
    if not name and m.test_acc is not None:
        keys["accuracy"] = m.test_acc
    for k in ("params", "flops"):
        if getattr(m, k) is not None:
            keys[p + k] = getattr(m, k)
    if m.size_bytes is not None:
        keys |= {f"{p}size_mb": m.size_bytes / 1e6, f"{p}size_kind": m.size_kind}
    if m.latency is not None:
        keys |= {latency_key(b, name): ms for b, ms in m.latency.ms.items()}
        keys |= {f"{p}latency_device": m.latency.device, f"{p}latency_runtime": m.latency.runtime,
                 f"{p}latency_threads": m.latency.threads}
    return keys | {p + k: v for k, v in m.extra.items()}


def comparison_keys(model: Measurement, ref: Measurement, ref_name: str = "dense",
                    size_ref: Measurement | None = None) -> dict[str, Any]:
    """The headline `model` against reference `ref` (measured in the same process).

    Against `dense`: `delta_test_acc`, `params_ratio`, `flops_ratio`, `size_ratio` (to `size_ref`, default
    `ref`: the same kind of artifact), `speedup_b*` (ref ms / model ms) and `latency_ratio_b*` (its inverse,
    what budgets cap). Against any other reference only `speedup_vs_<ref_name>_b*`.
    """
    keys: dict[str, Any] = {}
    if model.latency is not None and ref.latency is not None:
        if not model.latency.same_setting(ref.latency):
            raise ValueError(f"latencies measured on {model.latency} and {ref.latency} are not comparable")
        shared = [b for b in model.latency.ms if b in ref.latency.ms]
        speedup = {b: ref.latency.ms[b] / model.latency.ms[b] for b in shared}
        if ref_name != "dense":
            return {f"speedup_vs_{ref_name}_b{b}": s for b, s in speedup.items()}
        keys |= {f"speedup_b{b}": s for b, s in speedup.items()}
        keys |= {f"latency_ratio_b{b}": 1 / s for b, s in speedup.items()}
    elif ref_name != "dense":
        return {}
    if model.test_acc is not None and ref.test_acc is not None:
        keys["delta_test_acc"] = model.test_acc - ref.test_acc
    for k in ("params", "flops"):
        if getattr(model, k) is not None and getattr(ref, k):
            keys[f"{k}_ratio"] = getattr(model, k) / getattr(ref, k)
    size_ref = size_ref or ref
    if model.size_bytes is not None and size_ref.size_bytes:
        keys["size_ratio"] = model.size_bytes / size_ref.size_bytes
    return keys


def upgrade(result: Mapping[str, Any]) -> dict[str, Any]:
    """`result` with keys of earlier releases renamed (RENAMED, RENAMED_BYTES); current keys win."""
    out = {RENAMED.get(k, k): v for k, v in result.items()}
    for old, (prefix, kind) in RENAMED_BYTES.items():
        if old in result and f"{prefix}_size_mb" not in out:
            out[f"{prefix}_size_mb"], out[f"{prefix}_size_kind"] = result[old] / 1e6, kind
        out.pop(old, None)
    for k, v in result.items():  # a current key recorded beside its old spelling keeps its own value
        if k in out and k not in RENAMED:
            out[k] = v
    return out


def read(result: Mapping[str, Any], name: str = "") -> Measurement:
    """The Measurement of model `name` in a final result (headline for `""`); missing fields stay None."""
    r, p = upgrade(result), _prefix(name)
    ms = {b: r[latency_key(b, name)] for b in LATENCY_BATCHES if r.get(latency_key(b, name)) is not None}
    latency = Latency(ms, r.get(f"{p}latency_device", "?"), r.get(f"{p}latency_runtime", "?"),
                      r.get(f"{p}latency_threads")) if ms else None
    size_mb, kind = r.get(f"{p}size_mb"), r.get(f"{p}size_kind")
    if size_mb is not None and kind is None:  # recorded before sizes named their kind
        deployed = r.get("trial") in ("quant", "pipeline")
        kind = {"": "int8_onnx", "dense": "fp32_onnx"}.get(name, "state_dict") if deployed else "state_dict"
    return Measurement(
        val_acc=r.get(f"{p}val_acc"), test_acc=r.get(f"{p}test_acc"), params=r.get(f"{p}params"),
        flops=r.get(f"{p}flops"), size_bytes=None if size_mb is None else round(size_mb * 1e6),
        size_kind=None if size_mb is None else kind, latency=latency)


def read_comparison(result: Mapping[str, Any]) -> dict[str, float | None]:
    """The headline-vs-dense comparison of a result (`comparison_keys` read back; None where not reported)."""
    r = upgrade(result)
    names = ["delta_test_acc", "params_ratio", "flops_ratio", "size_ratio",
             *(f"{k}_b{b}" for k in ("speedup", "latency_ratio") for b in LATENCY_BATCHES)]
    return {k: r.get(k) for k in names}


def ranking(result: Mapping[str, Any], trial_id: str, metric: str = "default", mode: str = "maximize") -> tuple:
    """The one rule for "best trial", shared by the report and the NAS export (smallest ranks best): the metric,
    then the smaller network (ties are common: accuracy on a few thousand images is coarse), then the lower
    trial id, so that every reader picks the same trial."""
    sign = -1 if mode == "maximize" else 1
    return sign * float(result[metric]), result.get("params", 0), str(trial_id)
