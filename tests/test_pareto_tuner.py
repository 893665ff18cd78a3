"""The multi-objective tuner (Optuna's NSGA-II behind NNI's Tuner interface) and the front / hypervolume maths."""

import logging
import math

import numpy as np
import pytest

from common.pareto import hypervolume, non_dominated
from common.pareto_tuner import ParetoTuner

ZDT_SPACE = {f"x{i}": {"_type": "uniform", "_value": [0.0, 1.0]} for i in range(6)}
ZDT_REF = (1.1, 2.0)  # random designs rarely reach below f2 = 2; measured HV: NSGA-II 0.75-1.1, random 0.14-0.34


def zdt1(p: dict[str, float]) -> dict[str, float]:
    """ZDT1 (Zitzler, Deb, Thiele 2000), both minimised; its front is f2 = 1 - sqrt(f1) at x1..x5 = 0."""
    x = [p[f"x{i}"] for i in range(6)]
    g = 1 + 9 * sum(x[1:]) / 5
    return {"latency_ratio_b1": x[0], "size_ratio": g * (1 - math.sqrt(x[0] / g))}


def run(tuner: ParetoTuner, evaluations: int) -> list[tuple[float, float]]:
    tuner.update_search_space(ZDT_SPACE)
    points = []
    for pid in range(evaluations):
        result = zdt1(tuner.generate_parameters(pid))
        tuner.receive_trial_result(pid, {}, {"default": 0.0, **result})
        points.append((result["latency_ratio_b1"], result["size_ratio"]))
    return points


def objectives() -> dict[str, str]:
    return {"latency_ratio_b1": "minimize", "size_ratio": "minimize"}


def test_nsga2_finds_a_clearly_larger_hypervolume_than_random_search_at_equal_evaluations():
    directions = ("minimize", "minimize")
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        found = run(ParetoTuner(objectives(), seed=seed, population_size=12), 120)
        random = [tuple(zdt1({f"x{i}": v for i, v in enumerate(rng.random(6))}).values()) for _ in range(120)]
        hv_nsga, hv_random = hypervolume(found, ZDT_REF, directions), hypervolume(random, ZDT_REF, directions)
        assert hv_nsga > 2 * hv_random, (seed, hv_nsga, hv_random)


def test_same_seed_same_parameters():
    first = ParetoTuner(objectives(), seed=3, population_size=4)
    second = ParetoTuner(objectives(), seed=3, population_size=4)
    assert run(first, 12) == run(second, 12)


def test_every_search_space_type_used_here_is_sampled_within_its_range():
    tuner = ParetoTuner({"val_acc": "maximize"}, seed=0, population_size=4)
    tuner.update_search_space({
        "pruner": {"_type": "choice", "_value": ["fpgm", "l1"]},
        "bits": {"_type": "choice", "_value": [4, 8]},
        "s1": {"_type": "quniform", "_value": [0.0, 0.8, 0.1]},
        "s2": {"_type": "uniform", "_value": [0.2, 0.8]},
        "steps": {"_type": "randint", "_value": [1, 4]},
    })
    for pid in range(20):
        p = tuner.generate_parameters(pid)
        assert p["pruner"] in ("fpgm", "l1") and p["bits"] in (4, 8) and isinstance(p["bits"], int)
        assert 0.0 <= p["s1"] <= 0.8 and abs(p["s1"] * 10 - round(p["s1"] * 10)) < 1e-9
        assert 0.2 <= p["s2"] <= 0.8 and p["steps"] in (1, 2, 3)
        tuner.receive_trial_result(pid, p, {"default": 0.5, "val_acc": 0.5})


@pytest.mark.parametrize("bad, message", [
    ({}, "must name at least one result key"),
    ({"val_accuracy": "maximize"}, "objective 'val_accuracy' is not a result key"),
    ({"val_acc": "max"}, "direction 'max'"),
    ({"test_acc": "maximize"}, "select on validation accuracy"),
])
def test_a_bad_objective_config_fails_at_creation_naming_the_key(bad, message):
    with pytest.raises(ValueError, match=message):
        ParetoTuner(bad)


@pytest.mark.parametrize("args, named", [({"population": 4}, "classArgs population: unknown"),
                                         ({"seed": "0"}, "seed must be an integer or null, got '0'")])
def test_a_bad_class_arg_fails_at_creation_naming_it(args, named):
    with pytest.raises(ValueError, match=named):
        ParetoTuner({"val_acc": "maximize"}, **args)


def test_an_unsupported_search_space_type_is_named():
    with pytest.raises(ValueError, match="key 'w': type 'normal'"):
        ParetoTuner({"val_acc": "maximize"}).update_search_space({"w": {"_type": "normal", "_value": [0, 1]}})


def test_missing_non_finite_and_failed_results_are_told_as_failed_and_logged(caplog):
    import optuna

    tuner = ParetoTuner(objectives(), seed=0, population_size=4)
    tuner.update_search_space(ZDT_SPACE)
    for pid in range(5):
        tuner.generate_parameters(pid)
    with caplog.at_level(logging.WARNING):
        tuner.receive_trial_result(0, {}, {"default": 0.1, "latency_ratio_b1": 0.5})  # no size_ratio
        tuner.receive_trial_result(1, {}, {"default": 0.1, "latency_ratio_b1": float("nan"), "size_ratio": 1.0})
        tuner.receive_trial_result(2, {}, 0.7)  # another kind of experiment's plain number
        tuner.trial_end(3, success=False)
        tuner.receive_trial_result(4, {}, {"default": 0.1, "latency_ratio_b1": 0.5, "size_ratio": 0.5})
        tuner.trial_end(4, success=True)
    states = [t.state for t in tuner.study.trials]
    assert states == [optuna.trial.TrialState.FAIL] * 4 + [optuna.trial.TrialState.COMPLETE]
    assert [pid for pid, _ in tuner.failed] == [0, 1, 2, 3]
    assert "parameter id 0" in caplog.text and "lacks objective size_ratio" in caplog.text
    assert "objective latency_ratio_b1 is nan" in caplog.text and "parameter id 3" in caplog.text
    tuner.generate_parameters(5)  # the experiment goes on


def test_hypervolume_and_front_against_hand_computed_values():
    directions = ("maximize", "minimize")
    points = [(0.9, 0.5), (0.8, 0.2), (0.7, 0.6), (0.9, 0.5)]  # (0.7, 0.6) dominated by both others
    assert non_dominated(points, directions) == [0, 1, 3]
    # Reference accuracy 0, latency 1: union of [0, 0.9] x [0.5, 1] and [0, 0.8] x [0.2, 1].
    assert hypervolume(points, (0.0, 1.0), directions) == pytest.approx(0.9 * 0.5 + 0.8 * 0.3)
    cube = hypervolume([(0.5, 0.5, 0.5)], (1.0, 1.0, 1.0), ("minimize",) * 3)
    assert cube == pytest.approx(0.125)
    two = hypervolume([(0.5, 0.0, 0.0), (0.0, 0.5, 0.5)], (1.0, 1.0, 1.0), ("minimize",) * 3)
    assert two == pytest.approx(0.5 + 0.25 - 0.125)
    assert hypervolume([(1.2, 0.1)], (1.0, 1.0), ("minimize", "minimize")) == 0.0
