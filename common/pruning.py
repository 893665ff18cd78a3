"""Structured (filter) pruning with NNI: one call from a dense model to a physically smaller one.

`prune_model(model, "fpgm", 0.5, example_input)` masks whole conv filters with NNI's pruner,
aligns channels across residual additions, runs NNI's ModelSpeedup so the model really shrinks,
and counts params/FLOPs before and after (Torch-Pruning's habit), leaving fine-tuning to the caller.

`prune_gradually(model, "fpgm", 0.5, 3, example_input, after_round)` reaches the same widths in 3 rounds
(`--prune-schedule gradual --prune-steps 3`), calling `after_round` (the trial fine-tunes there) after each.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from common import params, stagewise
from common.metrics import count_flops, count_params
from common.models import DEFAULT_MODEL, StageOf, stage_function
from common.nni_compat import dependency_aware_config, quiet_nni, speedup_model
from common.train import TrainConfig


@dataclass(frozen=True)
class Pruner:
    """One NNI pruner as `--pruner` names it. Adding one is adding a record to REGISTRY."""

    name: str
    nni_class: str  # in nni.compression.pruning (imported on first use: NNI's import is slow)
    options: Mapping[str, Any] = field(default_factory=dict)  # NNI's keyword arguments beyond (model, config_list)
    per_stage: bool = False  # offered by the per-stage search (common/stagewise.py's search space)

    def build(self, model: nn.Module, config_list: list[dict]) -> Any:
        import nni.compression.pruning as pruning

        return getattr(pruning, self.nni_class)(model, config_list, **self.options)


# Filter-norm / geometric-median criteria need no training data; Taylor and other activation- or
# gradient-based criteria need an evaluator and are not offered here.
REGISTRY: dict[str, Pruner] = {p.name: p for p in (
    Pruner("l1", "L1NormPruner", per_stage=True),
    Pruner("fpgm", "FPGMPruner", per_stage=True),
    Pruner("l2", "L2NormPruner"),
)}
PRUNERS: tuple[str, ...] = tuple(REGISTRY)
PRUNE_SCHEDULES: tuple[str, ...] = ("oneshot", "gradual")
DEFAULT_GRADUAL_STEPS = 3


def add_pruning_arguments(parser: argparse.ArgumentParser) -> None:
    """The pruning flags of every trial that prunes (trials/prune.py, trials/pipeline.py)."""
    parser.add_argument("--pruner", default="fpgm", choices=PRUNERS)
    parser.add_argument("--sparsity", type=float, default=0.5, help="fraction of each conv's filters removed")
    parser.add_argument("--prune-schedule", default="oneshot", choices=PRUNE_SCHEDULES,
                        help="oneshot: prune to --sparsity, then fine-tune; gradual: --prune-steps rounds of "
                             "(prune to the next level, fine-tune), the same fine-tune steps in all")
    parser.add_argument("--prune-steps", type=int, default=None,
                        help=f"pruning rounds (default: 1 for oneshot, {DEFAULT_GRADUAL_STEPS} for gradual)")
    parser.add_argument("--stage-sparsity", default=None, metavar="S1,S2,S3,S4",
                        help="per stage of --model (its record's stages) instead of --sparsity (common/stagewise.py); "
                             "one-shot only")
    params.add_check(parser, check_pruning_arguments)
    params.add_resolver(parser, _resolve_steps)


def check_pruning_arguments(args: argparse.Namespace) -> None:
    """What argparse cannot check (or a tuner's value bypassed): ValueError naming the flag."""
    validate(args.pruner, args.sparsity)
    steps = args.prune_steps
    params.require(steps is None or (params.is_int(steps) and steps >= 1), "--prune-steps", "an integer >= 1", steps)
    resolve_steps(args.prune_schedule, steps)
    if args.stage_sparsity is not None:
        stagewise.parse("stage_sparsity", args.stage_sparsity)
        stage_function(args.model)  # a model whose record names no stages fails here
        if args.prune_schedule != "oneshot":
            raise ValueError("--stage-sparsity prunes one-shot; it cannot be combined with --prune-schedule gradual")


def _resolve_steps(values: dict[str, Any], profile: Any) -> None:
    values["prune_steps"] = resolve_steps(values["prune_schedule"], values["prune_steps"])  # echo what ran


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


def resolve_steps(schedule: str, steps: Any) -> int:
    """The number of pruning rounds `--prune-schedule`/`--prune-steps` ask for (None: the schedule's default);
    ValueError for an unknown schedule, steps that are not an integer >= 1, or oneshot with steps > 1."""
    if schedule not in PRUNE_SCHEDULES:
        raise ValueError(f"unknown --prune-schedule {schedule!r}; choose one of {', '.join(PRUNE_SCHEDULES)}")
    if steps is None:
        return 1 if schedule == "oneshot" else DEFAULT_GRADUAL_STEPS
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"--prune-steps must be an integer >= 1, got {steps!r}")
    if schedule == "oneshot" and steps != 1:
        raise ValueError(f"--prune-steps {steps} needs --prune-schedule gradual (oneshot prunes once)")
    return steps


def sparsity_schedule(sparsity: float, steps: int) -> list[float]:
    """Cumulative fraction of the original filters removed after each round: linear (the kept fraction falls by
    the same amount each round), ending exactly at `sparsity`.

    Linear rather than NNI's AGP cubic (Zhu & Gupta 2017): AGP front-loads the cut for schedules of many small
    steps; with the 2-5 rounds a trial can afford it would remove ~70 % of the filters in round 1, which is
    nearly one-shot pruning."""
    return [sparsity * k / steps for k in range(1, steps)] + [float(sparsity)]


def kept_filters(width: int, sparsity: float) -> int:
    """Filters of a `width`-filter conv that pruning to `sparsity` keeps: NNI removes int(width * ratio)."""
    return width - int(width * sparsity)


def prune_model(
    model: nn.Module,
    pruner: str,
    sparsity: float,
    example_input: torch.Tensor,
    stage_sparsity: Sequence[float] | None = None,
    stage_of: StageOf | None = None,
) -> tuple[nn.Module, PruneStats]:
    """Remove `sparsity` of the filters of every Conv2d (in place) and return the smaller model.

    The classifier (Linear) keeps its outputs; its inputs shrink with the last conv stage. Every
    conv gets the same ratio, the seed report's setting; within a dependency group NNI ranks
    channels by the group's summed criterion so residual branches keep the same channels.
    `pruner` and `sparsity` as `validate` accepts them (a trial checks them in parse_params).
    `stage_sparsity` (four fractions, common/stagewise.py) replaces `sparsity` per stage; `stage_of` says which
    stage a module name is in (the model record's, common/models.py; default ResNet's).
    """
    if stage_sparsity is not None:
        entries = stage_config_list(model, stage_sparsity, stage_of)
        return model, _prune(model, pruner, sparsity, entries, example_input)
    config_list = [{"op_types": ["Conv2d"], "sparse_ratio": float(sparsity)}]
    return model, _prune(model, pruner, sparsity, config_list, example_input)


def stage_config_list(model: nn.Module, stage_sparsity: Sequence[float],
                      stage_of: StageOf | None = None) -> list[dict[str, Any]]:
    """NNI config entries giving each conv its stage's sparsity; the stem follows stage 1 (it feeds stage 1's
    residual sums, whose channels NNI prunes together). Convs at sparsity 0 are left out."""
    stage_of = stage_of or stage_function(DEFAULT_MODEL)
    entries = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            stage = stage_of(name)
            ratio = float(stage_sparsity[0 if stage is None else stage])
            if ratio > 0:
                entries.append({"op_names": [name], "sparse_ratio": ratio})
    if not entries:
        raise ValueError(f"--stage-sparsity {stage_sparsity}: nothing to prune (every stage at 0)")
    return entries


def _prune(model: nn.Module, pruner: str, sparsity: float, config_list: list[dict],
           example_input: torch.Tensor) -> PruneStats:
    shape = (1, *example_input.shape[1:])
    params_before, flops_before = count_params(model), count_flops(model, shape)
    config_list = dependency_aware_config(model, config_list, example_input)

    with quiet_nni():
        nni_pruner = REGISTRY[pruner].build(model, config_list)
        _, masks = nni_pruner.compress()
        nni_pruner.unwrap_model()
    speedup_model(model, example_input, masks)
    return PruneStats(pruner=pruner, sparsity=float(sparsity), params_before=params_before,
                      params_after=count_params(model), flops_before=flops_before,
                      flops_after=count_flops(model, shape))


def prune_gradually(
    model: nn.Module,
    pruner: str,
    sparsity: float,
    steps: int,
    example_input: torch.Tensor,
    after_round: Callable[[int, nn.Module, PruneStats], Any] | None = None,
) -> tuple[nn.Module, PruneStats, list[PruneStats]]:
    """Prune `model` (in place) to `sparsity` in `steps` rounds of `sparsity_schedule`, physically shrinking it
    after each; `after_round(round_index, model, round_stats)` runs after each round (the fine-tune).

    Returns the model, the stats from the dense model to the last round, and each round's stats (`sparsity`:
    the cumulative level reached). Every conv ends with exactly the filters one-shot `prune_model` keeps: a
    round removes, of the filters still there, as many as reach `kept_filters(original width, level)`.

    Our own loop rather than NNI's scheduled pruners (LinearPruner, AGPPruner): those mask a full-size model
    during one NNI-driven training run, so every round would train at dense cost and without this project's
    fine-tune loop (distillation, bf16, the trial's loader); here each round trains the already smaller model.
    """
    widths = {name: m.out_channels for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    shape = (1, *example_input.shape[1:])
    params_before, flops_before = count_params(model), count_flops(model, shape)
    rounds: list[PruneStats] = []
    for k, level in enumerate(sparsity_schedule(sparsity, steps)):
        model.cpu().to(memory_format=torch.contiguous_format)  # the fine-tune may have moved it (GPU, NHWC)
        convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        # NNI removes int(current * ratio) filters; + 0.5 makes that exactly the count we want despite
        # float rounding. Convs joined by a residual sum share both widths, hence the same ratio (NNI asserts it).
        config_list = [{"op_names": [name],
                        "sparse_ratio": (m.out_channels - kept_filters(widths[name], level) + 0.5) / m.out_channels}
                       for name, m in convs.items()]
        stats = _prune(model, pruner, level, config_list, example_input)
        rounds.append(stats)
        if after_round is not None:
            after_round(k, model, stats)
    total = replace(rounds[-1], sparsity=float(sparsity), params_before=params_before, flops_before=flops_before)
    return model, total, rounds


def split_finetune(cfg: TrainConfig, steps: int, batches_per_pass: int) -> TrainConfig:
    """The fine-tune recipe of each of `steps` gradual-pruning rounds: together they train as many optimizer
    steps as `cfg` does once (to within half a step per epoch), so one-shot and gradual are compared at
    equal training cost. Each round is ceil(epochs / steps) epochs, each shorter where needed, with its own LR
    schedule (warm-up and cosine restart per round). `batches_per_pass`: batches in one pass over the data."""
    if steps == 1 or cfg.epochs == 0:
        return cfg
    per_epoch = min(cfg.steps_per_epoch or batches_per_pass, batches_per_pass)  # what fit trains per epoch
    epochs = math.ceil(cfg.epochs / steps)
    # epochs * steps >= cfg.epochs, so a round's epoch never needs more batches than one of cfg's: no cap exceeded.
    return replace(cfg, epochs=epochs, steps_per_epoch=max(1, round(cfg.epochs * per_epoch / (steps * epochs))))
