"""The REINFORCE tuner: valid samples, a policy that learns, and NNI's edge cases (failures, mis-pairing, resume)."""

import json

import numpy as np
import pytest

from common.nas import SMOKE_RESTRICTION, search_space_json, validate_candidate
from common.rl_tuner import ReinforceTuner

SPACE = search_space_json("full")
BEST = {"stages": 2, "blocks": 1, "width": 32, "activation": "tanh", "kernel_size": 5}


def reward(params: dict) -> float:
    """A toy landscape: 1 at BEST, minus 0.2 per key that differs."""
    return 1.0 - 0.2 * sum(params[k] != v for k, v in BEST.items())


def run(tuner: ReinforceTuner, trials: int, sign: float = 1.0) -> None:
    for i in range(trials):
        params = tuner.generate_parameters(i)
        tuner.receive_trial_result(i, params, {"default": sign * reward(params)})


def test_samples_are_points_of_the_space():
    tuner = ReinforceTuner(seed=0)
    tuner.update_search_space(SPACE)
    for i in range(50):
        params = tuner.generate_parameters(i)
        validate_candidate(params)  # raises if outside the space
        json.dumps(params)  # plain JSON values, as NNI sends them to the trial


@pytest.mark.parametrize("mode, sign", [("maximize", 1.0), ("minimize", -1.0)])
def test_policy_learns_the_best_candidate(mode, sign):
    tuner = ReinforceTuner(optimize_mode=mode, seed=1)
    tuner.update_search_space(SPACE)
    uniform = np.prod([1 / len(v["_value"]) for v in SPACE.values()])
    run(tuner, 120, sign)
    probs = tuner.probabilities()
    p_best = np.prod([probs[k][v] for k, v in BEST.items()])
    assert p_best > 0.5 > 30 * uniform, probs
    assert all(probs[k][v] == max(probs[k].values()) for k, v in BEST.items()), probs


def test_same_seed_same_samples():
    a, b = ReinforceTuner(seed=7), ReinforceTuner(seed=7)
    for t in (a, b):
        t.update_search_space(SPACE)
        run(t, 10)
    assert [a.generate_parameters(99 + i) for i in range(5)] == [b.generate_parameters(99 + i) for i in range(5)]


def test_credits_what_it_sampled_not_what_nni_says():
    # NNI 3.0 may hand a result back with another trial's parameters (#5693): the tuner's own record wins.
    tuner = ReinforceTuner(seed=0, entropy_weight=0.0)
    tuner.update_search_space(SPACE)
    first = tuner.generate_parameters(0)
    tuner.receive_trial_result(0, first, {"default": 0.5})  # starts the baseline
    sampled = tuner.generate_parameters(1)
    wrong = {k: next(v for v in SPACE[k]["_value"] if v != sampled[k]) for k in sampled}
    tuner.receive_trial_result(1, wrong, {"default": 0.9})  # better than the baseline
    probs = tuner.probabilities()
    assert all(probs[k][sampled[k]] > 1 / len(SPACE[k]["_value"]) for k in sampled)
    assert all(probs[k][wrong[k]] < 1 / len(SPACE[k]["_value"]) for k in sampled if len(SPACE[k]["_value"]) > 1)


def test_failed_trials_do_not_move_the_policy():
    tuner = ReinforceTuner(seed=0)
    tuner.update_search_space(SPACE)
    before = tuner.probabilities()
    tuner.generate_parameters(0)
    tuner.trial_end(0, success=False)
    assert tuner.probabilities() == before and not tuner.pending


def test_import_data_replays_finished_trials():
    tuner = ReinforceTuner(seed=0)
    tuner.update_search_space(SPACE)
    data = [{"parameter": dict(BEST), "value": {"default": 1.0}} if i % 2 else
            {"parameter": {**BEST, "stages": 4}, "value": {"default": 0.2}} for i in range(20)]
    tuner.import_data(data + [{"parameter": {"stages": 9}, "value": 0.5}])  # a foreign record is skipped
    assert tuner.updates == 20
    assert tuner.probabilities()["stages"][2] > tuner.probabilities()["stages"][4]


def test_smoke_subspace_is_accepted():
    tuner = ReinforceTuner(seed=0)
    tuner.update_search_space(search_space_json("smoke"))
    assert all(tuner.generate_parameters(i)["width"] in SMOKE_RESTRICTION["width"] for i in range(5))


@pytest.mark.parametrize(
    "space, match",
    [
        ({"lr": {"_type": "uniform", "_value": [0, 1]}}, "only non-empty `choice`"),
        ({"op": {"_type": "choice", "_value": []}}, "only non-empty `choice`"),
        ({"op": {"_type": "choice", "_value": [{"_name": "a"}]}}, "nested"),
    ],
)
def test_unsupported_spaces_fail_clearly(space, match):
    with pytest.raises(ValueError, match=match):
        ReinforceTuner().update_search_space(space)


@pytest.mark.parametrize("kwargs", [{"optimize_mode": "max"}, {"learning_rate": 0}, {"baseline_decay": 1.0}])
def test_bad_class_args_fail_clearly(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ReinforceTuner(**kwargs)
