"""End to end: the pruning smoke experiment through nnictl, exactly as a user starts it."""

import json

import pytest

from common.data import SYNTHETIC_CLASSES
from tests.nnictl_utils import ROOT, Experiment, nnictl

CONFIG = ROOT / "experiments" / "pruning" / "config.smoke.yml"
CHANCE = 1 / SYNTHETIC_CLASSES  # the smoke profile's data set
KEYS = {"default", "accuracy", "val_acc", "test_acc", "dense_test_acc", "latency_ms_b1", "latency_ms_b64",
        "params", "flops", "size_mb", "params_ratio", "flops_ratio", "speedup_b1", "speedup_b64",
        "pruner", "sparsity", "profile"}


@pytest.mark.e2e
def test_pruning_smoke_experiment_through_nnictl(tmp_path):
    space = json.loads((CONFIG.parent / "search_space.json").read_text())
    with Experiment(CONFIG, tmp_path, maxTrialNumber=3) as exp:  # 3 of the config's trials keep the suite short
        trials = exp.run_to_end(n_trials=3, timeout_s=900)
        for t in trials:
            r = t["result"]
            assert set(r) >= KEYS, f"missing keys {KEYS - set(r)}"
            assert r["pruner"] in space["pruner"]["_value"] and r["sparsity"] in space["sparsity"]["_value"]
            assert r["profile"] == "smoke" and r["default"] == r["val_acc"]
            assert r["accuracy"] == r["test_acc"]
            assert r["delta_test_acc"] == pytest.approx(r["test_acc"] - r["dense_test_acc"])
            assert r["dense_test_acc"] > 3 * CHANCE  # the smoke baseline learned (~0.6), so losses are visible
            assert r["params_ratio"] < 1.0 and r["flops_ratio"] < 1.0
        # The same metrics reach `nnictl experiment export`, which users feed to their own tools.
        export = tmp_path / "export.json"
        nnictl("experiment", "export", exp.id, "--filename", str(export), "--type", "json", env=exp.env)
        exported = json.loads(export.read_text())
        assert len(exported) == 3
        assert all(KEYS - {"default"} <= set(json.loads(e["value"]) if isinstance(e["value"], str) else e["value"])
                   for e in exported)
