import pytest
import torch
from torch import nn

from common.models import ResNetSpec, arch_key, build_model, load_arch, load_resized, resnet18, to_spec


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet18_is_the_cifar_variant():
    model = resnet18()
    assert n_params(model) == 11_173_962  # torchvision resnet18(num_classes=10) with a 3x3 stem
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("kernel", [3, 5])
def test_spec_variants_build_and_run(activation, kernel):
    spec = ResNetSpec(blocks=(1, 2), widths=(8, 16), activation=activation, kernel_size=kernel, num_classes=7)
    model = build_model(spec)
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 7)
    act = nn.ReLU if activation == "relu" else nn.Tanh
    assert any(isinstance(m, act) for m in model.modules())
    assert model.layer1[0].conv1.kernel_size == (kernel, kernel)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"blocks": [1, 1], "widths": [8]}, "equal length"),
        ({"activation": "gelu"}, "unknown activation"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"depth": 3}, "unknown architecture keys"),
        ({"blocks": [0, 1], "widths": [8, 8]}, "positive"),
    ],
)
def test_invalid_specs_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        to_spec(bad)


def test_unknown_arch_name():
    with pytest.raises(ValueError, match="'resnet50': unknown model"):
        build_model("resnet50")


def test_arch_key_is_stable_and_distinguishes():
    assert arch_key("resnet18") == arch_key(ResNetSpec()) == arch_key(ResNetSpec().to_dict())
    assert arch_key({"blocks": [1, 1], "widths": [8, 16]}) != arch_key({"blocks": [1, 1], "widths": [8, 32]})


def test_load_resized_restores_a_narrower_model():
    small = build_model({"blocks": [1, 1], "widths": [4, 6]})
    wide = build_model({"blocks": [1, 1], "widths": [8, 16]})  # same topology, wider layers
    x = torch.randn(2, 3, 32, 32)
    small.eval()
    load_resized(wide, small.state_dict())
    wide.eval()
    assert torch.equal(wide(x), small(x))
    assert wide.layer2[0].conv2.out_channels == 6


def test_load_arch_reads_a_nas_export(tmp_path):
    assert load_arch("resnet18") == "resnet18"
    good = tmp_path / "best_arch.json"
    good.write_text('{"blocks": [1, 1], "widths": [8, 16], "activation": "tanh", "kernel_size": 5}')
    assert arch_key(load_arch(good)) == "b1-1_w8-16_tanh_k5"


@pytest.mark.parametrize("text, match", [
    (None, "no such file"),
    ("{not json", "not an architecture JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"blocks": [1], "widths": [8], "activation": "gelu"}', "unknown activation"),
    ('{"depth": 3}', "unknown architecture keys"),
])
def test_load_arch_names_the_problem(tmp_path, text, match):
    path = tmp_path / "arch.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_arch(path)


@pytest.mark.parametrize("arch, message", [
    ({"blocks": [1, 1], "widths": [16, 32], "kernel_size": 3.0}, "kernel_size must be"),
    ({"blocks": [1, 1], "widths": [16, 32.5]}, "widths must be a list of integers"),
    ({"blocks": "11", "widths": [16, 32]}, "blocks must be a list of integers"),
])
def test_an_architecture_json_with_the_wrong_types_is_refused(arch, message):
    from common.models import to_spec

    with pytest.raises(ValueError, match=message):
        to_spec(arch)


def test_too_many_stages_for_the_image_size_fail_before_training():
    from common.models import check_resolution

    check_resolution({"blocks": [1] * 5, "widths": [8] * 5}, 32)  # 32, 16, 8, 4, 2 px
    message = "7 stages on 32x32 images: the last stages would run at 1x1 px; use at most 5 stages"
    with pytest.raises(ValueError, match=message):
        check_resolution({"blocks": [1] * 7, "widths": [8] * 7}, 32)
