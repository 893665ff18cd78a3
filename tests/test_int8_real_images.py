"""On real images every NNI algorithm x bit width deploys as int8 that computes what NNI simulated.

A small CIFAR-style ResNet trained briefly on Fashion-MNIST (real, confident predictions, unlike the
synthetic smoke data), then each quantizer at 8 and 4 bits on the weight grid this CPU executes exactly
(`--int8-scheme auto`: 7-bit weights on x86 without VNNI, where full 8-bit u8s8 kernels saturate and this
test fails), deployed and compared with NNI's simulation on held-out images.
"""

import pytest
import torch

from common.cpu import cpu_info, deployed_weight_bits, resolve_int8_scheme
from common.data import FASHION_MNIST_SYSTEM_DIR, load_splits, make_loaders
from common.deploy import deploy_int8
from common.models import build_model
from common.quantization import dequantized_model, quantize_model, take_inputs
from common.train import TrainConfig, evaluate, fit, predict

pytestmark = pytest.mark.skipif(not FASHION_MNIST_SYSTEM_DIR.is_dir(),
                                reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")

SMALL = {"blocks": [1, 1], "widths": [16, 32]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fmnist")
    splits = load_splits("fashion-mnist", tmp / "data", train_limit=3000, eval_limit=400)
    torch.manual_seed(0)
    model = build_model(SMALL, splits.num_classes, in_channels=splits.train_images.shape[1])
    fit(model, make_loaders(splits, 64)["train"], TrainConfig(epochs=4, lr=0.05, print_freq=1000),
        print_fn=lambda s: None)
    # Quantization-aware fine-tuning and calibration on 640 of the training images keep 8 trials short.
    small = load_splits("fashion-mnist", tmp / "data", train_limit=640, eval_limit=400)
    return model.eval(), make_loaders(small, 64), tmp


@pytest.mark.parametrize("algorithm", ["ptq", "qat", "lsq", "dorefa"])
@pytest.mark.parametrize("bits", [8, 4])
def test_every_algorithm_deploys_with_agreement_of_99_percent(trained, algorithm, bits):
    model, loaders, tmp = trained
    assert evaluate(model, loaders["val"])["accuracy"] > 0.5  # real learning (chance: 0.1)
    scheme = resolve_int8_scheme("auto")
    example = next(iter(loaders["train"]))[0][:2].float()
    sim, calib, _ = quantize_model(
        model, algorithm, bits, train_loader=loaders["train"], example_input=example, calibration_batches=4,
        finetune_cfg=TrainConfig(epochs=1, lr=0.005, schedule="constant", print_freq=1000),
        max_weight_bits=deployed_weight_bits(8, scheme))
    deployment = deploy_int8(dequantized_model(sim, model), calib, tmp / f"{algorithm}{bits}", example,
                             take_inputs(loaders["train"], 4))
    agree = (predict(sim, loaders["val"]) == predict(deployment.session(threads=1), loaders["val"])).float().mean()
    cpu = cpu_info()
    assert agree >= 0.99, (f"{algorithm} {bits}-bit: int8 agrees with NNI's simulation on {agree:.1%} on "
                           f"{cpu.model} [{cpu.isa}], scheme {scheme}")
