"""The budget-aware objective: plain accuracy within budget, a monotone MnasNet-style penalty above it."""

import argparse
import itertools

import pytest

from common.objective import (
    BUDGET_FLAGS,
    add_budget_arguments,
    budget_factor,
    budget_metrics,
    budgets_from_args,
    objective,
    validate_budgets,
)

METRICS = {"val_acc": 0.8, "test_acc": 0.7, "params": 1_000_000, "latency_ms_b1": 4.0, "size_mb": 4.0}


def test_no_budget_is_plain_accuracy():
    assert objective(METRICS, "val_acc", None) == 0.8
    assert objective(METRICS, "test_acc", {}) == 0.7


@pytest.mark.parametrize("budgets", [{"params": 1_000_000}, {"params": 2e6, "latency_ms_b1": 4.0}, {"size_mb": 100}])
def test_within_budget_is_plain_accuracy(budgets):
    assert objective(METRICS, "val_acc", budgets) == 0.8
    assert budget_metrics(METRICS, budgets)["within_budget"] is True


def test_over_budget_follows_the_documented_formula():
    assert objective(METRICS, "val_acc", {"params": 500_000}) == pytest.approx(0.8 * 0.5)
    assert objective(METRICS, "val_acc", {"params": 500_000}, power=2) == pytest.approx(0.8 * 0.25)
    # Several budgets multiply.
    assert objective(METRICS, "val_acc", {"params": 500_000, "latency_ms_b1": 2.0}) == pytest.approx(0.8 * 0.25)
    report = budget_metrics(METRICS, {"params": 500_000})
    assert report == {"budget_factor": pytest.approx(0.5), "within_budget": False, "budget_params": 500_000}


def test_penalty_is_monotone_and_continuous_in_cost():
    budget = {"latency_ms_b1": 5.0}
    latencies = [0.5, 1, 4.99, 5.0, 5.01, 6, 10, 50, 1000]
    for power in (0.5, 1.0, 3.0):
        values = [objective({**METRICS, "latency_ms_b1": lat}, "val_acc", budget, power) for lat in latencies]
        assert all(a >= b for a, b in itertools.pairwise(values)), values
        assert all(v == 0.8 for v, lat in zip(values, latencies, strict=True) if lat <= 5.0)
        assert all(v < 0.8 for v, lat in zip(values, latencies, strict=True) if lat > 5.0)
        just_over = objective({**METRICS, "latency_ms_b1": 5.0 + 1e-9}, "val_acc", budget, power)
        assert just_over == pytest.approx(0.8, abs=1e-9)  # no jump at the boundary


def test_objective_is_monotone_in_accuracy_and_harsher_with_power():
    over = {**METRICS, "params": 3_000_000}
    budget = {"params": 1_000_000}
    values = [objective({**over, "val_acc": a}, "val_acc", budget) for a in (0.1, 0.5, 0.9)]
    assert values == sorted(values)
    assert objective(over, "val_acc", budget, power=2) < objective(over, "val_acc", budget, power=1)


@pytest.mark.parametrize("limit", [0, -5, float("nan"), float("inf"), "2"])
def test_bad_budgets_fail_clearly(limit):
    with pytest.raises(ValueError, match=f"--max-params must be a finite number > 0, got {limit!r}"):
        validate_budgets({"params": limit})
    validate_budgets({"params": 1e6, "latency_ratio_b1": 0.3})  # good ones pass


def test_a_budget_on_a_metric_the_trial_does_not_report_fails_clearly():
    with pytest.raises(ValueError, match="no such metric"):
        objective(METRICS, "val_acc", {"flops": 1.0})


def test_missing_or_bad_accuracy_fails_clearly():
    with pytest.raises(ValueError, match="accuracy key 'acc'"):
        objective(METRICS, "acc", None)
    with pytest.raises(ValueError, match="finite accuracy"):
        objective({"val_acc": float("nan")}, "val_acc", None)


def test_flags_name_their_metric():
    parser = argparse.ArgumentParser()
    add_budget_arguments(parser)
    args = parser.parse_args(["--max-latency-ms-b1", "2.5", "--max-params", "2e6"])
    assert budgets_from_args(args) == {"latency_ms_b1": 2.5, "params": 2e6}
    assert budgets_from_args(parser.parse_args([])) == {}
    assert args.budget_power == 1.0
    # every flag maps to a distinct metric
    assert len({metric for metric, _ in BUDGET_FLAGS.values()}) == len(BUDGET_FLAGS)
    with pytest.raises(ValueError, match="--max-params must"):
        validate_budgets(budgets_from_args(parser.parse_args(["--max-params", "-1"])))


def test_factor_without_budgets_is_one():
    assert budget_factor(METRICS, None) == 1.0


def test_hard_penalty_ranks_every_trial_within_budget_above_every_trial_over_it():
    budget = {"latency_ratio_b1": 0.3}
    within = [{"val_acc": a, "latency_ratio_b1": r} for a, r in ((0.05, 0.3), (0.5, 0.1), (0.0, 0.2))]
    over = [{"val_acc": a, "latency_ratio_b1": r} for a, r in ((1.0, 0.31), (0.99, 0.5), (0.2, 2.0))]
    hard_within = [objective(m, "val_acc", budget, penalty="hard") for m in within]
    hard_over = [objective(m, "val_acc", budget, penalty="hard") for m in over]
    assert hard_within == [0.05, 0.5, 0.0]  # plain accuracy inside the budget
    assert max(hard_over) < 0 <= min(hard_within)
    # Among over-budget trials the order is the soft penalty's.
    soft_over = [objective(m, "val_acc", budget) for m in over]
    assert sorted(range(3), key=hard_over.__getitem__) == sorted(range(3), key=soft_over.__getitem__)
    assert hard_over[0] == pytest.approx(1.0 * 0.3 / 0.31 - 1)


def test_soft_penalty_can_prefer_an_accurate_trial_slightly_over_budget():
    """Why `hard` exists: the soft trade-off may rank a near miss above a weak trial within budget."""
    budget = {"latency_ratio_b1": 0.3}
    near_miss, weak = {"val_acc": 0.9, "latency_ratio_b1": 0.31}, {"val_acc": 0.5, "latency_ratio_b1": 0.2}
    assert objective(near_miss, "val_acc", budget) > objective(weak, "val_acc", budget)
    assert objective(near_miss, "val_acc", budget, penalty="hard") < objective(weak, "val_acc", budget, penalty="hard")
    with pytest.raises(ValueError, match="unknown budget penalty 'strict'"):
        objective(near_miss, "val_acc", budget, penalty="strict")
