"""What every trial script shares: parameters, the session (the data loaded, the cache opened) and the one
`StageContext` built from it (common/context.py) that the stages and every measurement take, and the final
report to NNI. The cached stages themselves are in common/stages.py.

Parameters follow torchvision's references + NNI's `merge_parameter`: the argparse defaults are the
single source of truth, the tuner's values override them, and a key the script does not know
fails loudly (a typo in search_space.json must not silently train the default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from common import cpu, models, nni_compat, params, stagewise
from common.cache import ArtifactCache, default_home
from common.context import StageContext
from common.data import DATASETS, ImageSplits, TensorLoader, load_splits, make_loaders, measured_subset
from common.metrics import LatencySetting, contention, measure_latency, size_measurement
from common.objective import add_budget_arguments, budget_metrics, budgets_from_args, objective, validate_budgets
from common.profiles import PROFILES, Profile, get_profile
from common.record import LATENCY_BATCHES, Latency, Measurement, comparison_keys, result_keys
from common.train import TrainConfig, evaluate, seed_everything


class BadArgumentsError(SystemExit):
    """argparse's exit (status 2), carrying its message so that run_main can end trial.log with it."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


class TrialParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # What argparse prints (usage + error on stderr, exit 2), but the reason travels with the exit:
        # under NNI stderr goes to trial.stderr, and trial.log must still say why the trial failed.
        self.print_usage(sys.stderr)
        reason = f"{self.prog}: error: {message}"
        print(reason, file=sys.stderr, flush=True)
        raise BadArgumentsError(reason)


def base_parser(description: str, finetune: bool = True) -> argparse.ArgumentParser:
    """The flags every trial shares; `finetune=False` (a trial that trains from scratch and fine-tunes nothing:
    baseline, NAS) leaves out the fine-tuning flags, so that it cannot accept and echo values it ignores."""
    p = TrialParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--profile", default="smoke", choices=list(PROFILES), help="compute budget (common/profiles.py)")
    p.add_argument("--dataset", default=None, choices=list(DATASETS), help="override the profile's data set")
    p.add_argument("--data-dir", default=None, help="data root (default: $NNI_SUITE_HOME/data)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="imagefolder: train without unreadable images (counted in the log) instead of failing")
    p.add_argument("--cache-dir", default=None, help="artifact cache (default: $NNI_SUITE_HOME/artifacts)")
    p.add_argument("--seed", type=int, default=0)
    models.add_model_arguments(p)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--latency-threads", type=int, default=1, help="CPU threads for latency measurement")
    if finetune:
        p.add_argument("--finetune-epochs", type=int, default=None, help="override the profile's fine-tune epochs")
        # Hyperband/BOHB add NNI's key `TRIAL_BUDGET` to every parameter set; this dest lets merge_parameter accept it.
        p.add_argument("--trial-budget", dest="TRIAL_BUDGET", type=float, default=None,
                       help="multi-fidelity budget = fine-tune epochs (rounded, >= 1); overrides --finetune-epochs")
        p.add_argument("--distill-weight", type=float, default=0.0,
                       help="fine-tuning after pruning and QAT/LSQ/DoReFa learn from the dense model: "
                            "loss = (1-w) CE + w T^2 KL; 0 = off")
        p.add_argument("--distill-temperature", type=float, default=4.0, help="softmax temperature T of distillation")
    add_budget_arguments(p)  # every experiment can say what `default` means under a budget (common/objective.py)
    return p


def in_nni_trial() -> bool:
    import nni

    return nni.get_experiment_id() != "STANDALONE"


class FrozenParams(argparse.Namespace):
    """What a trial runs, parsed once: every default resolved (from the profile where it has one), then frozen.
    The final result echoes it; nothing assigns to it afterwards."""

    def __init__(self, **values: Any) -> None:
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key: str, value: Any) -> NoReturn:
        raise AttributeError(f"trial parameters are frozen after parsing; {key!r} cannot change "
                             "(resolve it in common.trial.parse_params)")

    def __delattr__(self, key: str) -> NoReturn:
        raise AttributeError(f"trial parameters are frozen after parsing; {key!r} cannot be removed")


def parse_params(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> FrozenParams:
    """Command-line flags, overridden by the tuner's parameters when running under NNI, checked, with every
    default resolved, frozen."""
    import nni
    from nni.utils import merge_parameter

    args = parser.parse_args(argv)
    nni_compat.resilient_trial_channel()  # a reset connection to the manager no longer kills the trial (#27)
    tuned = nni.get_next_parameter() if in_nni_trial() else None
    if tuned:
        tuned = params.flatten_nested_choices(tuned)  # a nested choice's parameters are flags too
        tuned = stagewise.fold_tuner_parameters(tuned)  # stage{k}_* keys -> the --stage-* flags' values
        try:
            merge_parameter(args, tuned)  # raises ValueError on keys the script does not define
        except ValueError as err:
            raise ValueError(f"search space parameters {tuned}: {err}") from err
        _check_choices(parser, args, tuned)
    validate_params(parser, args, tuned or {})
    return FrozenParams(**_resolved(parser, args))


def _resolved(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The parameters with the defaults that depend on the profile, the machine or the environment filled in:
    the echoed result says what ran, not `None`."""
    profile = get_profile(args.profile, dataset=args.dataset)
    home = default_home()
    values = dict(vars(args))
    values |= {"dataset": profile.dataset, "device": str(resolve_device(args.device)),
               "data_dir": str(Path(args.data_dir).expanduser() if args.data_dir else home / "data"),
               "cache_dir": str(Path(args.cache_dir).expanduser() if args.cache_dir else home / "artifacts")}
    params.resolve(parser, values, profile)  # each stage's defaults (common/params.py)
    return values


# The base parser's own parameters; each stage checks its own (common/params.py, registered by add_*_arguments).
PARAMETER_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: params.is_int(v) and v >= 0, "an integer >= 0"),
    "latency_threads": (lambda v: params.is_int(v) and v >= 1, "an integer >= 1"),
    "finetune_epochs": (lambda v: v is None or (params.is_int(v) and v >= 0), "an integer >= 0 (0 skips fine-tuning)"),
    "TRIAL_BUDGET": (lambda v: v is None or (params.is_finite(v) and v > 0), "a finite number > 0"),
    "budget_power": (lambda v: params.is_finite(v) and v > 0, "a finite number > 0"),
}


def _flag(parser: argparse.ArgumentParser, dest: str) -> str:
    return next((a.option_strings[-1] for a in parser._actions if a.dest == dest and a.option_strings), dest)


def validate_params(parser: argparse.ArgumentParser, args: argparse.Namespace, tuned: dict[str, Any]) -> None:
    """Every parameter of every trial, checked in one place before any data is loaded or model trained."""
    for dest, (ok, valid) in PARAMETER_CHECKS.items():
        if hasattr(args, dest) and not ok(getattr(args, dest)):
            source = f" (search space: {dest}={tuned[dest]!r})" if dest in tuned else ""
            raise ValueError(f"{_flag(parser, dest)} must be {valid}, got {getattr(args, dest)!r}{source}")
    try:
        validate_budgets(budgets_from_args(args))  # each --max-* budget
        params.run_checks(parser, args)  # what each stage's add_*_arguments declared
    except ValueError as err:  # name the search-space value behind a bad flag
        named = [k for k in tuned if _flag(parser, k) in str(err)]
        source = f" (search space: {', '.join(f'{k}={tuned[k]!r}' for k in named)})" if named else ""
        raise ValueError(f"{err}{source}") from None
    try:
        resolve_device(args.device)
    except RuntimeError as err:  # torch's own message for a malformed device string
        raise ValueError(f"--device {args.device!r}: {err}") from err
    # Whatever else the profile's fine-tune recipe rejects (TrainConfig checks its own fields).
    try:
        finetune_config(args, get_profile(args.profile, dataset=args.dataset))
    except ValueError as err:
        raise ValueError(f"fine-tune parameters (--finetune-epochs, --trial-budget, ...): {err}") from err


def _check_choices(parser: argparse.ArgumentParser, args: argparse.Namespace, tuned: dict[str, Any]) -> None:
    # merge_parameter checks names and types but not argparse `choices`; a search space value the
    # script cannot handle must fail here, with the same message a bad flag gets.
    for action in parser._actions:
        if action.dest in tuned and action.choices is not None and getattr(args, action.dest) not in action.choices:
            raise ValueError(
                f"search space gave {action.dest}={getattr(args, action.dest)!r}; valid: {list(action.choices)}"
            )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} requested but CUDA is not available on this machine")
    return device


def finetune_config(args: argparse.Namespace, profile: Profile, qat: bool = False) -> TrainConfig:
    """The recovery recipe after pruning, or (`qat`) the quantization-aware training recipe, with the trial's
    --finetune-epochs, advisor budget and distillation flags applied."""
    cfg = (profile.qat or profile.finetune) if qat else profile.finetune
    weight = float(getattr(args, "distill_weight", 0.0) or 0.0)
    if weight:  # T only with a weight: runs without distillation share one cache entry whatever T says
        cfg = replace(cfg, distill_weight=weight, distill_temperature=float(args.distill_temperature))
    budget = getattr(args, "TRIAL_BUDGET", None)
    if budget is not None:  # an advisor's budget wins; BOHB's may be fractional
        return replace(cfg, epochs=max(1, round(float(budget))))
    finetune_epochs = getattr(args, "finetune_epochs", None)
    return cfg if finetune_epochs is None else replace(cfg, epochs=finetune_epochs)


@dataclass(frozen=True)
class Session:
    """What a trial loaded and opened from its parameters: the data, its loaders and the artifact cache.
    Only `stage_context` reads it: the stages and the measurements take the `StageContext` it builds."""

    args: argparse.Namespace
    profile: Profile
    device: torch.device
    splits: ImageSplits
    loaders: dict[str, TensorLoader]
    cache: ArtifactCache
    # What was loaded, where `splits` measures a subset of it (Profile.measure_limit): the cache keys name the data
    # loaded, so a search profile's trials find the models its parent profile cached.
    fingerprint: str | None = None

    def data_key(self) -> dict[str, Any]:
        """What identifies the loaded data and how it is batched, in every cached stage's key."""
        p = self.profile
        return {
            "dataset": p.dataset,
            "train_limit": p.train_limit,
            "eval_limit": p.eval_limit,
            "val_fraction": p.val_fraction,
            # Augmentation changes what is trained; named only when not the default, so older entries stay valid.
            **({"crop_pad": p.crop_pad} if p.crop_pad != 4 else {}),
            "num_classes": self.splits.num_classes,
            "data": self.fingerprint or self.splits.fingerprint,  # what was loaded: changed images rebuild
            "batch_size": p.batch_size,
        }

    def finetune_config(self, qat: bool = False) -> TrainConfig:
        return finetune_config(self.args, self.profile, qat)


def start_session(args: argparse.Namespace, profile: Profile | None = None) -> Session:
    """Load the data and open the cache the parameters name; `profile` replaces `--profile`'s (a bench's
    variant of one, e.g. more latency repeats)."""
    profile = get_profile(args.profile, dataset=args.dataset) if profile is None else profile
    device = resolve_device(args.device)
    data_dir = Path(args.data_dir)
    loaded = load_splits(profile.dataset, data_dir, val_fraction=profile.val_fraction,
                         train_limit=profile.train_limit, eval_limit=profile.eval_limit, seed=args.seed,
                         skip_bad_images=args.skip_bad_images, image_size=profile.image_size)
    splits = measured_subset(loaded, profile.measure_limit, args.seed)
    loaders = make_loaders(splits, profile.batch_size, device=device, seed=args.seed,
                           channels_last=device.type == "cuda", pad=profile.crop_pad)
    cache = ArtifactCache(args.cache_dir)
    if not models.is_registered(args.model):  # a user's model: every step it must survive, tried before training
        models.check_model(args.model, splits.num_classes, tuple(splits.train_images.shape[1:]))
    seed_everything(args.seed)
    print(f"session: profile={profile.name} dataset={profile.dataset} device={device} "
          f"train/val/test={len(splits.train_labels)}/{len(splits.val_labels)}/{len(splits.test_labels)}", flush=True)
    return Session(args, profile, device, splits, loaders, cache, loaded.fingerprint)


def stage_context(session: Session) -> StageContext:
    """The one value the stages and the measurements take, from what the trial loaded and its parameters."""
    s = session
    return StageContext(loaders=s.loaders, labels={"val": s.splits.val_labels, "test": s.splits.test_labels},
                        device=s.device, cache=s.cache, data_key=s.data_key(), num_classes=s.splits.num_classes,
                        image_shape=tuple(s.splits.train_images.shape[1:]), seed=s.args.seed,
                        train=models.dense_recipe(s.args.model, s.profile.train), finetune=s.finetune_config(),
                        qat=s.finetune_config(qat=True),
                        latency=LatencySetting(s.args.latency_threads, s.profile.latency_warmup,
                                               s.profile.latency_repeats),
                        on_epoch_end=report_intermediate)



def deployment_options(args: argparse.Namespace) -> dict[str, Any]:
    """The deployment flags of `add_quantization_arguments`, as quantize_deploy_measure's keywords; the
    agreement gate defaults to the profile's (resolved by parse_params), and the value used is echoed."""
    return {"int8_scheme": args.int8_scheme, "runtime": args.runtime, "min_agreement": args.min_agreement,
            "keep_model": getattr(args, "keep_model", None), "portability_check": args.portability_check,
            "portability_images": args.portability_images}


def report_intermediate(epoch: int, metrics: dict[str, float]) -> None:
    import nni

    value = metrics.get("val_acc", metrics.get("train_acc"))
    if value is not None:
        nni.report_intermediate_result(float(value))


def accuracy(ctx: StageContext, model: nn.Module) -> dict[str, float]:
    return {
        "val_acc": evaluate(model, ctx.loaders["val"], device=ctx.device)["accuracy"],
        "test_acc": evaluate(model, ctx.loaders["test"], device=ctx.device)["accuracy"],
    }


def eager_latency(ctx: StageContext, models: dict[str, nn.Module]) -> tuple[dict[str, Latency], dict[str, Any]]:
    """Median ms per batch of each model in eager torch on the context's device, measured interleaved, and how
    busy the machine was meanwhile (common.metrics.contention, taken right after)."""
    setting = ctx.latency
    threads = setting.threads if ctx.device.type == "cpu" else None
    ms = measure_latency(models, LATENCY_BATCHES, input_shape=ctx.image_shape, threads=threads,
                         warmup=setting.warmup, repeats=setting.repeats, device=ctx.device)
    load = contention(threads)
    return {name: Latency(per, str(ctx.device), "torch fp32", threads) for name, per in ms.items()}, load


def measure(ctx: StageContext, models: dict[str, nn.Module], known_accuracy: dict[str, dict[str, float]] | None = None
            ) -> tuple[dict[str, Measurement], dict[str, Any]]:
    """Accuracy, size (params, FLOPs, state-dict bytes) and eager-torch latency of each model (latencies
    interleaved in one call), and the machine's load while timing; `known_accuracy` supplies accuracies
    already measured (e.g. a reference measured once)."""
    known = known_accuracy or {}
    latency, load = eager_latency(ctx, models)
    measured = {name: replace(size_measurement(m, ctx.image_shape), **(known.get(name) or accuracy(ctx, m)),
                              latency=latency[name]) for name, m in models.items()}
    return measured, load


def compression_metrics(ctx: StageContext, model: nn.Module, dense: nn.Module,
                        dense_acc: dict[str, float] | None = None) -> dict[str, Any]:
    """Accuracy, size and latency of `model` next to the dense model it came from (same run, interleaved)."""
    m, load = measure(ctx, {"model": model, "dense": dense}, {"dense": dense_acc} if dense_acc else None)
    return {**result_keys(m["model"]), **result_keys(m["dense"], "dense"), **comparison_keys(m["model"], m["dense"]),
            **load}


TRIAL_KINDS = ("baseline", "prune", "quant", "nas", "pipeline")


def report_final(objective: float, metrics: dict[str, Any], args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """Report to NNI with the trial's parameters echoed back.

    NNI 3.0 pairs trials with the wrong hyper-parameters in its REST API, CSV export and web UI
    when trialConcurrency >= 2 (NNI #5693, #5726); the echoed copy is the truth.
    """
    import nni

    if kind not in TRIAL_KINDS:
        raise ValueError(f"unknown trial kind {kind!r}; one of {', '.join(TRIAL_KINDS)}")
    if not math.isfinite(float(objective)):
        raise RuntimeError(f"objective is {objective}; refusing to report a non-finite metric")
    # `trial` names the kind of trial (declared by the script, not its file name): the report groups results by it.
    # Every result names the CPU it measured latency on: two machines' numbers are never read as one.
    result = {"default": float(objective), "trial": kind, **cpu.describe(), **_plain(metrics),
              **_plain(vars(args)), "trial_seconds": trial_seconds()}
    nni.report_final_result(result)
    if not in_nni_trial():
        print("FINAL " + json.dumps(result, sort_keys=True), flush=True)
    return result


def report_objective(metrics: dict[str, Any], args: argparse.Namespace, kind: str,
                     accuracy_key: str = "val_acc") -> dict[str, Any]:
    """Report with `default` = the budget-aware objective of `metrics[accuracy_key]` (validation accuracy:
    tuners select on the held-out split; test accuracy is reported beside it) and why it was penalised."""
    budgets = budgets_from_args(args)
    metrics = {**metrics, **budget_metrics(metrics, budgets, args.budget_power)}
    value = objective(metrics, accuracy_key, budgets, args.budget_power, args.budget_penalty)
    return report_final(value, metrics, args, kind)


def trial_seconds() -> float:
    """Wall time since this process started (imports, data and cache included): what a trial costs."""
    import psutil

    return round(time.time() - psutil.Process().create_time(), 1)


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (Path, os.PathLike)):
            v = str(v)
        out[k] = v
    return out


def _summarise_failure(reason: str) -> None:
    summary = f"TRIAL FAILED: {reason}"
    print(summary, file=sys.stderr, flush=True)
    if in_nni_trial():  # NNI 3.0 logs stdout to trial.log but stderr (the traceback) to trial.stderr
        print(summary, flush=True)


def run_main(main: Callable[[], Any]) -> None:
    """Run a trial's main(); any failure (an exception, a bad flag, an exit) ends the trial FAILED with its
    reason as the log's last line."""
    nni_compat.quiet()  # before main() first imports nni: its import-time warnings stay out of trial.log
    try:
        main()
    except SystemExit as err:
        if err.code not in (0, None):  # 0: --help
            _summarise_failure(err.message if isinstance(err, BadArgumentsError) else f"exit status {err.code}")
        raise
    except KeyboardInterrupt:
        _summarise_failure("interrupted (KeyboardInterrupt)")
        raise
    except Exception as err:  # noqa: BLE001 - re-raised after a readable summary
        _summarise_failure(f"{type(err).__name__}: {err}")
        raise
