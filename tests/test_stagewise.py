"""Per-stage sparsity and weight bits: parsed once with the flag named, pruned and quantized as asked."""

import json

import pytest
import torch
from torch import nn

from common import stagewise
from common.metrics import count_params
from common.models import MODELS, build_model
from common.pruning import kept_filters, prune_model
from common.quantization import config_list


@pytest.mark.parametrize("dest, text, message", [
    ("stage_sparsity", "0.1,0.2", "--stage-sparsity needs 4 comma-separated values"),
    ("stage_sparsity", "0.1,0.2,0.3,1.0", "--stage-sparsity '0.1,0.2,0.3,1.0': 1.0 is not a fraction"),
    ("stage_sparsity", "0.1,x,0.3,0.4", "--stage-sparsity '0.1,x,0.3,0.4': each value must be"),
    ("stage_bits", "8,8,4,2", "--stage-bits '8,8,4,2': 2 is not a weight bit width"),
])
def test_a_wrong_count_or_value_names_the_flag(dest, text, message):
    with pytest.raises(ValueError, match=message):
        stagewise.parse(dest, text)


def test_tuner_keys_fold_into_the_flags_and_parse_back():
    tuned = {"pruner": "fpgm", **{f"stage{k}_sparsity": 0.1 * k for k in range(1, 5)},
             **{f"stage{k}_bits": b for k, b in zip(range(1, 5), (8, 8, 4, 4), strict=True)}}
    folded = stagewise.fold_tuner_parameters(tuned)
    assert set(folded) == {"pruner", "stage_sparsity", "stage_bits"}
    assert stagewise.parse("stage_bits", folded["stage_bits"]) == (8, 8, 4, 4)
    assert stagewise.parse("stage_sparsity", folded["stage_sparsity"]) == pytest.approx((0.1, 0.2, 0.3, 0.4))
    with pytest.raises(ValueError, match="not stage3_bits, stage4_bits"):
        stagewise.fold_tuner_parameters({"stage1_bits": 8, "stage2_bits": 8})


def test_stage_sparsity_prunes_each_stage_to_its_own_width():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, in_channels=1)
    widths = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    levels = (0.25, 0.5, 0.0, 0.75)
    params_before = count_params(model)
    pruned, stats = prune_model(model, "fpgm", 0.5, torch.randn(2, 1, 16, 16), stage_sparsity=levels)
    for name, conv in pruned.named_modules():
        if isinstance(conv, nn.Conv2d):
            stage = MODELS["resnet18"].stage_of(name)
            level = levels[0 if stage is None else stage]  # the stem follows stage 1
            assert conv.out_channels == kept_filters(widths[name], level), name
    assert pruned.fc.out_features == 10
    assert stats.params_after == count_params(pruned) < params_before
    assert pruned(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def test_stage_bits_give_each_stage_its_weight_grid_and_keep_stem_and_classifier_at_8():
    model = build_model("resnet18", 10, in_channels=1)
    configs = config_list(model, "qat", 4, max_weight_bits=7, stage_bits=(8, 8, 4, 4))
    weights = {c["op_names"][0]: int(c["quant_dtype"].removeprefix("int")) for c in configs
               if c["target_names"] == ["weight"]}
    assert weights["conv1"] == 7 and weights["fc"] == 7  # 8, capped at the portable grid
    assert weights["layer1.0.conv1"] == 7 and weights["layer2.1.conv2"] == 7
    assert weights["layer3.0.conv1"] == 4 and weights["layer4.0.downsample.0"] == 4


def test_committed_pareto_search_space_is_the_rendered_one():
    from common.cli.pareto import SEARCH_SPACE_FILES

    for path, space in SEARCH_SPACE_FILES.items():  # per stage, uniform, the confirmation's anchor
        assert json.loads(path.read_text()) == space(), "regenerate: python3 -m common.cli.pareto render --write"


def test_the_uniform_space_is_the_per_stage_one_with_one_value_for_all_stages():
    per_stage, uniform = stagewise.search_space_json(), stagewise.uniform_search_space_json()
    assert uniform == {"pruner": per_stage["pruner"], "uniform_sparsity": per_stage["stage1_sparsity"],
                       "uniform_bits": per_stage["stage1_bits"]}
    folded = stagewise.fold_tuner_parameters({"pruner": "l1", "uniform_sparsity": 0.3, "uniform_bits": 4})
    assert folded == {"pruner": "l1", "stage_sparsity": "0.3,0.3,0.3,0.3", "stage_bits": "4,4,4,4"}
    assert stagewise.parse("stage_sparsity", stagewise.fold_tuner_parameters({"uniform_sparsity": 0.0})[
        "stage_sparsity"]) == (0.0,) * 4  # no pruning is a point of both spaces
    with pytest.raises(ValueError, match="uniform_bits and stage1_bits: one or the other"):
        stagewise.fold_tuner_parameters({"uniform_bits": 4, "stage1_bits": 8})
