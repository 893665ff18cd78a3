"""On real images every NNI algorithm x bit width deploys as int8 that computes what NNI simulated.

A small CIFAR-style ResNet trained briefly on Fashion-MNIST (real, confident predictions, unlike the
synthetic smoke data), then each quantizer at 8 and 4 bits on the weight grid this CPU executes exactly
(`--int8-scheme auto`: 7-bit weights on x86 without VNNI, where full 8-bit u8s8 kernels saturate and this
test fails), deployed, and checked on held-out images against the file's own QDQ definition (the kernels are
exact) and against NNI's simulation (the file is NNI's model).
"""

import pytest

from common.cpu import cpu_info, deployed_weight_bits, resolve_int8_scheme
from common.data import FASHION_MNIST_SYSTEM_DIR, load_splits, make_loaders
from common.deploy import deploy_int8, qdq_reference
from common.quantization import dequantized_model, quantize_model, take_inputs
from common.train import TrainConfig, evaluate, predict

pytestmark = pytest.mark.skipif(not FASHION_MNIST_SYSTEM_DIR.is_dir(),
                                reason="needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")

@pytest.fixture(scope="module")
def trained(small_fashion_resnet, tmp_path_factory):
    # Quantization-aware fine-tuning and calibration on 640 of the training images keep 8 trials short.
    small = load_splits("fashion-mnist", small_fashion_resnet.data_dir, train_limit=640, eval_limit=400)
    return small_fashion_resnet.model(), make_loaders(small, 64), tmp_path_factory.mktemp("int8")


@pytest.mark.parametrize("algorithm", ["ptq", "qat", "lsq", "dorefa"])
@pytest.mark.parametrize("bits", [8, 4])
def test_every_algorithm_deploys_as_int8_that_computes_its_grid_exactly(trained, algorithm, bits):
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
    int8 = predict(deployment.session(threads=1), loaders["val"])
    exact = (int8 == predict(qdq_reference(deployment.int8_path), loaders["val"])).float().mean()
    simulated = (int8 == predict(sim, loaders["val"])).float().mean()
    cpu = cpu_info()
    said = f"{algorithm} {bits}-bit on {cpu.model} [{cpu.isa}], scheme {scheme}"
    # The integer kernels compute the file's own definition (saturating ones do not: PTQ 8-bit on the full grid,
    # 95.3 % on an AMD EPYC Zen 3) ...
    assert exact >= 0.99, f"{said}: int8 kernels agree with the file's QDQ definition on {exact:.1%}"
    # ... and the file is NNI's model. DoReFa's simulation keeps its identity branches float, which flips near-ties
    # of this ~56 %-accurate model (measured 98.5-98.8 % on the Zen 3 with the 7-bit grid, where ORT agreed
    # 100 % with the file's definition); an export error flips far more.
    assert simulated >= 0.975, f"{said}: int8 agrees with NNI's simulation on {simulated:.1%}"
