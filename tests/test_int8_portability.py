"""An int8 file is right on a CPU it is copied to: the default 7-bit grid agrees on an emulated AVX2-only CPU,
the full 8-bit grid measurably does not (so the emulator saturates, and this test can fail).

A small CIFAR-style ResNet trained briefly on real Fashion-MNIST images, quantized by NNI on both weight grids,
deployed, and each file run by ONNX Runtime and OpenVINO under `qemu-x86_64 -cpu Haswell` (common/portability.py)
against the same file on this host. Only correctness is measured under emulation, never speed. On a host that is
itself AVX2-only (an AMD Zen 2/3, say) there is no exact CPU to compare with: there the test checks that the
emulator computes what this real CPU computes, and that the CPU saturates the full grid and not the 7-bit one.
"""

import numpy as np
import pytest
import torch

from common import portability
from common.cpu import deployed_weight_bits
from common.data import FASHION_MNIST_SYSTEM_DIR, load_splits, make_loaders
from common.deploy import deploy_int8, qdq_reference, runtime_module
from common.quantization import dequantized_model, quantize_model, take_inputs
from common.train import TrainConfig, evaluate, predict

pytestmark = [
    pytest.mark.skipif(not FASHION_MNIST_SYSTEM_DIR.is_dir(),
                       reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"),
    pytest.mark.skipif(portability.unavailable_reason() is not None,
                       reason=f"{portability.unavailable_reason()}"),
]

IMAGES = 256  # per file and runtime under emulation


@pytest.fixture(scope="module")
def deployed(small_fashion_resnet, tmp_path_factory):
    """Per grid, the deployed file and the held-out images (normalised, as the runtimes take them)."""
    tmp = tmp_path_factory.mktemp("portable")
    splits = load_splits("fashion-mnist", small_fashion_resnet.data_dir, train_limit=3000, eval_limit=IMAGES)
    model, loaders = small_fashion_resnet.model(), make_loaders(splits, 64)
    assert evaluate(model, loaders["val"])["accuracy"] > 0.5  # real learning (chance: 0.1)
    example = next(iter(loaders["train"]))[0][:2].float()
    files = {}
    for scheme in ("full", "reduced"):
        sim, calib, _ = quantize_model(model.eval(), "ptq", 8, train_loader=loaders["train"], example_input=example,
                                       calibration_batches=4, finetune_cfg=TrainConfig(epochs=1),
                                       max_weight_bits=deployed_weight_bits(8, scheme))
        files[scheme] = deploy_int8(dequantized_model(sim, model), calib, tmp / scheme, example,
                                    take_inputs(loaders["train"], 4)).int8_path
    images = torch.cat([x for x, _ in loaders["val"]])[:IMAGES]
    return files, images


def _host_top1(path, images: torch.Tensor) -> dict[str, np.ndarray]:
    return {r: predict(runtime_module(r, path), [images]).numpy() for r in ("ort", "openvino")}


AVX2_HOST = pytest.mark.skipif(not portability.host_is_avx2_only(), reason="needs an AVX2-only x86 host")


@pytest.mark.skipif(portability.host_is_avx2_only(),
                    reason="this host is AVX2-only, as the emulated CPU: test_an_avx2_only_host_* checks it instead")
def test_default_grid_agrees_on_an_emulated_avx2_cpu_and_the_full_grid_does_not(deployed):
    files, images = deployed
    checks = {scheme: portability.check_avx2(path, images.numpy(), _host_top1(path, images), min_agreement=0.99)
              for scheme, path in files.items()}
    for runtime, agreement in checks["reduced"].agreement.items():
        assert agreement is not None and agreement >= 0.99, f"7-bit file on {runtime}: {checks['reduced']}"
    # The emulator saturates like an AVX2-only CPU: some full-grid file computes something else there.
    full = [a for a in checks["full"].agreement.values() if a is not None]
    assert len(full) == 2 and min(full) <= 0.98, f"full 8-bit grid agreed everywhere: {checks['full']}"


@AVX2_HOST
def test_an_avx2_only_host_computes_what_the_emulator_does_and_saturates_only_the_full_grid(deployed):
    files, images = deployed
    exact = {}
    for scheme, path in files.items():
        host = _host_top1(path, images)
        check = portability.check_avx2(path, images.numpy(), host, min_agreement=0.99)
        # Measured on an AMD EPYC (Zen 3): 100 % on both grids and runtimes.
        assert all(a is not None and a >= 0.99 for a in check.agreement.values()), f"{scheme}: {check}"
        # ONNX Runtime's fused integer kernels against the file's own arithmetic executed in float.
        exact[scheme] = _agreement(host["ort"], predict(qdq_reference(path), [images]).numpy())
    # Measured on the Zen 3: full grid 95.7 %, 7-bit grid 100 %.
    assert exact["reduced"] >= 0.99 and exact["full"] <= 0.98, f"ORT against the QDQ definition: {exact}"


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


def test_a_file_the_emulated_runtime_cannot_load_is_reported_not_raised(tmp_path):
    broken = tmp_path / "broken.int8.onnx"
    broken.write_bytes(b"not an onnx file")
    lines = []
    result = portability.check_avx2(broken, np.zeros((2, 1, 28, 28), np.float32),
                                    {"ort": np.zeros(2, np.int64)}, min_agreement=0.99, log=lines.append)
    decided = portability.decide(result, "ort", 0.99)
    assert decided.agreement == {"ort": None} and decided.portable is None
    assert "ort under qemu-x86_64 -cpu Haswell failed" in decided.note and decided.note in lines[0]
    assert decided.result_keys()["portable_avx2"] is None
