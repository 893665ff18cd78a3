"""Each work-around in common/nni_compat.py: the stock NNI path fails on this torch, ours works.

If a "stock path fails" test starts failing, NNI or torch fixed the problem upstream and the
work-around can go.
"""

import copy

import pytest
import torch

from common.models import build_model
from common.nni_compat import dependency_aware_config, speedup_model

SMALL = {"blocks": [1, 1], "widths": [8, 16]}


def half_masks(model):
    from nni.compression.pruning import L1NormPruner

    config = dependency_aware_config(model, [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}], torch.randn(1, 3, 32, 32))
    pruner = L1NormPruner(model, config)
    _, masks = pruner.compress()
    pruner.unwrap_model()
    return masks


def test_stock_model_speedup_crashes_on_this_torch():
    from nni.compression.speedup import ModelSpeedup

    model = build_model(SMALL).eval()
    masks = half_masks(model)
    with pytest.raises(AttributeError):  # concrete_tracer.py:958 `None.startswith` (torch 2.3 _TensorBase rename)
        ModelSpeedup(model, torch.randn(1, 3, 32, 32), masks).speedup_model()


def test_speedup_model_with_fx_graph_shrinks_and_keeps_outputs():
    model = build_model(SMALL).eval()
    masks = half_masks(model)
    x = torch.randn(4, 3, 32, 32)
    # Reference: the masked dense model (masks applied by hand). With fresh BN statistics (zero shift)
    # a masked channel is exactly zero downstream, so speed-up must compute the same function.
    masked = copy.deepcopy(model)
    for name, target_masks in masks.items():
        module = masked.get_submodule(name)
        for attr, mask in target_masks.items():
            if getattr(module, attr) is not None:  # NNI also returns masks for absent conv biases
                getattr(module, attr).data.mul_(mask)
    with torch.no_grad():
        expected = masked(x)
    speedup_model(model, torch.randn(1, 3, 32, 32), masks)
    assert model.layer1[0].conv1.out_channels == 4 and model.layer2[0].conv2.out_channels == 8
    assert model.fc.in_features == 8
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)


def test_dependency_groups_join_residual_convs():
    model = build_model({"blocks": [2, 1], "widths": [8, 16]})
    config = dependency_aware_config(model, [{"op_types": ["Conv2d"], "sparse_ratio": 0.5}], torch.randn(1, 3, 32, 32))
    group = {c["op_names"][0]: c.get("dependency_group_id") for c in config}
    # stem, block outputs of stage 1 are all summed into one residual stream: one group
    assert group["conv1"] == group["layer1.0.conv2"] == group["layer1.1.conv2"]
    assert group["layer2.0.conv2"] == group["layer2.0.downsample.0"]
    assert group["layer1.0.conv1"] != group["conv1"]  # inner convs are free
