"""`python3 -m common.cli.record`: experiments one after the other through nnictl, each stopped when its trials
end, ids written as they end. The trials are a script that reports its parameters and the time, so the test
measures the orchestration (seconds), not training."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
import yaml

from common.cli.record import main, prepared_config
from tests.nnictl_utils import ROOT, free_port, manager_processes

REPORT = '''
import sys, time
import nni
params = nni.get_next_parameter()
nni.report_final_result({"default": 0.0, "params": params, "argv": sys.argv[1:], "start": time.time()})
'''


def _config(tmp_path: Path, name: str, trials: int) -> Path:
    """A local GridSearch config over `trials` values of x, its trial the script above, its NNI files in tmp_path."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "report.py").write_text(REPORT)
    (folder / "space.json").write_text(json.dumps({"x": {"_type": "choice", "_value": list(range(trials))}}))
    (folder / "config.yml").write_text(yaml.safe_dump({
        "experimentName": name, "searchSpaceFile": "space.json", "trialCodeDirectory": ".",
        "trialCommand": "python3 report.py", "trialConcurrency": 1, "maxTrialNumber": trials,
        "experimentWorkingDirectory": str(tmp_path / "nni-experiments"), "tuner": {"name": "GridSearch"},
        "trainingService": {"platform": "local"}}))
    return folder / "config.yml"


def _finals(tmp_path: Path, exp_id: str) -> list[dict]:
    db = tmp_path / "nni-experiments" / exp_id / "db" / "nni.sqlite"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT data FROM MetricData WHERE type = 'FINAL'").fetchall()
    return [json.loads(json.loads(data)) for (data,) in rows]


@pytest.mark.e2e
def test_records_each_experiment_to_its_end_one_after_the_other(tmp_path):
    first, second = _config(tmp_path, "first", 2), _config(tmp_path, "second", 1)
    space = tmp_path / "other_space.json"
    space.write_text(json.dumps({"x": {"_type": "choice", "_value": [7]}}))
    ids = tmp_path / "recording.txt"
    assert main([str(first), "--ids", str(ids), "--port", str(free_port()), "--poll", "1"]) == 0
    assert main([str(second), "--ids", str(ids), "--port", str(free_port()), "--poll", "1",
                 "--search-space", str(space), "--trial-args", "--portability-check avx2"]) == 0

    lines = [line.split() for line in ids.read_text().splitlines()]
    assert [(cfg, status) for cfg, _, status in lines] == [(str(first), "DONE"), (str(second), "DONE")]
    results = {}
    for _, exp_id, _ in lines:
        # Each stopped: no manager left holding a port. (Not read from nnictl's registry: a manager that finds the
        # registry locked by another experiment's writes its STOPPED later, retrying, or never, until another
        # manager notices the dead pid: extensions/experiments_manager/manager.js.)
        assert not manager_processes(exp_id)
        results[exp_id] = _finals(tmp_path, exp_id)
    (a, b) = results.values()
    assert sorted(r["params"]["x"] for r in a) == [0, 1] and [r["params"]["x"] for r in b] == [7]
    assert b[0]["argv"] == ["--portability-check", "avx2"]
    assert max(r["start"] for r in a) < b[0]["start"]  # the second began after the first had ended


def test_an_unchanged_config_is_used_as_it_is_and_a_changed_one_resolves_its_paths(tmp_path):
    config = ROOT / "experiments" / "quant" / "config.cpu.yml"
    assert prepared_config(config, tmp_path) == config
    copy = yaml.safe_load(prepared_config(config, tmp_path, trial_args="--seed 1").read_text())
    assert copy["trialCommand"].endswith("--dataset fashion-mnist --seed 1")
    assert copy["searchSpaceFile"] == str(config.parent / "search_space.json")
    assert copy["trialCodeDirectory"] == str(ROOT)


def test_a_missing_config_fails_before_anything_starts(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nope.yml"), "--ids", str(tmp_path / "ids.txt")])
    assert "nope.yml: no such file" in capsys.readouterr().err
    assert not (tmp_path / "ids.txt").exists()


def test_a_busy_manager_is_asked_again_and_a_gone_one_ends_the_wait(monkeypatch):
    import urllib.error

    from common.cli import record

    answers = iter([urllib.error.URLError("busy"), urllib.error.URLError("busy"), {"status": "DONE"}])

    def busy(port, path):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(record, "manager_get", busy)
    assert record.wait_until_ended(1, poll_s=0) == "DONE"  # two missed queries in a row are not the end

    def gone(port, path):
        raise urllib.error.URLError("connection refused")

    monkeypatch.setattr(record, "manager_get", gone)
    with pytest.raises(urllib.error.URLError):
        record.wait_until_ended(1, poll_s=0)


def test_a_tuner_out_of_trials_ends_the_wait_once_its_last_trial_has_ended(monkeypatch):
    """A grid smaller than maxTrialNumber ends in TUNER_NO_MORE_TRIAL, which NNI never flips to DONE (a recording
    of 4 grid points with maxTrialNumber 16 waited for ever before this)."""
    from common.cli import record

    jobs = iter([[{"status": "RUNNING"}], [{"status": "RUNNING"}], [{"status": "SUCCEEDED"}]])
    asked = []

    def manager(port, path):
        asked.append(path)
        return {"status": "TUNER_NO_MORE_TRIAL"} if path == "check-status" else next(jobs)

    monkeypatch.setattr(record, "manager_get", manager)
    assert record.wait_until_ended(1, poll_s=0, settle_s=0, timeout_s=5) == "TUNER_NO_MORE_TRIAL"
    assert asked.count("trial-jobs") == 3  # not before the running trial had ended


DEAD = ROOT / "tests" / "fixtures" / "dead_dispatcher"  # dispatcher.log of a real run: stock TPE, first trial killed


def test_a_dead_tuner_is_read_from_its_dispatcher_log(tmp_path):
    from common.nni_compat import dispatcher_failure

    assert dispatcher_failure(DEAD) == "KeyError: 0"
    (tmp_path / "log").mkdir()
    resumed = (DEAD / "log" / "dispatcher.log").read_text() + "[2026-12-08 03:10:00] INFO (nni.runtime." \
        "msg_dispatcher_base/MainThread) Dispatcher started\n"  # `nnictl resume` started a new one
    (tmp_path / "log" / "dispatcher.log").write_text(resumed)
    assert dispatcher_failure(tmp_path) is None
    assert dispatcher_failure(tmp_path / "nothing-here") is None


def test_waiting_ends_at_once_when_the_tuner_died(monkeypatch):
    """NNI keeps such an experiment RUNNING until maxExperimentDuration; the recorder and the e2e harness say why."""
    from common.cli import record

    monkeypatch.setattr(record, "manager_get", lambda port, path: {"status": "RUNNING"})
    with pytest.raises(record.TunerDied, match=r"experiment dead_dispatcher: .*exited \(KeyError: 0\)"):
        record.wait_until_ended(1, poll_s=0, timeout_s=5, experiment_dir=DEAD)


@pytest.mark.parametrize(("status", "counts", "code"), [
    ("DONE", {"SUCCEEDED": 2, "FAILED": 1}, 0), ("DONE", {"FAILED": 3}, 1), ("TUNER_DIED", {"SUCCEEDED": 1}, 1)])
def test_the_exit_status_says_whether_anything_was_recorded(monkeypatch, tmp_path, capsys, status, counts, code):
    from common.cli import record

    monkeypatch.setattr(record, "record", lambda config, port, poll: ("abc123", status, counts))
    config = _config(tmp_path, "one", 1)
    assert record.main([str(config), "--ids", str(tmp_path / "ids.txt")]) == code
    out = capsys.readouterr()
    assert f"experiment abc123 {status}" in out.out and ("not recorded" in out.err) == bool(code)
    assert (tmp_path / "ids.txt").read_text().split() == [str(config), "abc123", status]  # kept either way


def test_a_seed_unit_records_one_seed_of_every_headline_configuration_in_order(monkeypatch, tmp_path):
    from common.cli import record

    ran = []

    def fake_record(config, port, poll):
        cfg = yaml.safe_load(config.read_text())
        ran.append((cfg["experimentName"], json.loads(Path(cfg["searchSpaceFile"]).read_text())))
        return f"id{len(ran)}", "DONE", {"SUCCEEDED": 1}

    monkeypatch.setattr(record, "record", fake_record)
    assert record.main(["--seed-unit", "2", "--ids", str(tmp_path / "ids.txt")]) == 0
    assert [name for name, _ in ran] == ["baseline-cpu", "pruning-seeds-cpu", "quant-seeds-cpu", "pipeline-seeds-cpu"]
    assert all(space["seed"] == {"_type": "choice", "_value": [2]} for _, space in ran)
    # one trial per headline row: dense; FPGM one-shot, gradual, distilled, L1; QAT 8, LSQ 4; pipeline, distilled
    grid_points = [math.prod(_points(spec) for key, spec in space.items()) for _, space in ran]
    assert grid_points == [1, 4, 2, 2]
    assert len((tmp_path / "ids.txt").read_text().splitlines()) == 4


def _points(spec: dict) -> int:
    """How many parameter sets a choice gives (a nested choice: the sum over its options)."""
    values = spec["_value"]
    return sum(math.prod(_points(s) for k, s in v.items() if k != "_name") if isinstance(v, dict) else 1
               for v in values)


def test_seed_unit_and_configs_do_not_mix(tmp_path, capsys):
    from common.cli import record

    with pytest.raises(SystemExit):
        record.main([str(_config(tmp_path, "one", 1)), "--seed-unit", "1"])
    assert "not both" in capsys.readouterr().err


def test_the_pareto_unit_records_the_dense_model_then_both_searches_alike(monkeypatch, tmp_path):
    from common.cli import record

    ran = []

    def fake_record(config, port, poll):
        cfg = yaml.safe_load(config.read_text())
        ran.append((cfg, json.loads((config.parent / cfg["searchSpaceFile"]).read_text())))
        return f"id{len(ran)}", "DONE", {"SUCCEEDED": 1}

    monkeypatch.setattr(record, "record", fake_record)
    assert record.main(["--pareto-unit", "--ids", str(tmp_path / "ids.txt")]) == 0
    (dense, dense_space), (uniform, uniform_space), (stagewise, stagewise_space) = ran
    assert dense["experimentName"] == "baseline-cpu" and dense_space["seed"]["_value"] == [0]
    assert (uniform["experimentName"], stagewise["experimentName"]) == ("pareto-uniform-search",
                                                                       "pareto-stagewise-search")
    # Only the space differs: one trial command, tuner (NSGA-II, seed, population), trial count, >= 12 trials.
    for key in ("trialCommand", "tuner", "maxTrialNumber", "trialConcurrency"):
        assert uniform[key] == stagewise[key], key
    assert "--profile search" in uniform["trialCommand"] and uniform["maxTrialNumber"] >= 12
    assert set(uniform_space) == {"pruner", "uniform_sparsity", "uniform_bits"} and "stage4_bits" in stagewise_space
    assert len((tmp_path / "ids.txt").read_text().splitlines()) == 3


def test_the_pareto_confirmation_retrains_the_anchor_and_each_distinct_pick(monkeypatch, tmp_path):
    from common.cli import record

    ran = []

    def fake_record(config, port, poll):
        cfg = yaml.safe_load(config.read_text())
        ran.append((cfg, json.loads(Path(cfg["searchSpaceFile"]).read_text())))
        return "c1", "DONE", {"SUCCEEDED": 3}

    monkeypatch.setattr(record, "record", fake_record)
    pick = {"pruner": "l1", "stage_sparsity": "0.6,0.6,0.6,0.6", "stage_bits": "4,4,4,4", "val_acc": 0.9}
    other = {**pick, "stage_sparsity": "0.2,0.4,0.6,0.8"}
    report = tmp_path / "report.json"  # the comparison's picks as `report compare` writes them
    report.write_text(json.dumps({"comparison": {"picks": {
        "latency": {"uniform": {"within": True, "result": pick}, "stagewise": {"within": True, "result": other}},
        "size": {"uniform": {"within": True, "result": pick}, "stagewise": {"within": False, "result": None}}}}}))
    assert record.main(["--pareto-confirm", str(report), "--ids", str(tmp_path / "ids.txt")]) == 0
    ((config, space),) = ran
    assert config["experimentName"] == "pareto-confirm-cpu" and "--profile cpu" in config["trialCommand"]
    grid = space["point"]["_value"]
    assert [g["_name"] for g in grid] == ["anchor", "latency-uniform+size-uniform", "latency-stagewise"]
    assert grid[2]["stage_sparsity"] == {"_type": "choice", "_value": ["0.2,0.4,0.6,0.8"]}
    assert len(grid) <= config["maxTrialNumber"]
    with pytest.raises(SystemExit, match="ids.txt: not a comparison report.json"):
        record.main(["--pareto-confirm", str(tmp_path / "ids.txt")])
