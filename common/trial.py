"""What every trial script shares: parameters, the session (device, data, cache), the cached dense
baseline, measurement, and the final report to NNI.

Parameters follow torchvision's references + NNI's `merge_parameter`: the argparse defaults are the
single source of truth, the tuner's values override them, and a key the script does not know
fails loudly (a typo in search_space.json must not silently train the default).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from common import cpu, nni_compat
from common.cache import ArtifactCache, default_home
from common.data import DATASETS, ImageSplits, TensorLoader, load_splits, make_loaders
from common.metrics import LatencySetting, measure_latency, size_measurement
from common.models import arch_key, build_model, load_resized
from common.objective import add_budget_arguments, budget_metrics, budgets_from_args, objective, validate_budgets
from common.profiles import PROFILES, Profile, get_profile
from common.pruning import PruneStats, prune_gradually, prune_model, resolve_steps, split_finetune
from common.pruning import validate as validate_pruning
from common.record import LATENCY_BATCHES, Latency, Measurement, comparison_keys, result_keys
from common.train import TrainConfig, evaluate, fit, seed_everything, training_precision


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


def base_parser(description: str) -> argparse.ArgumentParser:
    p = TrialParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--profile", default="smoke", choices=list(PROFILES), help="compute budget (common/profiles.py)")
    p.add_argument("--dataset", default=None, choices=list(DATASETS), help="override the profile's data set")
    p.add_argument("--data-dir", default=None, help="data root (default: $NNI_SUITE_HOME/data)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="imagefolder: train without unreadable images (counted in the log) instead of failing")
    p.add_argument("--cache-dir", default=None, help="artifact cache (default: $NNI_SUITE_HOME/artifacts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--latency-threads", type=int, default=1, help="CPU threads for latency measurement")
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


def parse_params(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags, overridden by the tuner's parameters when running under NNI."""
    import nni
    from nni.utils import merge_parameter

    args = parser.parse_args(argv)
    tuned = nni.get_next_parameter() if in_nni_trial() else None
    if tuned:
        try:
            merge_parameter(args, tuned)  # raises ValueError on keys the script does not define
        except ValueError as err:
            raise ValueError(f"search space parameters {tuned}: {err}") from err
        _check_choices(parser, args, tuned)
    validate_params(parser, args, tuned or {})
    return args


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# dest -> (test, what a valid value is). Checked after the tuner's values are merged (merge_parameter skips
# argparse's `type` and accepts anything for a flag whose default is None), so a bad value fails in seconds,
# naming its flag, instead of after the dense model trained or deep inside NNI.
PARAMETER_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "latency_threads": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "finetune_epochs": (lambda v: v is None or (_is_int(v) and v >= 0), "an integer >= 0 (0 skips fine-tuning)"),
    "TRIAL_BUDGET": (lambda v: v is None or (_is_finite(v) and v > 0), "a finite number > 0"),
    "budget_power": (lambda v: _is_finite(v) and v > 0, "a finite number > 0"),
    "calibration_batches": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "prune_steps": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1"),
}


def _flag(parser: argparse.ArgumentParser, dest: str) -> str:
    return next((a.option_strings[-1] for a in parser._actions if a.dest == dest and a.option_strings), dest)


def validate_params(parser: argparse.ArgumentParser, args: argparse.Namespace, tuned: dict[str, Any]) -> None:
    """Every parameter of every trial, checked in one place before any data is loaded or model trained."""
    for dest, (ok, valid) in PARAMETER_CHECKS.items():
        if hasattr(args, dest) and not ok(getattr(args, dest)):
            source = f" (search space: {dest}={tuned[dest]!r})" if dest in tuned else ""
            raise ValueError(f"{_flag(parser, dest)} must be {valid}, got {getattr(args, dest)!r}{source}")
    validate_budgets(budgets_from_args(args))  # each --max-* budget
    if hasattr(args, "pruner") and hasattr(args, "sparsity"):
        validate_pruning(args.pruner, args.sparsity)
    if hasattr(args, "prune_schedule"):  # the default resolved here, so the result echoes the rounds that ran
        args.prune_steps = resolve_steps(args.prune_schedule, args.prune_steps)
    if hasattr(args, "algorithm") and hasattr(args, "bits"):
        from common.quantization import validate as validate_quantization

        validate_quantization(args.algorithm, args.bits)
    try:
        resolve_device(args.device)
    except RuntimeError as err:  # torch's own message for a malformed device string
        raise ValueError(f"--device {args.device!r}: {err}") from err
    keep = getattr(args, "keep_model", None)
    if keep:  # the deployed model is written after all training: a path that cannot work must fail now
        target = Path(keep).expanduser()
        if target.is_dir() or not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
            raise ValueError(f"--keep-model {keep}: not a writable file path (is {target.parent} a writable folder?)")
    # Whatever else the profile's fine-tune recipe rejects (TrainConfig checks its own fields).
    try:
        Session(args, get_profile(args.profile, dataset=args.dataset), None, None, None, None).finetune_config()
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


class _FromEpoch:
    """`loader` whose reset() (fit's first call) goes to epoch `epoch` instead of 0."""

    def __init__(self, loader: TensorLoader, epoch: int) -> None:
        self.loader, self.epoch = loader, epoch

    def reset(self) -> None:
        self.loader.epoch = self.epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


@dataclass
class Session:
    """Everything a trial needs, resolved once from its parameters."""

    args: argparse.Namespace
    profile: Profile
    device: torch.device
    splits: ImageSplits
    loaders: dict[str, TensorLoader]
    cache: ArtifactCache

    @property
    def in_channels(self) -> int:
        """Channels of the data's images (3 for CIFAR-10, 1 for Fashion-MNIST): every model is built for them."""
        return int(self.splits.train_images.shape[1])

    @property
    def example_input(self) -> torch.Tensor:
        return torch.randn(1, *self.splits.train_images.shape[1:])

    def dense_key(self, arch: str | dict) -> dict[str, Any]:
        p = self.profile
        return {
            "stage": "dense",
            "arch": arch_key(arch),
            "dataset": p.dataset,
            "train_limit": p.train_limit,
            "eval_limit": p.eval_limit,
            "val_fraction": p.val_fraction,
            # Augmentation changes what is trained; named only when not the default, so older entries stay valid.
            **({"crop_pad": p.crop_pad} if p.crop_pad != 4 else {}),
            "num_classes": self.splits.num_classes,
            "data": self.splits.fingerprint,  # what was loaded, not just its name: changed images rebuild
            "seed": self.args.seed,
            "batch_size": p.batch_size,
            "train": asdict(p.train),
            "precision": training_precision(p.train, self.device),  # bf16 only where this CPU has it natively
        }

    def dense_model(self, arch: str | dict = "resnet18", report_epochs: bool = False) -> tuple[nn.Module, dict]:
        """The trained dense model from the artifact cache; trained here (once, under a lock) if missing."""

        def build() -> tuple[dict, dict]:
            seed_everything(self.args.seed)
            model = build_model(arch, self.splits.num_classes, self.in_channels).to(self.device)
            on_epoch = report_intermediate if report_epochs else None
            history = fit(model, self.loaders["train"], self.profile.train, device=self.device,
                          val_loader=self.loaders["val"], on_epoch_end=on_epoch)
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            return state, {"history": history}

        state, info, built = self.cache.get_or_build("dense", self.dense_key(arch), build)
        model = build_model(arch, self.splits.num_classes, self.in_channels)
        load_resized(model, state)
        print(f"dense {arch_key(arch)}: {'trained and cached' if built else 'loaded from cache'}", flush=True)
        return model.to(self.device).eval(), info

    def finetune_config(self, qat: bool = False) -> TrainConfig:
        """The recovery recipe after pruning, or (`qat`) the quantization-aware training recipe."""
        cfg = (self.profile.qat or self.profile.finetune) if qat else self.profile.finetune
        weight = float(getattr(self.args, "distill_weight", 0.0) or 0.0)
        if weight:  # T only with a weight: runs without distillation share one cache entry whatever T says
            cfg = replace(cfg, distill_weight=weight, distill_temperature=float(self.args.distill_temperature))
        budget = getattr(self.args, "TRIAL_BUDGET", None)
        if budget is not None:  # an advisor's budget wins; BOHB's may be fractional
            return replace(cfg, epochs=max(1, round(float(budget))))
        return cfg if self.args.finetune_epochs is None else replace(cfg, epochs=self.args.finetune_epochs)

    def finetune(self, model: nn.Module, report_epochs: bool = True, teacher: nn.Module | None = None,
                 config: TrainConfig | None = None, first_epoch: int = 0) -> dict:
        """Fine-tune `model` with the profile's recipe (or `config`); with `--distill-weight` > 0 it learns from
        `teacher` too. `first_epoch`: the loader epoch to start at, so that a later gradual-pruning round trains on
        fresh batches (as one-shot's later epochs do), not on the first round's again."""
        loader = self.loaders["train"] if first_epoch == 0 else _FromEpoch(self.loaders["train"], first_epoch)
        return fit(model, loader, config or self.finetune_config(), device=self.device,
                   val_loader=self.loaders["val"], on_epoch_end=report_intermediate if report_epochs else None,
                   teacher=teacher)

    def pruned_model(self, arch: str | dict, pruner: str, sparsity: float, report_epochs: bool = False,
                     schedule: str = "oneshot", steps: int = 1) -> tuple[nn.Module, dict]:
        """The cached dense model, pruned and fine-tuned; cached too, so trials sharing this prefix
        (quantization from a 50%-pruned model, the combined pipeline) do not repeat it. `pruner` and `sparsity`
        as parse_params checked them (common.pruning.validate), `schedule` and `steps` as resolve_steps gave them:
        with more than one step, gradual pruning (`_prune_gradually`; its info adds `rounds`)."""
        key = {**self.dense_key(arch), "stage": "pruned", "pruner": pruner, "sparsity": float(sparsity),
               "finetune": asdict(self.finetune_config()),
               "finetune_precision": training_precision(self.finetune_config(), self.device),
               # Named only for more than one round, so one-shot entries stay valid (gradual in 1 step is one-shot).
               **({"prune_schedule": schedule, "prune_steps": steps} if steps > 1 else {})}

        def build() -> tuple[dict, dict]:
            dense, _ = self.dense_model(arch)  # only when the pruned entry is missing: the key does not need it
            seed_everything(self.args.seed)
            if steps > 1:
                return self._prune_gradually(dense, pruner, sparsity, steps, report_epochs)
            pruned, stats = prune_model(copy.deepcopy(dense).cpu(), pruner, sparsity, self.example_input)
            pruned = pruned.to(self.device)
            before = self.accuracy(pruned)
            print(f"pruned {pruner} {sparsity:.2f}: params x{stats.params_ratio:.3f}, FLOPs x{stats.flops_ratio:.3f}, "
                  f"val_acc before fine-tune {before['val_acc']:.4f}", flush=True)
            history = self.finetune(pruned, report_epochs, teacher=dense)  # distils if the key's config says so
            state = {k: v.detach().cpu() for k, v in pruned.state_dict().items()}
            return state, {"stats": asdict(stats), "val_acc_before_finetune": before["val_acc"], "history": history}

        state, info, built = self.cache.get_or_build("pruned", key, build)
        model = load_resized(build_model(arch, self.splits.num_classes, self.in_channels), state)
        how = f" gradual in {steps} steps" if steps > 1 else ""
        print(f"pruned {arch_key(arch)} {pruner} {sparsity}{how}: "
              f"{'built and cached' if built else 'loaded from cache'}", flush=True)
        return model.to(self.device).eval(), info

    def _prune_gradually(self, dense: nn.Module, pruner: str, sparsity: float, steps: int,
                         report_epochs: bool) -> tuple[dict, dict]:
        """`steps` rounds of (prune to the next level of common.pruning.sparsity_schedule, fine-tune), together
        with one-shot's fine-tune steps (split_finetune): the comparison with one-shot is at equal training cost."""
        cfg = split_finetune(self.finetune_config(), steps, len(self.loaders["train"]))
        rounds: list[dict[str, float]] = []
        history: dict[str, list[float]] = {}

        def finetune_round(k: int, model: nn.Module, stats: PruneStats) -> None:
            model.to(self.device)
            before = evaluate(model, self.loaders["val"], device=self.device)["accuracy"]
            print(f"pruning round {k + 1}/{steps}: {pruner} to {stats.sparsity:.3f}, params {stats.params_after:,}, "
                  f"val_acc before fine-tune {before:.4f}", flush=True)
            # Round k trains on loader epochs [k * e, (k + 1) * e): fresh batches, like one-shot's later epochs.
            # Only the last round, at the target sparsity, reports to NNI: an assessor (Medianstop) compares
            # intermediate results step by step with one-shot trials', which are all at the target sparsity.
            h = self.finetune(model, report_epochs and k == steps - 1, teacher=dense, config=cfg,
                              first_epoch=k * cfg.epochs)
            for name, values in h.items():
                history.setdefault(name, []).extend(values)
            rounds.append({"sparsity": stats.sparsity, "params": stats.params_after, "flops": stats.flops_after,
                           "val_acc_before_finetune": before, "val_acc_after_finetune": (h["val_acc"] or [before])[-1]})

        pruned, stats, _ = prune_gradually(copy.deepcopy(dense).cpu(), pruner, sparsity, steps, self.example_input,
                                           finetune_round)
        print(f"pruned {pruner} {sparsity:.2f} in {steps} rounds: params x{stats.params_ratio:.3f}, "
              f"FLOPs x{stats.flops_ratio:.3f}", flush=True)
        state = {k: v.detach().cpu() for k, v in pruned.state_dict().items()}
        # val_acc_before_finetune: after the first cut, the only one made to a model that has not been fine-tuned.
        return state, {"stats": asdict(stats), "val_acc_before_finetune": rounds[0]["val_acc_before_finetune"],
                       "rounds": rounds, "finetune_per_round": asdict(cfg), "history": history}

    def accuracy(self, model: nn.Module) -> dict[str, float]:
        return {
            "val_acc": evaluate(model, self.loaders["val"], device=self.device)["accuracy"],
            "test_acc": evaluate(model, self.loaders["test"], device=self.device)["accuracy"],
        }

    def latency(self, models: dict[str, nn.Module]) -> dict[str, Latency]:
        """Median ms per batch of each model in eager torch on the session's device, measured interleaved."""
        setting = self.latency_setting()
        threads = setting.threads if self.device.type == "cpu" else None
        ms = measure_latency(models, LATENCY_BATCHES, input_shape=tuple(self.splits.train_images.shape[1:]),
                             threads=threads, warmup=setting.warmup, repeats=setting.repeats, device=self.device)
        return {name: Latency(per, str(self.device), "torch fp32", threads) for name, per in ms.items()}

    def describe(self, model: nn.Module) -> Measurement:
        """Size of a model: parameters, FLOPs of one image, bytes of its saved fp32 state dict."""
        return size_measurement(model, tuple(self.splits.train_images.shape[1:]))

    def latency_setting(self) -> LatencySetting:
        return LatencySetting(self.args.latency_threads, self.profile.latency_warmup, self.profile.latency_repeats)

    def measure(self, models: dict[str, nn.Module],
                known_accuracy: dict[str, dict[str, float]] | None = None) -> dict[str, Measurement]:
        """Accuracy, size and eager-torch latency of each model (latencies interleaved in one call);
        `known_accuracy` supplies accuracies already measured (e.g. a reference measured once)."""
        known = known_accuracy or {}
        latency = self.latency(models)
        return {name: replace(self.describe(m), **(known.get(name) or self.accuracy(m)), latency=latency[name])
                for name, m in models.items()}


def start_session(args: argparse.Namespace) -> Session:
    profile = get_profile(args.profile, dataset=args.dataset)
    device = resolve_device(args.device)
    home = default_home()
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else home / "data"
    splits = load_splits(profile.dataset, data_dir, val_fraction=profile.val_fraction,
                         train_limit=profile.train_limit, eval_limit=profile.eval_limit, seed=args.seed,
                         skip_bad_images=args.skip_bad_images, image_size=profile.image_size)
    loaders = make_loaders(splits, profile.batch_size, device=device, seed=args.seed,
                           channels_last=device.type == "cuda", pad=profile.crop_pad)
    cache = ArtifactCache(args.cache_dir or home / "artifacts")
    # Echo what was actually used, not the `None` defaults, in the trial's final report.
    args.dataset, args.data_dir, args.device = profile.dataset, str(data_dir), str(device)
    args.cache_dir = str(cache.root)
    seed_everything(args.seed)
    print(f"session: profile={profile.name} dataset={profile.dataset} device={device} "
          f"train/val/test={len(splits.train_labels)}/{len(splits.val_labels)}/{len(splits.test_labels)}", flush=True)
    return Session(args, profile, device, splits, loaders, cache)


def report_intermediate(epoch: int, metrics: dict[str, float]) -> None:
    import nni

    value = metrics.get("val_acc", metrics.get("train_acc"))
    if value is not None:
        nni.report_intermediate_result(float(value))


def compression_metrics(session: Session, model: nn.Module, dense: nn.Module,
                        dense_acc: dict[str, float] | None = None) -> dict[str, Any]:
    """Accuracy, size and latency of `model` next to the dense model it came from (same run, interleaved)."""
    m = session.measure({"model": model, "dense": dense}, {"dense": dense_acc} if dense_acc else None)
    return {**result_keys(m["model"]), **result_keys(m["dense"], "dense"), **comparison_keys(m["model"], m["dense"])}


def report_final(objective: float, metrics: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Report to NNI with the trial's parameters echoed back.

    NNI 3.0 pairs trials with the wrong hyper-parameters in its REST API, CSV export and web UI
    when trialConcurrency >= 2 (NNI #5693, #5726); the echoed copy is the truth.
    """
    import nni

    if not math.isfinite(float(objective)):
        raise RuntimeError(f"objective is {objective}; refusing to report a non-finite metric")
    # `trial` names the script (prune, quant, ...): the report groups results by it.
    # Every result names the CPU it measured latency on: two machines' numbers are never read as one.
    result = {"default": float(objective), "trial": Path(sys.argv[0]).stem, **cpu.describe(), **_plain(metrics),
              **_plain(vars(args))}
    nni.report_final_result(result)
    if not in_nni_trial():
        print("FINAL " + json.dumps(result, sort_keys=True), flush=True)
    return result


def report_objective(metrics: dict[str, Any], args: argparse.Namespace,
                     accuracy_key: str = "val_acc") -> dict[str, Any]:
    """Report with `default` = the budget-aware objective of `metrics[accuracy_key]` (validation accuracy:
    tuners select on the held-out split; test accuracy is reported beside it) and why it was penalised."""
    budgets = budgets_from_args(args)
    metrics = {**metrics, **budget_metrics(metrics, budgets, args.budget_power)}
    value = objective(metrics, accuracy_key, budgets, args.budget_power, args.budget_penalty)
    return report_final(value, metrics, args)


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
