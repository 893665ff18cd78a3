"""The accuracy / latency / size front of an experiment, its hypervolume, and the best trial for a budget.

Selection reads validation accuracy only (the tuners' split); test accuracy is shown beside it. The reference
point of the hypervolume is stated with it: accuracy 0 and, for each cost, the dense model itself (ratio 1):
the volume a set of trials dominates among models no worse than "useless and as big/slow as dense".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common.pareto import hypervolume, non_dominated

DEFAULT_OBJECTIVES: dict[str, str] = {"val_acc": "maximize", "latency_ratio_b1": "minimize", "size_ratio": "minimize"}
# What `pick` prints of the chosen trial, beside its parameters.
SHOWN = ("val_acc", "test_acc", "latency_ratio_b1", "latency_ratio_b64", "size_ratio", "packed_size_ratio",
         "params_ratio", "portable_avx2", "int8_model")


def reference_point(objectives: Mapping[str, str]) -> tuple[float, ...]:
    """Accuracy 0 for a maximised objective, the dense model (1.0) for a ratio; ValueError otherwise."""
    ref = []
    for key, direction in objectives.items():
        if direction == "maximize":
            ref.append(0.0)
        elif "ratio" in key:
            ref.append(1.0)
        else:
            raise ValueError(f"objective {key}: a hypervolume needs a ratio to the dense model, not an absolute cost")
    return tuple(ref)


def _value(result: Mapping[str, Any], key: str) -> float | None:
    v = result.get(key)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


@dataclass(frozen=True)
class Front:
    objectives: Mapping[str, str]
    reference: tuple[float, ...]
    members: list[Mapping[str, Any]]  # the non-dominated results, best validation accuracy first
    candidates: int  # results with every objective
    hypervolume: float

    def summary(self) -> dict[str, Any]:
        return {"objectives": dict(self.objectives), "reference": list(self.reference), "candidates": self.candidates,
                "hypervolume": self.hypervolume, "front": [{k: m.get(k) for k in ("trial_id", *self.objectives,
                                                                                   "test_acc")} for m in self.members]}


def front(results: Sequence[Mapping[str, Any]], objectives: Mapping[str, str] = DEFAULT_OBJECTIVES) -> Front:
    """The non-dominated results (each a final result, with `trial_id` where known) and their hypervolume."""
    directions = list(objectives.values())
    usable = [r for r in results if all(_value(r, k) is not None for k in objectives)]
    points = [tuple(_value(r, k) for k in objectives) for r in usable]
    ref = reference_point(objectives)
    members = sorted((usable[i] for i in non_dominated(points, directions)), key=lambda r: -(_value(r, "val_acc") or 0))
    return Front(dict(objectives), ref, members, len(usable), hypervolume(points, ref, directions))


def pick(results: Sequence[Mapping[str, Any]], budgets: Mapping[str, float]
         ) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """(the most accurate result on validation within every budget, None) or, when none is, (None, the one
    closest to its budgets: the smallest worst value / budget)."""
    if not budgets:
        raise ValueError("give at least one budget (--max-latency-ratio-b1, --max-size-ratio, ...)")
    measured = [r for r in results if _value(r, "val_acc") is not None
                and all(_value(r, k) is not None for k in budgets)]
    if not measured:
        return None, None
    within = [r for r in measured if all(_value(r, k) <= limit for k, limit in budgets.items())]
    if within:
        return max(within, key=lambda r: _value(r, "val_acc")), None
    return None, min(measured, key=lambda r: max(_value(r, k) / limit for k, limit in budgets.items()))
