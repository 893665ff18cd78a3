"""Structured (filter) pruning with NNI: one call from a dense model to a physically smaller one.

`prune_model(model, "fpgm", 0.5, example_input)` masks whole conv filters with NNI's pruner,
aligns channels across residual additions, runs NNI's ModelSpeedup so the model really shrinks,
and counts params/FLOPs before and after (Torch-Pruning's habit), leaving fine-tuning to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from common.metrics import count_flops, count_params
from common.nni_compat import dependency_aware_config, quiet_nni, speedup_model


def _pruner_classes() -> dict[str, type]:
    from nni.compression.pruning import FPGMPruner, L1NormPruner, L2NormPruner

    # Filter-norm / geometric-median criteria need no training data; Taylor and other
    # activation- or gradient-based criteria need an evaluator and are not offered here.
    return {"l1": L1NormPruner, "l2": L2NormPruner, "fpgm": FPGMPruner}


PRUNERS: tuple[str, ...] = ("l1", "l2", "fpgm")


@dataclass(frozen=True)
class PruneStats:
    pruner: str
    sparsity: float
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int

    @property
    def params_ratio(self) -> float:
        return self.params_after / self.params_before

    @property
    def flops_ratio(self) -> float:
        return self.flops_after / self.flops_before


def validate(pruner: str, sparsity: float) -> None:
    if pruner not in PRUNERS:
        raise ValueError(f"unknown pruner {pruner!r}; choose one of {', '.join(PRUNERS)}")
    if not 0.0 < float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be strictly between 0 and 1 (fraction of filters removed), got {sparsity}")


def prune_model(
    model: nn.Module,
    pruner: str,
    sparsity: float,
    example_input: torch.Tensor,
) -> tuple[nn.Module, PruneStats]:
    """Remove `sparsity` of the filters of every Conv2d (in place) and return the smaller model.

    The classifier (Linear) keeps its outputs; its inputs shrink with the last conv stage. Every
    conv gets the same ratio, the seed report's setting; within a dependency group NNI ranks
    channels by the group's summed criterion so residual branches keep the same channels.
    `pruner` and `sparsity` as `validate` accepts them (a trial checks them in parse_params).
    """
    shape = tuple(example_input.shape[1:])
    params_before, flops_before = count_params(model), count_flops(model, (1, *shape))
    config_list = [{"op_types": ["Conv2d"], "sparse_ratio": float(sparsity)}]
    config_list = dependency_aware_config(model, config_list, example_input)

    with quiet_nni():
        nni_pruner = _pruner_classes()[pruner](model, config_list)
        _, masks = nni_pruner.compress()
        nni_pruner.unwrap_model()
    speedup_model(model, example_input, masks)

    stats = PruneStats(
        pruner=pruner,
        sparsity=float(sparsity),
        params_before=params_before,
        params_after=count_params(model),
        flops_before=flops_before,
        flops_after=count_flops(model, (1, *shape)),
    )
    return model, stats
