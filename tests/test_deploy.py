"""Real int8 deployment: BN folding, ONNX export, NNI's scales in the QDQ graph, ORT integer kernels, and
agreement of the deployed model with NNI's simulated one."""

import onnx
import pytest
import torch
from onnx import numpy_helper

from common.cpu import deployed_weight_bits, resolve_int8_scheme
from common.data import load_splits, make_loaders
from common.deploy import (
    INTEGER_OPS,
    OpenVinoModule,
    OrtModule,
    deploy_int8,
    export_fp32,
    fold_batchnorm,
    integer_kernel_report,
    openvino_available,
    openvino_kernel_report,
    packed_weight_bytes,
    qdq_reference,
)
from common.metrics import measure_latency
from common.models import build_model
from common.quantization import dequantized_model, quantize_model, simulated_weights, take_inputs
from common.train import TrainConfig, evaluate, fit, predict

SMALL = {"blocks": [1, 1], "widths": [16, 32]}
X = torch.randn(2, 3, 32, 32)


def randomised_bn(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(-1.5, 1.5)  # negative factors too: folding must keep the integer grid
            m.bias.data.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_fold_batchnorm_keeps_the_function():
    torch.manual_seed(0)
    model = randomised_bn(build_model(SMALL))
    folded, factors, folded_into = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert folded_into["layer2.0.downsample.1"] == "layer2.0.downsample.0" and len(factors) == 6
    bn = model.layer1[0].bn1
    torch.testing.assert_close(factors["layer1.0.conv1"], bn.weight / torch.sqrt(bn.running_var + bn.eps))
    with torch.no_grad():
        torch.testing.assert_close(folded(X), model(X), atol=1e-5, rtol=1e-4)


def test_fp32_export_runs_in_onnx_runtime_with_any_batch(tmp_path):
    torch.manual_seed(0)
    model = randomised_bn(build_model(SMALL))
    ort_model = OrtModule(export_fp32(model, tmp_path / "m.onnx", X), threads=1)
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(ort_model(x), model(x), atol=1e-4, rtol=1e-4)
    # the fp32 graph runs float convs: the kernel check must be able to say "not integer"
    report = integer_kernel_report(tmp_path / "m.onnx", tmp_path / "m.opt.onnx")
    assert not report["integer_kernels"] and report["float_compute_ops"]
    # and the wrapper times like a torch model, interleaved, at the same thread count
    lat = measure_latency({"torch": model, "ort": ort_model}, (1, 4), threads=1, warmup=1, repeats=2)
    assert set(lat["ort"]) == {1, 4} and all(ms > 0 for ms in lat["ort"].values())


def _ptq_deployment(model, loaders, workdir, max_weight_bits):
    sim, calib, _ = quantize_model(model, "ptq", 8, train_loader=loaders["train"], finetune_cfg=TrainConfig(epochs=0),
                                   example_input=X, calibration_batches=4, max_weight_bits=max_weight_bits)
    deployment = deploy_int8(dequantized_model(sim, model), calib, workdir, X, take_inputs(loaders["train"], 4))
    return sim, calib, deployment


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small ResNet trained briefly on the synthetic smoke data, PTQ-quantized by NNI on the weight grid
    that this CPU's int8 kernels execute exactly (`--int8-scheme auto`) and deployed."""
    tmp = tmp_path_factory.mktemp("deploy")
    splits = load_splits("synthetic", tmp / "data", train_limit=512, eval_limit=256)
    loaders = make_loaders(splits, 64)
    torch.manual_seed(0)
    model = build_model(SMALL)
    fit(model, loaders["train"], TrainConfig(epochs=3, lr=0.2, print_freq=1000), print_fn=lambda s: None)
    sim, calib, deployment = _ptq_deployment(model, loaders, tmp, deployed_weight_bits(8, resolve_int8_scheme("auto")))
    return {"model": model, "sim": sim, "calib": calib, "deployment": deployment, "loaders": loaders, "tmp": tmp}


def test_int8_predictions_agree_with_the_simulated_model(trained):
    loaders, sim = trained["loaders"], trained["sim"]
    int8 = trained["deployment"].session(threads=1)
    assert evaluate(trained["model"], loaders["test"])["accuracy"] > 0.2  # it learned something (chance: 0.1)
    batch = next(iter(loaders["test"]))[0]
    agree = (predict(sim, [batch]) == predict(int8, [batch])).float().mean().item()
    assert agree >= 0.99, f"int8 and simulated top-1 agree on only {agree:.1%} of a test batch"
    with torch.no_grad():  # not just the argmax: the logits are close too
        torch.testing.assert_close(int8(batch), sim(batch), atol=0.05, rtol=0.0)


def test_ort_runs_integer_kernels(trained):
    info = trained["deployment"].info
    assert info["integer_kernels"] and not info["float_compute_ops"]
    assert info["integer_ops"]["QLinearConv"] == 6  # every conv of the small ResNet
    assert set(info["integer_ops"]) <= INTEGER_OPS
    ops = {n.op_type for n in onnx.load(str(trained["deployment"].optimized_path)).graph.node}
    assert "Conv" not in ops and "QLinearConv" in ops


def test_int8_graph_carries_nnis_scales(trained):
    info, calib = trained["deployment"].info, trained["calib"]
    assert info["activations_from_ort"] == 0 and info["weights_from_ort"] == 0
    assert info["weights_from_nni"] == 7 and info["activations_from_nni"] == sum(
        ("input" in c) + ("output" in c) for c in calib.values())
    model = onnx.load(str(trained["deployment"].int8_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q_scales = sorted(float(inits[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear")
    nni_scales = sorted(c[k]["scale"] for c in calib.values() for k in ("input", "output") if k in c)
    assert q_scales == pytest.approx(nni_scales, rel=1e-6)
    # weights: NNI's integers, scale = NNI's scale x |BN factor|
    _, factors, _ = fold_batchnorm(dequantized_model(trained["sim"], trained["model"]))
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    w_scale = inits[dq["layer1.0.conv1.weight_DequantizeLinear_Output"].input[1]]
    expected = calib["layer1.0.conv1"]["weight"]["scale"] * factors["layer1.0.conv1"].abs()
    assert w_scale == pytest.approx(expected.numpy(), rel=1e-5)


def test_packed_size_halves_at_4_bits(trained):
    calib, weights = trained["calib"], simulated_weights(trained["sim"])
    n_weights = sum(w.numel() for w in weights.values())

    def at(bits: int) -> dict:  # the calibration with every layer's weights at `bits` (the grid's own may be 7)
        return {k: {**v, "weight": {**v["weight"], "bits": bits}} if "weight" in v else v for k, v in calib.items()}

    eight = packed_weight_bytes(at(8), weights)
    assert eight > n_weights  # a byte per weight, plus per-channel scales and biases
    assert packed_weight_bytes(at(4), weights) == pytest.approx(eight - n_weights / 2, abs=len(weights))
    own = {v["weight"]["bits"] for v in calib.values() if "weight" in v}
    assert len(own) == 1 and packed_weight_bytes(calib, weights) == packed_weight_bytes(at(own.pop()), weights)


def _int8_weights(path):
    model = onnx.load(str(path))
    weights = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [numpy_helper.to_array(i) for i in model.graph.initializer
            if i.name in weights and i.data_type == onnx.TensorProto.INT8]


def test_reduced_grid_ships_7_bit_weights_and_keeps_agreeing(trained, tmp_path):
    """`--int8-scheme reduced`: every weight of the deployed file within -63..63, so a u8 x s8 pair sum fits
    int16 on any CPU, and the model still computes what NNI simulated."""
    loaders = trained["loaders"]
    sim, calib, deployment = _ptq_deployment(trained["model"], loaders, tmp_path, max_weight_bits=7)
    assert {c["weight"]["bits"] for c in calib.values() if "weight" in c} == {7}
    weights = _int8_weights(deployment.int8_path)
    assert len(weights) == 7 and max(int(abs(w).max()) for w in weights) <= 63
    # the full grid really uses 8 bits: the reduced one is a different, narrower grid
    assert max(int(abs(w).max()) for w in _int8_weights(trained["deployment"].int8_path)) > 63 or \
        resolve_int8_scheme("auto") == "reduced"
    batch = next(iter(loaders["test"]))[0]
    agree = (predict(sim, [batch]) == predict(deployment.session(threads=1), [batch])).float().mean().item()
    assert agree >= 0.99, f"reduced-grid int8 and simulated top-1 agree on only {agree:.1%}"


def test_integer_kernels_match_the_qdq_graph_they_were_fused_from(trained):
    """The unfused QDQ graph is what the integer grid means; integer kernels that saturated would differ."""
    batch = next(iter(trained["loaders"]["test"]))[0]
    path = trained["deployment"].int8_path
    with torch.no_grad():
        fused, reference = OrtModule(path, threads=1)(batch), qdq_reference(path)(batch)
    assert (fused.argmax(1) == reference.argmax(1)).float().mean() >= 0.99
    torch.testing.assert_close(fused, reference, atol=0.02, rtol=0.0)
    assert not integer_kernel_report(path, trained["tmp"] / "ref.opt.onnx")["float_compute_ops"]


@pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")
def test_openvino_runs_the_same_file_on_int8_kernels_with_nnis_grid(trained):
    ov = OpenVinoModule(trained["deployment"].int8_path, threads=1)
    report = openvino_kernel_report(ov, (1, 3, 32, 32))
    assert report["integer_kernels"] and report["integer_ops"].get("Convolution:u8") == 6
    batch = next(iter(trained["loaders"]["test"]))[0]
    agree = (predict(trained["sim"], [batch]) == predict(ov, [batch])).float().mean().item()
    assert agree >= 0.99, f"OpenVINO int8 and simulated top-1 agree on only {agree:.1%}"
    with torch.no_grad():
        torch.testing.assert_close(ov(batch), trained["sim"](batch), atol=0.05, rtol=0.0)
        assert ov(batch[:1]).shape == (1, 10)  # any batch size: one compiled model per shape
