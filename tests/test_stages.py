"""The shared quantize → deploy → measure stage, on tiny networks (the nnictl runs use ResNet-18)."""

import pytest
import torch

from common.cache import ArtifactCache
from common.context import StageContext
from common.cpu import cpu_info
from common.data import SYNTHETIC_CLASSES, load_splits, make_loaders
from common.deploy import DeploymentError
from common.metrics import LatencySetting
from common.models import build_model
from common.stages import _distinct, quantize_deploy_measure
from common.train import TrainConfig

TINY = {"blocks": [1], "widths": [8], "activation": "relu", "kernel_size": 3}
SMALL = {"blocks": [1, 1], "widths": [8, 16], "activation": "relu", "kernel_size": 3}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The stage's context as plain values: synthetic splits and their loaders, no trial session."""
    splits = load_splits("synthetic", tmp_path_factory.mktemp("stages-data"), train_limit=512, eval_limit=256, seed=0)
    recipe = TrainConfig(epochs=1, lr=0.02, schedule="cosine", warmup_fraction=0.0, print_freq=100)
    return StageContext(loaders=make_loaders(splits, 32, seed=0),
                        labels={"val": splits.val_labels, "test": splits.test_labels}, device=torch.device("cpu"),
                        cache=ArtifactCache(tmp_path_factory.mktemp("stages-cache")),
                        data_key={"data": splits.fingerprint}, num_classes=splits.num_classes,
                        image_shape=tuple(splits.train_images.shape[1:]), seed=0, train=recipe, finetune=recipe,
                        qat=recipe, latency=LatencySetting(threads=1, warmup=1, repeats=3))


NUM_CLASSES = SYNTHETIC_CLASSES


def test_distinct_measures_each_object_once():
    a, b = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    unique, alias = _distinct({"start": a, "dense": b, "arch": a})
    assert list(unique) == ["start", "dense"] and alias == {"start": "start", "dense": "dense", "arch": "start"}


def test_stage_measures_every_model_against_dense(inputs):
    torch.manual_seed(0)
    n = NUM_CLASSES
    dense, start = build_model(SMALL, n).eval(), build_model(TINY, n).eval()
    m = quantize_deploy_measure(inputs, start, {"dense": dense, "arch": start}, algorithm="ptq", bits=8,
                                calibration_batches=1, start_name="pruned")
    # Deployed on integer kernels with NNI's scales for all 4 weights (stem, the block's two convs, classifier).
    assert m["integer_kernels"] is True and m["weights_from_nni"] == 4 and m["weights_from_ort"] == 0
    # Headline keys are the deployed model's; ratios are against `dense`.
    assert m["accuracy"] == m["int8_test_acc"] and m["val_acc"] == m["int8_val_acc"]
    assert m["delta_test_acc"] == pytest.approx(m["int8_test_acc"] - m["dense_test_acc"])
    for b in (1, 64):
        assert m[f"latency_ms_b{b}"] == m[f"int8_latency_ms_b{b}"] > 0
        assert m[f"speedup_b{b}"] == pytest.approx(m[f"dense_latency_ms_b{b}"] / m[f"int8_latency_ms_b{b}"])
        assert m[f"latency_ratio_b{b}"] == pytest.approx(1 / m[f"speedup_b{b}"])
    # Size: of what ships (the int8 ONNX file), against the dense model's fp32 ONNX file; latency: where it ran.
    assert m["size_kind"] == "int8_onnx" and m["dense_ort_size_kind"] == "fp32_onnx"
    assert m["size_ratio"] == pytest.approx(m["size_mb"] / m["dense_ort_size_mb"])
    assert m["latency_device"] == m["dense_latency_device"] == "cpu" and m["dense_latency_runtime"] == "torch fp32"
    assert m["latency_runtime"].endswith(" int8") and m["latency_threads"] == inputs.latency.threads == 1
    assert m["params"] == m["pruned_params"] < m["dense_params"]
    # `arch` is the same object as the start model: measured once, reported under both names.
    assert m["arch_test_acc"] == m["pruned_test_acc"] and m["arch_latency_ms_b1"] == m["pruned_latency_ms_b1"]
    assert m["arch_ort_size_mb"] == m["pruned_ort_size_mb"] < m["dense_ort_size_mb"]
    assert m["int8_model"] == ""  # nothing kept outside an NNI trial
    # The CPU, the weight grid and the runtime that ship are named; the chosen runtime passed the gate.
    assert m["cpu_model"] == cpu_info().model and m["cpu_isa"] == cpu_info().isa
    assert m["int8_scheme_used"] == "reduced" and m["runtime_used"] in ("ort", "openvino")  # the portable default
    assert m["portability_check_used"] == "none" and m["portable_avx2"] is None  # off unless asked
    assert m["agreement_val"] == m[f"agreement_val_{m['runtime_used']}"] >= m["min_agreement"] == 0.99
    assert m["latency_ms_b1"] == m[f"int8_{m['runtime_used']}_latency_ms_b1"]


class _Disagreeing(torch.nn.Module):
    """A runtime stub whose int8 kernels compute something else: every logit vector rolled by one class."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).roll(1, dims=1)


def test_a_deployment_that_disagrees_fails_the_trial_naming_cpu_scheme_and_agreement(inputs, monkeypatch):
    import common.stages as stages

    real = stages.runtime_module
    monkeypatch.setattr(stages, "runtime_module", lambda *a, **k: _Disagreeing(real(*a, **k)))
    torch.manual_seed(0)
    model = build_model(TINY, NUM_CLASSES).eval()
    with pytest.raises(DeploymentError) as err:
        quantize_deploy_measure(inputs, model, {"dense": model}, algorithm="ptq", bits=8, calibration_batches=1,
                                runtime="ort", int8_scheme="reduced")
    message = str(err.value)
    assert "onnxruntime" in message and "reduced 7-bit" in message and cpu_info().model in message
    assert cpu_info().isa in message and "of validation images (< 99%" in message


def test_auto_runtime_is_the_fastest_that_passes_the_gate_and_the_portability_check():
    from common.portability import Portability
    from common.stages import _fastest, shippable_runtimes

    kernels = {"ort": {"integer_kernels": True}, "openvino": {"integer_kernels": True}}
    lat = {"int8_ort": {1: 2.0, 64: 60.0}, "int8_openvino": {1: 1.5, 64: 50.0}}
    good = {"ort": {"val": 1.0}, "openvino": {"val": 0.995}}
    assert _fastest(shippable_runtimes(kernels, good, 0.99), lat) == "openvino"
    assert shippable_runtimes(kernels, {**good, "openvino": {"val": 0.9}}, 0.99) == ["ort"]
    assert shippable_runtimes({**kernels, "openvino": {"integer_kernels": False}}, good, 0.99) == ["ort"]
    assert shippable_runtimes(kernels, {"ort": {"val": 0.5}, "openvino": {"val": 0.5}}, 0.99) == []
    saturating = Portability("avx2", {"ort": 1.0, "openvino": 0.93})  # the faster file saturates on AVX2
    assert _fastest(shippable_runtimes(kernels, good, 0.99, saturating), lat) == "ort"
    unknown = Portability("avx2", {"ort": None, "openvino": None})  # no qemu: nothing to prefer
    assert shippable_runtimes(kernels, good, 0.99, unknown) == ["ort", "openvino"]


def test_stage_arguments_are_checked_before_work(inputs):
    model = build_model(TINY, NUM_CLASSES)
    with pytest.raises(ValueError, match="'dense' model"):
        quantize_deploy_measure(inputs, model, {"baseline": model}, algorithm="ptq", bits=8)
    with pytest.raises(ValueError, match="collides"):
        quantize_deploy_measure(inputs, model, {"dense": model}, algorithm="ptq", bits=8, start_name="int8")


def test_stage_starts_from_the_loaders_first_epoch(inputs, monkeypatch):
    """QAT and calibration batches must not depend on what this process trained before the stage."""
    import common.stages as stages

    seen = []

    def record(model, algorithm, bits, *, train_loader, **kwargs):
        seen.append(train_loader.epoch)
        raise RuntimeError("stop after quantize_model was called")

    monkeypatch.setattr(stages, "quantize_model", record)
    for _ in range(2):
        next(iter(inputs.loaders["train"]))  # e.g. the dense model trained in this process
    model = build_model(TINY, NUM_CLASSES)
    with pytest.raises(RuntimeError, match="stop after"):
        quantize_deploy_measure(inputs, model, {"dense": model}, algorithm="qat", bits=8)
    assert seen == [0]


def test_keep_model_copies_the_deployed_model(tmp_path, monkeypatch):
    from common.stages import DEPLOYED_MODEL_FILE, _keep

    deployed = tmp_path / "work" / "int8.onnx"
    deployed.parent.mkdir()
    deployed.write_bytes(b"onnx bytes")
    monkeypatch.delenv("NNI_OUTPUT_DIR", raising=False)
    assert _keep(deployed) == ""  # a hand-run trial without --keep-model keeps nothing
    assert _keep(deployed, str(tmp_path / "mine.onnx")) == str(tmp_path / "mine.onnx")
    assert (tmp_path / "mine.onnx").read_bytes() == b"onnx bytes"
    monkeypatch.setenv("NNI_OUTPUT_DIR", str(tmp_path / "nni"))
    (tmp_path / "nni").mkdir()
    assert _keep(deployed, str(tmp_path / "again.onnx")) == str(tmp_path / "again.onnx")
    assert (tmp_path / "nni" / DEPLOYED_MODEL_FILE).read_bytes() == b"onnx bytes"  # NNI's copy as well
    assert _keep(deployed) == str(tmp_path / "nni" / DEPLOYED_MODEL_FILE)


def test_keep_model_is_a_quant_and_pipeline_flag():
    import sys

    from tests.nnictl_utils import ROOT

    sys.path.insert(0, str(ROOT / "trials"))
    from trials.pipeline import get_parser as pipeline_parser
    from trials.quant import get_parser as quant_parser

    for parser in (quant_parser(), pipeline_parser()):
        assert parser.parse_args(["--keep-model", "m.onnx"]).keep_model == "m.onnx"


def test_cached_stage_keys_are_those_existing_caches_hold(tmp_path):
    """The dense and pruned keys of a trial session, pinned: a change to them silently retrains every user's
    cached models (the digests are those entries' folder names), so it must be a deliberate one. (Last changed on
    purpose when the smoke profile, whose keys these are, moved to 16x16 images: its data changed.)"""
    from common import trial
    from common.cache import key_digest
    from common.stages import dense_key, pruned_key
    from common.trial import stage_context

    args = trial.parse_params(trial.base_parser("t"), ["--cache-dir", str(tmp_path / "c"), "--data-dir",
                                                       str(tmp_path / "d"), "--distill-weight", "0.5"])
    inputs = stage_context(trial.start_session(args))
    assert key_digest(dense_key(inputs, TINY)) == "c56a892a731383b5"
    assert key_digest(pruned_key(inputs, TINY, "l1", 0.5)) == "93523ba42831443c"
    assert key_digest(pruned_key(inputs, TINY, "l1", 0.5, "gradual", 1)) == "93523ba42831443c"  # 1 step: one-shot
    assert key_digest(pruned_key(inputs, TINY, "fpgm", 0.5, "gradual", 3)) == "d579514b10e13f7f"
