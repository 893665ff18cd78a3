"""Budget-aware objective: what an experiment's `default` metric means, shared by every trial.

Within every budget the objective is the plain accuracy. Over a budget it is penalised the way
MnasNet (Tan et al., 2019) shapes its reward with a hard target (beta = -1 by default):

    default = accuracy * prod_k min(1, budget_k / value_k) ** power

- continuous at the budget boundary and equal to `accuracy` inside all budgets;
- non-increasing in every cost value, non-decreasing in accuracy (so a tuner never prefers a
  bigger net for being bigger);
- scale-free: 10 % over a latency budget costs the same as 10 % over a params budget.
`power` (flag `--budget-power`) sets how hard: 1 means 2x over budget halves the objective.

`--budget-penalty hard` makes the budget a constraint instead of a trade-off: over budget,

    default = accuracy * prod_k min(1, budget_k / value_k) ** power - 1      (always < 0)

so every trial within budget (default = accuracy >= 0) outranks every trial over it, and the
tuner's best trial meets the budget whenever any trial does; among over-budget trials the order
is still the soft one (closer to the budget, more accurate: better).

A budget names a metric the trial reports (`latency_ms_b1`, `params`, ...) and its maximum, so
the experiment config's trialCommand flags (`--max-latency-ms-b1 5 --max-params 2e6`) say
exactly what `default` means; the trial still reports every raw metric beside it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import Any

from common.record import COST_KEYS

# flag dest -> (metric the budget caps, help). One table, so flags, parsing and docs cannot drift.
PENALTIES = ("soft", "hard")
BUDGET_FLAGS: dict[str, tuple[str, str]] = {f"max_{key}": (key, f"max {what}") for key, what in COST_KEYS.items()}


def add_budget_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("budgets", "over a budget, `default` = accuracy * min(1, budget/value)^power")
    for dest, (metric, text) in BUDGET_FLAGS.items():
        group.add_argument(f"--{dest.replace('_', '-')}", dest=dest, type=float, default=None,
                           help=f"{text} (metric `{metric}`); unset: no budget")
    group.add_argument("--budget-power", type=float, default=1.0,
                       help="penalty exponent over budget (MnasNet's -beta); larger is harsher")
    group.add_argument("--budget-penalty", default="soft", choices=PENALTIES,
                       help="soft: a trade-off; hard: any trial within budget outranks every trial over it")


def budgets_from_args(args: argparse.Namespace) -> dict[str, float]:
    """{metric: maximum} for the budget flags that are set."""
    return {metric: getattr(args, dest) for dest, (metric, _) in BUDGET_FLAGS.items()
            if getattr(args, dest, None) is not None}


def budget_flag(metric: str) -> str:
    """The flag that sets a budget on `metric` (`latency_ratio_b1` → `--max-latency-ratio-b1`)."""
    return f"--max-{metric.replace('_', '-')}"


def validate_budgets(budgets: Mapping[str, float]) -> None:
    """Every budget a finite number > 0: checked once, where a trial's parameters enter (common.trial) and by
    `report pick`; ValueError naming the flag."""
    for metric, limit in budgets.items():
        ok = isinstance(limit, (int, float)) and not isinstance(limit, bool) and math.isfinite(limit) and limit > 0
        if not ok:
            raise ValueError(f"{budget_flag(metric)} must be a finite number > 0, got {limit!r}")


def budget_factor(metrics: Mapping[str, Any], budgets: Mapping[str, float] | None, power: float = 1.0) -> float:
    """prod_k min(1, budget_k / value_k) ** power: 1.0 within all budgets, < 1 over any.

    `budgets` as validate_budgets accepts them and `power` > 0: the trial checked both in parse_params.
    """
    budgets = budgets or {}
    factor = 1.0
    for metric, limit in budgets.items():
        if metric not in metrics:
            raise ValueError(f"a budget is set on {metric!r} but the trial reports no such metric; "
                             f"reported: {sorted(metrics)}")
        value = float(metrics[metric])
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"metric {metric!r} = {value!r} cannot be compared with a budget")
        if value > limit:
            factor *= (limit / value) ** power
    return factor


def objective(metrics: Mapping[str, Any], accuracy_key: str = "val_acc",
              budgets: Mapping[str, float] | None = None, power: float = 1.0, penalty: str = "soft") -> float:
    """The experiment's `default`: metrics[accuracy_key], penalised over budget (see module doc)."""
    if penalty not in PENALTIES:
        raise ValueError(f"unknown budget penalty {penalty!r}; choose one of {', '.join(PENALTIES)}")
    if accuracy_key not in metrics:
        raise ValueError(f"accuracy key {accuracy_key!r} not among the metrics {sorted(metrics)}")
    accuracy = float(metrics[accuracy_key])
    if not math.isfinite(accuracy) or accuracy < 0:
        raise ValueError(f"{accuracy_key} = {accuracy!r}; the budget penalty needs a finite accuracy >= 0")
    factor = budget_factor(metrics, budgets, power)
    return accuracy * factor - (1.0 if penalty == "hard" and factor < 1.0 else 0.0)


def budget_metrics(metrics: Mapping[str, Any], budgets: Mapping[str, float] | None,
                   power: float = 1.0) -> dict[str, Any]:
    """What to report beside `default` so the web UI shows why a trial was penalised."""
    factor = budget_factor(metrics, budgets, power)
    return {"budget_factor": factor, "within_budget": factor == 1.0,
            **{f"budget_{metric}": limit for metric, limit in (budgets or {}).items()}}
