"""End to end: the EA and RL architecture-search smoke experiments through nnictl, then the export command."""

import json
import time

import pytest
import yaml

from common.cli.nas import main
from common.nas import SMOKE_RESTRICTION, arch_dict, candidate_from_args, subspace, validate_candidate
from common.objective import objective
from tests.nnictl_utils import ROOT, Experiment, nnictl

KEYS = {"default", "arch", "accuracy", "val_acc", "test_acc", "latency_ms_b1", "latency_ms_b64", "params", "flops",
        "size_mb", "params_ratio", "budget_factor", "within_budget", "profile",
        "stages", "blocks", "width", "activation", "kernel_size"}
BUDGETS = {"params": 250_000}  # what the smoke configs' --max-params says


def run_search(config, tmp_path, exports=("rest", "db", "file"), **overrides):
    started = time.time()
    n_trials = yaml.safe_load(config.read_text())["maxTrialNumber"]
    with Experiment(config, tmp_path, **overrides) as exp:
        trials = exp.run_to_end(n_trials=n_trials, timeout_s=900)
        smoke = subspace(SMOKE_RESTRICTION)
        for t in trials:
            r = t["result"]
            assert set(r) >= KEYS, f"missing keys {KEYS - set(r)}"
            validate_candidate(candidate_from_args(r), smoke)  # the echoed candidate is in the smoke space
            assert r["profile"] == "smoke" and r["accuracy"] == r["test_acc"]
            assert r["default"] == pytest.approx(objective(r, "val_acc", BUDGETS))
            assert (r["default"] < r["val_acc"]) == (r["params"] > BUDGETS["params"])
        # Ties go to the smaller network, then the lower trial id (common.nas.select_best).
        best = min(trials, key=lambda t: (-t["result"]["default"], t["result"]["params"], t["id"]))
        best_arch = arch_dict(candidate_from_args(best["result"]))

        # The one export command, up to three ways: live manager, nnictl's registry + database, nnictl export file.
        outs = {way: tmp_path / f"best_{way}.json" for way in exports}
        if "rest" in outs:
            assert main(["export", exp.id, "--port", str(exp.port), "--out", str(outs["rest"]), "--table"]) == 0
        if "db" in outs:
            assert main(["export", exp.id, "--out", str(outs["db"])]) == 0
        if "file" in outs:
            export = tmp_path / "export.json"
            nnictl("experiment", "export", exp.id, "--filename", str(export), "--type", "json", env=exp.env)
            assert main(["export", "--from-export", str(export), "--out", str(outs["file"])]) == 0
        for way, out in outs.items():
            assert json.loads(out.read_text()) == best_arch, way
            assert json.loads(out.with_name(out.stem + ".trial.json").read_text())["trial_id"] == best["id"], way
    print(f"{config.relative_to(ROOT)}: {n_trials} trials in {time.time() - started:.0f}s; best {best_arch}")
    return trials


@pytest.mark.e2e
def test_ea_smoke_search_through_nnictl(tmp_path):
    run_search(ROOT / "experiments" / "nas" / "config.smoke.yml", tmp_path)


@pytest.mark.e2e
def test_rl_smoke_search_through_nnictl(tmp_path):
    config = ROOT / "experiments" / "nas_rl" / "config.smoke.yml"
    tuner = yaml.safe_load(config.read_text())["tuner"]
    assert tuner["className"] == "common.rl_tuner.ReinforceTuner"
    # Experiment copies the config into tmp_path, so the tuner's relative codeDirectory is made absolute.
    tuner["codeDirectory"] = str((config.parent / tuner["codeDirectory"]).resolve())
    run_search(config, tmp_path, exports=("db",), tuner=tuner)  # the EA test covers the other two ways
