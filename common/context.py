"""`StageContext`: the one frozen value every stage (common/stages.py) and every trial measurement takes.

It holds plain values only (no argparse namespace, no session): the data and its labels, where to run, the
artifact cache and what identifies the data in its keys, the recipes, and how latency is measured. A trial
builds it from its parameters with `common.trial.stage_context(start_session(args))`; a test or a bench builds
one directly. Nothing here imports common/trial.py, so the stages can be called without a trial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from common.cache import ArtifactCache
from common.data import TensorLoader
from common.metrics import LatencySetting
from common.models import build_model, check_resolution, load_resized
from common.train import TrainConfig


@dataclass(frozen=True)
class StageContext:
    """What the stages read: data, device, cache, recipes and the latency setting of one trial."""

    loaders: Mapping[str, TensorLoader]  # "train" (training, calibration, QAT), "val", "test"
    labels: Mapping[str, torch.Tensor]  # "val", "test": the loaders' labels in order
    device: torch.device
    cache: ArtifactCache
    data_key: Mapping[str, Any]  # what identifies the data and its batching in a cache key
    num_classes: int
    image_shape: tuple[int, ...]  # (channels, height, width): every model is built for these images
    seed: int
    train: TrainConfig  # the dense model's recipe
    finetune: TrainConfig  # the recovery recipe after pruning (distillation and budget applied)
    qat: TrainConfig  # the quantization-aware training recipe (unused by PTQ)
    latency: LatencySetting
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None  # intermediate results (NNI)

    @property
    def example_input(self) -> torch.Tensor:
        """One random input, for tracing and export. Drawn from torch's global generator on each access, as the
        stages always did: the pruning stage draws it right after seeding, so its cached weights stay the same."""
        return torch.randn(1, *self.image_shape)

    def build(self, arch: str | dict, state: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
        """`arch` for these images and classes, with `state` loaded (resized where pruning narrowed it)."""
        check_resolution(arch, min(self.image_shape[1:]))
        model = build_model(arch, self.num_classes, self.image_shape[0], self.image_shape[-1])
        return model if state is None else load_resized(model, state)
