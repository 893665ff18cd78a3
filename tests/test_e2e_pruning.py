"""End to end: the pruning smoke experiment through nnictl, exactly as a user starts it.

Where Debian's openssh-server is installed (CI installs it) the same config runs over SSH in
tests/test_e2e_remote.py, which asserts everything below on its trials: one run covers both, and the local
training service is what every other end-to-end test runs on. Without sshd it runs here, locally.
"""

import json

import pytest

from common.data import SYNTHETIC_CLASSES
from tests.nnictl_utils import ROOT, SSHD, Experiment, nnictl

CONFIG = ROOT / "experiments" / "pruning" / "config.smoke.yml"
CHANCE = 1 / SYNTHETIC_CLASSES  # the smoke profile's data set
KEYS = {"default", "accuracy", "val_acc", "test_acc", "dense_test_acc", "latency_ms_b1", "latency_ms_b64",
        "params", "flops", "size_mb", "params_ratio", "flops_ratio", "speedup_b1", "speedup_b64",
        "pruner", "sparsity", "profile"}


def check_pruning_trials(exp: Experiment, trials: list[dict]) -> None:
    """What every trial of the pruning smoke config reports, and what `nnictl experiment export` gives users."""
    space = json.loads((CONFIG.parent / "search_space.json").read_text())
    for t in trials:
        r = t["result"]
        assert set(r) >= KEYS, f"missing keys {KEYS - set(r)}"
        assert r["pruner"] in space["pruner"]["_value"] and r["sparsity"] in space["sparsity"]["_value"]
        assert r["profile"] == "smoke" and r["default"] == r["val_acc"]
        assert r["accuracy"] == r["test_acc"]
        assert r["delta_test_acc"] == pytest.approx(r["test_acc"] - r["dense_test_acc"])
        assert r["dense_test_acc"] > 3 * CHANCE  # the smoke baseline learned (~0.4), so losses are visible
        assert r["params_ratio"] < 1.0 and r["flops_ratio"] < 1.0
    # The same metrics reach `nnictl experiment export`, which users feed to their own tools.
    export = exp.tmp / "export.json"
    nnictl("experiment", "export", exp.id, "--filename", str(export), "--type", "json", env=exp.env)
    exported = json.loads(export.read_text())
    assert len(exported) == len(trials)
    assert all(KEYS - {"default"} <= set(json.loads(e["value"]) if isinstance(e["value"], str) else e["value"])
               for e in exported)


@pytest.mark.e2e
@pytest.mark.skipif(SSHD.exists(), reason="runs over SSH in tests/test_e2e_remote.py (same config and checks)")
def test_pruning_smoke_experiment_through_nnictl(tmp_path):
    with Experiment(CONFIG, tmp_path, maxTrialNumber=3) as exp:  # 3 of the config's trials keep the suite short
        check_pruning_trials(exp, exp.run_to_end(n_trials=3, timeout_s=900))
