"""The model registry (common/models.py): ResNet-18's cache keys pinned, models by name, a user's factory."""

import re

import pytest
import torch

from common import trial
from common.cache import key_digest
from common.models import arch_key
from common.stages import dense_key, pruned_key


def test_resnet18_cache_keys_are_those_existing_caches_and_records_hold(tmp_path):
    """ResNet-18's dense and pruned keys in the smoke profile, pinned before `--model` existed: every cached
    model and every recorded result was built under these digests, so adding models must not move them."""
    args = trial.parse_params(trial.base_parser("t"), ["--cache-dir", str(tmp_path / "c"),
                                                       "--data-dir", str(tmp_path / "d")])
    ctx = trial.stage_context(trial.start_session(args))
    assert arch_key("resnet18") == "b2-2-2-2_w64-128-256-512_relu_k3"
    assert key_digest(dense_key(ctx, "resnet18")) == "afb0c41a5edc8861"
    assert key_digest(pruned_key(ctx, "resnet18", "fpgm", 0.5)) == "9f2b6bdad6a55209"
    assert key_digest(pruned_key(ctx, "resnet18", "l1", 0.5, "gradual", 3)) == "e4b0e2f11766f942"
    assert key_digest(pruned_key(ctx, "resnet18", "fpgm", 0.5, stage_sparsity=(0.2, 0.4, 0.6, 0.7))) == \
        "9d868093221073c5"


USER_MODEL = '''
import torch
from torch import nn


def build(num_classes, input_shape):
    """A user's model: a depthwise-separable block and a classifier."""
    c = input_shape[0]
    return nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def not_a_module(num_classes, input_shape):
    return "a string"


class Branchy(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = -x
        return self.fc(x.flatten(1)[:, :4])


def branchy(num_classes, input_shape):
    return Branchy(num_classes)
'''


def _user_file(tmp_path):
    path = tmp_path / "outside" / "mymodels.py"
    path.parent.mkdir()
    path.write_text(USER_MODEL)
    return path


def test_registry_names_resnet18_and_mobilenet_v2_with_their_stages():
    from common.models import DEFAULT_MODEL, MODELS, build_model

    assert DEFAULT_MODEL == "resnet18" and {"resnet18", "mobilenet_v2"} <= set(MODELS)
    model = build_model("mobilenet_v2", 7, in_channels=1, image_size=16).eval()
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 7)
    record = MODELS["mobilenet_v2"]
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    stages = {record.stage_of(n) for n in convs}
    assert stages == {None, 0, 1, 2, 3} and record.stage_of("features.0.0") is None  # the stem follows stage 1
    assert record.stage_of("classifier.1") is None and record.stage_of("features.18.0") == 3
    assert MODELS["resnet18"].stage_of("layer3.1.conv2") == 2 and MODELS["resnet18"].stage_of("conv1") is None


def test_unknown_model_fails_when_parameters_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"--model 'nope': unknown model; one of resnet18, mobilenet_v2"):
        trial.parse_params(trial.base_parser("t"), ["--model", "nope"])
    with pytest.raises(ValueError, match=r"--model no_such_pkg\.mod:f: step import"):
        trial.parse_params(trial.base_parser("t"), ["--model", "no_such_pkg.mod:f"])
    with pytest.raises(ValueError, match=r"step import: .* has no callable 'missing'"):
        trial.parse_params(trial.base_parser("t"), ["--model", f"{_user_file(tmp_path)}:missing"])


def test_a_factory_from_a_file_outside_the_repository_builds_with_a_key_of_its_source(tmp_path):
    from common.models import arch_key, build_model, check_model

    path = _user_file(tmp_path)
    spec = f"{path}:build"
    model = build_model(spec, 5, in_channels=1, image_size=12)
    assert model(torch.randn(3, 1, 12, 12)).shape == (3, 5)
    check_model(spec, 5, (1, 12, 12))  # builds, runs, traces, exports
    key = arch_key(spec)
    path.write_text(USER_MODEL + "\n# edited\n")
    assert arch_key(spec) != key  # an edited model is a new cache entry


@pytest.mark.parametrize(("factory", "step"), [("not_a_module", "step build: factory returned str"),
                                               ("branchy", "step trace")])
def test_a_model_that_cannot_be_compressed_fails_naming_model_and_step(tmp_path, factory, step):
    from common.models import check_model

    spec = f"{_user_file(tmp_path)}:{factory}"
    with pytest.raises(ValueError, match=rf"^--model {re.escape(spec)}: {step}"):
        check_model(spec, 10, (1, 8, 8))


def test_a_pruned_depthwise_model_reloads_by_shape(tmp_path):
    """Pruning narrows a depthwise conv's groups with its channels: the cached state dict must load back."""
    from common.models import build_model, load_resized
    from common.pruning import prune_model

    spec = f"{_user_file(tmp_path)}:build"
    pruned, _ = prune_model(build_model(spec, 4, 1, 8).eval(), "l1", 0.5, torch.randn(1, 1, 8, 8))
    assert pruned[3].groups == pruned[3].out_channels == 4
    reloaded = load_resized(build_model(spec, 4, 1, 8), pruned.state_dict()).eval()
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(reloaded(x), pruned.eval()(x))


def test_per_stage_values_follow_the_model_records_stages():
    """MobileNetV2's stages come from its record: each conv gets its stage's sparsity and weight bits."""
    from common.models import MODELS
    from common.pruning import stage_config_list
    from common.quantization import config_list

    model = MODELS["mobilenet_v2"].build(10, (1, 16, 16))
    stage_of = MODELS["mobilenet_v2"].stage_of
    ratios = {e["op_names"][0]: e["sparse_ratio"] for e in stage_config_list(model, (0.1, 0.2, 0.3, 0.4), stage_of)}
    assert ratios["features.0.0"] == 0.1 and ratios["features.5.conv.1.0"] == 0.2  # stem with stage 1; depthwise
    assert ratios["features.10.conv.2"] == 0.3 and ratios["features.18.0"] == 0.4
    weights = {c["op_names"][0]: c["quant_dtype"] for c in config_list(model, "ptq", 8, 7, (8, 8, 4, 4), stage_of)
               if c["target_names"] == ["weight"]}
    assert weights["features.0.0"] == weights["classifier.1"] == weights["features.4.conv.0.0"] == "int7"
    assert weights["features.7.conv.0.0"] == weights["features.17.conv.2"] == "int4"


def test_per_stage_flags_need_a_model_whose_record_names_stages(tmp_path):
    spec = f"{_user_file(tmp_path)}:build"
    with pytest.raises(ValueError, match=rf"--model {re.escape(spec)}: step per-stage"):
        trial.parse_params(_pipeline_parser(), ["--model", spec, "--stage-bits", "8,8,4,4"])


def _pipeline_parser():
    import sys

    from tests.nnictl_utils import ROOT

    sys.path.insert(0, str(ROOT / "trials"))
    from trials.pipeline import get_parser

    return get_parser()


def test_mobilenet_v2_trains_with_its_records_lr_cap_and_short_run_batchnorm(tmp_path):
    """MobileNetV2's dense recipe caps the profile's peak lr (0.2 diverged on the smoke data); ResNet-18's and a
    user's factory's recipes, and so their cache keys, are the profile's own. Its BN statistics follow the weights
    (momentum 0.5: at 0.1 the smoke model predicted one class in eval mode) and residual blocks start as identity."""
    from torchvision.models.mobilenetv2 import InvertedResidual

    from common.models import MODELS, build_model, dense_recipe
    from common.profiles import PROFILES

    smoke, cpu = PROFILES["smoke"].train, PROFILES["cpu"].train
    assert dense_recipe("resnet18", smoke) is smoke and dense_recipe({"blocks": [1, 1]}, cpu) is cpu
    assert dense_recipe(f"{_user_file(tmp_path)}:build", smoke) is smoke
    cap = MODELS["mobilenet_v2"].max_lr
    assert dense_recipe("mobilenet_v2", smoke).lr == dense_recipe("mobilenet_v2", cpu).lr == cap < smoke.lr
    assert dense_recipe("mobilenet_v2", smoke).epochs == smoke.epochs
    model = build_model("mobilenet_v2", 10, 1, 16)
    assert {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.5}
    residual = [m for m in model.modules() if isinstance(m, InvertedResidual) and m.use_res_connect]
    assert len(residual) == 10 and all(not m.conv[-1].weight.any() for m in residual)
