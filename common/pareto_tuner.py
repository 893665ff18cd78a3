"""A multi-objective NNI tuner: Optuna's NSGA-II through its ask/tell interface, the objectives read from each
trial's final result, so one experiment finds the accuracy / latency / size front.

NNI 3.0 has no multi-objective tuner (its tuners rank trials by one number, `default`); Optuna's
`NSGAIISampler` (Deb et al. 2002) is a well-kept one. Registered from the experiment config like the
REINFORCE tuner:

    tuner:
      codeDirectory: ../..
      className: common.pareto_tuner.ParetoTuner
      classArgs:
        objectives: {val_acc: maximize, latency_ratio_b1: minimize, size_ratio: minimize}
        seed: 0
        population_size: 8

Objectives are result keys (common/record.py) a trial reports: validation accuracy for selection (never test
accuracy, which is reported beside it) and cost keys, best as ratios to the dense model measured in the same
trial (a shared machine's milliseconds drift; ratios do not). A trial that fails, or whose result lacks an
objective or reports a non-finite one, is told to the sampler as failed and logged with its id and the key;
the experiment goes on. `default` stays validation accuracy for NNI's web UI.

Search-space types: choice (flat values), uniform, quniform, loguniform, randint (NNI's upper bound is
exclusive). Reproducible: one seed gives one sequence of parameters for one sequence of results.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from nni.tuner import Tuner

from common.nni_compat import tolerates_stale_ids
from common.record import COST_KEYS

logger = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")
SEARCH_SPACE_TYPES = ("choice", "uniform", "quniform", "loguniform", "randint")
# What a trial reports that a front can be made of: validation accuracies, the costs a budget can cap, and the
# size of weights packed at their bit width (a quantization trial's `packed_size_ratio`).
OBJECTIVE_KEYS = frozenset({"val_acc", "int8_val_acc", "packed_size_ratio", *COST_KEYS})


def validate_objectives(objectives: Any) -> dict[str, str]:
    """The objectives as {result key: direction}; ValueError naming the bad key or direction."""
    if not isinstance(objectives, Mapping) or not objectives:
        raise ValueError("ParetoTuner classArgs.objectives must name at least one result key and its direction, "
                         "e.g. {val_acc: maximize, latency_ratio_b1: minimize}")
    for key, direction in objectives.items():
        if key == "test_acc" or key == "accuracy":
            raise ValueError(f"ParetoTuner objective {key!r}: select on validation accuracy (val_acc); "
                             "test accuracy is reported beside it, never optimised")
        if key not in OBJECTIVE_KEYS:
            raise ValueError(f"ParetoTuner objective {key!r} is not a result key a trial reports; "
                             f"choose from {', '.join(sorted(OBJECTIVE_KEYS))}")
        if direction not in DIRECTIONS:
            raise ValueError(f"ParetoTuner objective {key!r}: direction {direction!r}; choose maximize or minimize")
    return dict(objectives)


def distribution(key: str, spec: Any):
    """The Optuna distribution of one NNI search-space entry."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    kind, value = (spec.get("_type"), spec.get("_value")) if isinstance(spec, dict) else (None, None)
    if kind == "choice" and value and not any(isinstance(v, (dict, list)) for v in value):
        return CategoricalDistribution(list(value))
    if kind in ("uniform", "loguniform") and isinstance(value, list) and len(value) == 2:
        return FloatDistribution(float(value[0]), float(value[1]), log=kind == "loguniform")
    if kind == "quniform" and isinstance(value, list) and len(value) == 3:
        low, high, q = map(float, value)
        steps = math.floor((high - low) / q + 1e-9)  # Optuna needs high - low to be a multiple of the step
        return FloatDistribution(low, low + steps * q, step=q)
    if kind == "randint" and isinstance(value, list) and len(value) == 2:
        return IntDistribution(int(value[0]), int(value[1]) - 1)  # NNI: upper bound exclusive
    raise ValueError(f"ParetoTuner search space key {key!r}: type {kind!r} with {value!r} is not supported; "
                     f"use {', '.join(SEARCH_SPACE_TYPES)} (choice with flat values)")


@tolerates_stale_ids  # a re-delivered parameter id is logged, not fatal (common/nni_compat.py)
class ParetoTuner(Tuner):
    """NSGA-II over an NNI search space, minimising / maximising several result keys at once."""

    def __init__(self, objectives: Mapping[str, str] | None = None, seed: int | None = 0, population_size: int = 8,
                 **unknown: Any) -> None:
        import optuna

        # One line naming the classArg: NNI's dispatcher logs only this, and the web UI says "did not connect".
        if unknown:
            raise ValueError(f"ParetoTuner classArgs {', '.join(sorted(unknown))}: unknown; "
                             "known: objectives, seed, population_size")
        self.objectives = validate_objectives(objectives)
        if isinstance(population_size, bool) or not isinstance(population_size, int) or population_size < 2:
            raise ValueError(f"ParetoTuner population_size must be an integer >= 2, got {population_size!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"ParetoTuner seed must be an integer or null, got {seed!r}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed)
        self.study = optuna.create_study(directions=list(self.objectives.values()), sampler=sampler)
        self.distributions: dict[str, Any] = {}
        self.pending: dict[int, Any] = {}  # parameter_id -> the Optuna trial asked for it
        self.failed: list[tuple[int, str]] = []  # (parameter_id, why) of every trial told as failed

    # ------------------------------------------------------------------------------------ NNI interface

    def update_search_space(self, search_space: dict[str, Any]) -> None:
        if not search_space:
            raise ValueError("ParetoTuner got an empty search space")
        self.distributions = {key: distribution(key, spec) for key, spec in search_space.items()}

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if not self.distributions:
            raise RuntimeError("ParetoTuner has no search space yet")
        trial = self.study.ask(self.distributions)
        self.pending[parameter_id] = trial
        return {key: _plain(value, self.distributions[key]) for key, value in trial.params.items()}

    def receive_trial_result(self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any) -> None:
        # The tuner's own record of what it asked for, not `parameters` (NNI may mis-pair them, #5693).
        trial = self.pending.pop(parameter_id, None)
        if trial is None:
            logger.warning("ParetoTuner: result for unknown parameter id %s ignored", parameter_id)
            return
        values, problem = self.objective_values(value)
        if problem:
            self._fail(parameter_id, trial, problem)
            return
        self.study.tell(trial, values)

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        trial = self.pending.pop(parameter_id, None)  # still pending: the trial ended without a final result
        if trial is not None:
            self._fail(parameter_id, trial, "the trial ended without a final result" if success else "the trial failed")

    def import_data(self, data: list[dict[str, Any]]) -> None:
        """Finished trials of a resumed experiment, added to the study as completed."""
        import optuna

        for record in data:
            params = record.get("parameter", {})
            values, problem = self.objective_values(record.get("value"))
            if problem or set(params) != set(self.distributions):
                continue
            self.study.add_trial(optuna.trial.create_trial(params=params, distributions=self.distributions,
                                                           values=values))

    # -------------------------------------------------------------------------------------------- helpers

    def objective_values(self, result: Any) -> tuple[list[float], str]:
        """The objectives from a final result, or why they cannot be read."""
        if isinstance(result, str):  # NNI hands some tuners the JSON text of the final result
            with contextlib.suppress(ValueError):
                result = json.loads(result)
        if not isinstance(result, Mapping):
            return [], f"the final result is {type(result).__name__} {result!r}, not a dict with the objectives"
        missing = [k for k in self.objectives if k not in result]
        if missing:
            return [], f"the final result lacks objective {', '.join(missing)}"
        values = []
        for key in self.objectives:
            v = result[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return [], f"objective {key} is {v!r}, not a finite number"
            values.append(float(v))
        return values, ""

    def _fail(self, parameter_id: int, trial: Any, why: str) -> None:
        import optuna

        logger.warning("ParetoTuner: trial with parameter id %s told as failed: %s", parameter_id, why)
        self.failed.append((parameter_id, why))
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _plain(value: Any, dist: Any) -> Any:
    """JSON-friendly Python scalars (NNI serialises the parameters); a stepped float without its float noise
    (0.30000000000000004 → 0.3), so that equal values make equal cache keys."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and getattr(dist, "step", None):
        value = round(value, 10)
    return value
