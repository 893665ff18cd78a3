"""The front of an experiment's trials, its hypervolume against the stated reference, and `pick` for a budget."""

import pytest

from common.front import front, pick, reference_point

OBJ = {"val_acc": "maximize", "latency_ratio_b1": "minimize", "size_ratio": "minimize"}
TRIALS = [
    {"trial_id": "a", "val_acc": 0.90, "test_acc": 0.89, "latency_ratio_b1": 0.5, "size_ratio": 0.30},
    {"trial_id": "b", "val_acc": 0.85, "test_acc": 0.86, "latency_ratio_b1": 0.2, "size_ratio": 0.10},
    {"trial_id": "c", "val_acc": 0.80, "test_acc": 0.95, "latency_ratio_b1": 0.6, "size_ratio": 0.40},  # dominated
    {"trial_id": "d", "val_acc": 0.70, "latency_ratio_b1": float("nan"), "size_ratio": 0.05},  # not measured
]


def test_front_keeps_the_non_dominated_trials_selected_on_validation_not_test():
    f = front(TRIALS, OBJ)
    assert [m["trial_id"] for m in f.members] == ["a", "b"]  # c's test accuracy is the best, irrelevant here
    assert f.candidates == 3 and f.reference == (0.0, 1.0, 1.0)
    # a: 0.9 x 0.5 x 0.7; b: 0.85 x 0.8 x 0.9; overlap 0.85 x 0.5 x 0.7
    assert f.hypervolume == pytest.approx(0.9 * 0.5 * 0.7 + 0.85 * 0.8 * 0.9 - 0.85 * 0.5 * 0.7)
    assert f.summary()["front"][0] == {"trial_id": "a", **{k: TRIALS[0][k] for k in OBJ}, "test_acc": 0.89}


def test_pick_returns_the_most_accurate_within_budget_or_the_closest():
    best, closest = pick(TRIALS, {"latency_ratio_b1": 0.55, "size_ratio": 0.35})
    assert best["trial_id"] == "a" and closest is None
    best, closest = pick(TRIALS, {"latency_ratio_b1": 0.3})
    assert best["trial_id"] == "b"
    best, closest = pick(TRIALS, {"latency_ratio_b1": 0.1, "size_ratio": 0.2})
    assert best is None and closest["trial_id"] == "b"  # 2x over on latency; a is 5x over
    with pytest.raises(ValueError, match="at least one budget"):
        pick(TRIALS, {})


def test_an_absolute_cost_has_no_reference_point():
    with pytest.raises(ValueError, match="latency_ms_b1: a hypervolume needs a ratio"):
        reference_point({"val_acc": "maximize", "latency_ms_b1": "minimize"})
