"""NNI quantizers through common.quantization: targets, every algorithm x bit width, bad parameters, NaN."""

import subprocess
import sys

import pytest
import torch

from common.data import load_splits, make_loaders
from common.models import build_model
from common.quantization import (
    ALGORITHMS,
    BITS,
    QuantizationError,
    activation_points,
    config_list,
    quantize_model,
    simulated_weights,
    validate,
)
from common.train import NonFiniteLossError, TrainConfig
from tests.nnictl_utils import ROOT

TINY = {"blocks": [1, 1], "widths": [4, 8]}
CFG = TrainConfig(epochs=1, lr=0.01, schedule="constant", print_freq=1000)


@pytest.fixture(scope="module")
def loaders(tmp_path_factory):
    splits = load_splits("synthetic", tmp_path_factory.mktemp("data"), train_limit=32, eval_limit=32)
    return make_loaders(splits, 16)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    model = build_model(TINY)
    for m in model.modules():  # trained-looking BN (the zero-init of bn2 would make blocks identities)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_activations_are_quantized_once_at_their_producer():
    points = activation_points(tiny_model())
    # the image into the stem is signed; the pooled ReLU features into the classifier are not
    assert points["conv1"] == {"input": True} and points["fc"] == {"input": False}
    # every ReLU output (the block output also feeds the residual branch) and the residual BN outputs
    assert points["act"] == points["layer1.0.act1"] == points["layer2.0.act2"] == {"output": False}
    assert points["layer1.0.bn2"] == points["layer2.0.downsample.1"] == {"output": True}
    # convs fed by a ReLU do not quantize their input again; pre-ReLU BNs have no quantizer
    assert "layer1.0.conv2" not in points and "layer1.0.bn1" not in points


@pytest.mark.parametrize("bits", BITS)
def test_config_weights_per_channel_with_first_and_last_layer_at_8_bits(bits):
    configs = config_list(tiny_model(), "qat", bits)
    weights = {c["op_names"][0]: c for c in configs if c["target_names"] == ["weight"]}
    assert set(weights) == {"conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2",
                            "layer2.0.downsample.0", "fc"}
    assert all(c["quant_scheme"] == "symmetric" and c["granularity"] == "out_channel" for c in weights.values())
    assert weights["conv1"]["quant_dtype"] == weights["fc"]["quant_dtype"] == "int8"
    assert weights["layer1.0.conv1"]["quant_dtype"] == f"int{bits}"


def test_dorefa_quantizes_layer_inputs_not_outputs():
    configs = config_list(tiny_model(), "dorefa", 8)
    assert not any(c["target_names"] == ["_output_"] for c in configs)
    assert sum(c["target_names"] == ["_input_"] for c in configs) == 7


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("bits", BITS)
def test_each_quantizer_gives_finite_scales_and_weights_on_their_grid(algorithm, bits, loaders):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sim, calib, info = quantize_model(model, algorithm, bits, train_loader=loaders["train"], finetune_cfg=CFG,
                                      example_input=torch.randn(1, 3, 32, 32), calibration_batches=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "input model was modified"
    assert info["nni_quantizer"] == {"ptq": "PtqQuantizer", "qat": "QATQuantizer", "lsq": "LsqQuantizer",
                                     "dorefa": "DoReFaQuantizer"}[algorithm]
    assert info["quantized_layers"] == 7 and info["activation_bits"] == 8
    weights = simulated_weights(sim)
    for name, w in weights.items():
        spec = calib[name]["weight"]
        assert spec["bits"] == (8 if name in ("conv1", "fc") else bits)
        assert spec["scale"].shape == (w.shape[0],) and (spec["scale"] > 0).all()
        q = w / spec["scale"].view(-1, *([1] * (w.dim() - 1)))
        assert torch.allclose(q, q.round(), atol=1e-3) and q.abs().max() <= spec["qmax"] + 1e-3
    if bits == 4:  # 4-bit weights really use at most 15 levels per channel
        assert len(torch.unique((weights["layer1.0.conv1"][0] / calib["layer1.0.conv1"]["weight"]["scale"][0])
                                .round())) <= 15
    for spec in calib.values():
        for kind in ("input", "output"):
            if kind in spec:
                assert spec[kind]["scale"] > 0 and spec[kind]["qmin"] <= spec[kind]["zero_point"] <= spec[kind]["qmax"]
    if algorithm == "lsq":  # NNI's 0.01 default would saturate activations at 2.55; min-max init replaced it
        assert calib["act"]["output"]["scale"] != pytest.approx(0.01)
    with torch.no_grad():
        x = torch.randn(4, 3, 32, 32)
        out = sim(x)
        assert torch.isfinite(out).all()
        # static activation scales (DoReFa's per-batch scales are frozen): one sample alone, same output
        torch.testing.assert_close(sim(x[:1]), out[:1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("algorithm, bits, match", [
    ("qat", 3, r"unsupported bit width 3; choose one of 4, 8"),
    ("qat", 16, r"bit width 16"),
    ("adaround", 8, r"unknown quantization algorithm 'adaround'; choose one of ptq, qat, lsq, dorefa"),
])
def test_bad_parameters_fail_before_any_work(algorithm, bits, match):
    with pytest.raises(ValueError, match=match):
        validate(algorithm, bits)
    with pytest.raises(ValueError, match=match):
        quantize_model(tiny_model(), algorithm, bits, train_loader=[], finetune_cfg=CFG,
                       example_input=torch.randn(1, 3, 32, 32))


def test_trial_rejects_bad_parameters_from_the_command_line():
    proc = subprocess.run([sys.executable, str(ROOT / "trials" / "quant.py"), "--bits", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "invalid choice: 3" in proc.stderr


def test_nan_training_fails_with_a_clear_message(loaders):
    model = tiny_model()
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"qat 8-bit: NaN/inf training loss"):
        quantize_model(model, "qat", 8, train_loader=loaders["train"], finetune_cfg=CFG,
                       example_input=torch.randn(1, 3, 32, 32))


def test_nan_weights_never_become_a_reported_model(loaders):
    model = tiny_model()
    with torch.no_grad():
        model.layer1[0].conv1.weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(QuantizationError, match=r"ptq 8-bit: .*(NaN|inf|nan)"):
        quantize_model(model, "ptq", 8, train_loader=loaders["train"], finetune_cfg=CFG,
                       example_input=torch.randn(1, 3, 32, 32), calibration_batches=1)


def test_dorefa_4_bit_fine_tunes_a_fresh_resnet_without_nan(loaders):
    # A fresh ResNet zero-initialises each block's last BN: its conv gets exactly zero gradients, which
    # NNI's stock DoReFa gradient hook turns into NaN (tests/test_nni_compat.py shows it).
    torch.manual_seed(0)
    sim, _, _ = quantize_model(build_model(TINY), "dorefa", 4, train_loader=loaders["train"], finetune_cfg=CFG,
                               example_input=torch.randn(1, 3, 32, 32), calibration_batches=1)
    assert all(torch.isfinite(p).all() for p in sim.parameters())
