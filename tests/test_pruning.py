import pytest
import torch

from common.metrics import count_flops, count_params
from common.models import build_model, resnet18
from common.pruning import PRUNERS, prune_model, validate

X = torch.randn(1, 3, 32, 32)


@pytest.mark.parametrize("pruner", PRUNERS)
def test_each_pruner_shrinks_a_small_resnet(pruner):
    model = build_model({"blocks": [1, 1], "widths": [8, 16]}).eval()
    out_before = model(torch.randn(2, 3, 32, 32)).shape
    pruned, stats = prune_model(model, pruner, 0.5, X)
    assert pruned(torch.randn(2, 3, 32, 32)).shape == out_before
    assert stats.params_after == count_params(pruned) < stats.params_before
    assert stats.flops_after == count_flops(pruned) < stats.flops_before
    assert pruned.layer2[0].conv2.out_channels == 8


def test_half_sparsity_resnet18_quarter_params_and_flops():
    model = resnet18().eval()
    pruned, stats = prune_model(model, "fpgm", 0.5, X)
    # Halving both input and output channels of every conv leaves ~1/4 of the weights and MACs.
    assert 0.2 < stats.params_ratio <= 0.30
    assert 0.2 < stats.flops_ratio <= 0.30
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert pruned.fc.out_features == 10


def test_higher_sparsity_removes_more():
    ratios = [prune_model(build_model({"blocks": [1, 1], "widths": [16, 32]}), "l1", s, X)[1].params_ratio
              for s in (0.25, 0.5, 0.75)]
    assert ratios[0] > ratios[1] > ratios[2]


def test_l1_keeps_the_largest_norm_filters():
    model = build_model({"blocks": [1], "widths": [4]}).eval()
    conv = model.layer1[0].conv1
    with torch.no_grad():
        for i, scale in enumerate([0.01, 5.0, 0.02, 3.0]):
            conv.weight[i].fill_(scale)
    prune_model(model, "l1", 0.5, X)
    kept = model.layer1[0].conv1.weight  # input channels shrink too (the stem was pruned)
    assert sorted(kept.flatten(1)[:, 0].tolist()) == [3.0, 5.0]


@pytest.mark.parametrize(
    "pruner, sparsity, match",
    [("l0", 0.5, "unknown pruner 'l0'"), ("fpgm", 0.0, "between 0 and 1"), ("fpgm", 1.0, "between 0 and 1"),
     ("l1", -0.2, "between 0 and 1"), ("l1", 1.5, "between 0 and 1")],
)
def test_bad_arguments_fail_clearly(pruner, sparsity, match):
    with pytest.raises(ValueError, match=match):
        validate(pruner, sparsity)
