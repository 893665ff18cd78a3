"""The NAS search space (defined once in common/nas.py), the trial's flags, and the best-architecture export."""

import itertools
import json
import sqlite3
import sys

import pytest
import torch
import yaml
from nni.experiment.config import ExperimentConfig
from nni.tools.package_utils.tuner_factory import create_validator_instance
from torch import nn

from common import nas, trial
from common.cli import nas as nas_cli
from common.models import arch_key, build_model
from common.nas import (
    DEFAULT_CANDIDATE,
    SPACE,
    CandidateError,
    ExportError,
    all_candidates,
    arch_dict,
    build_candidate,
    render_search_space,
    search_space_json,
    select_best,
    subspace,
    validate_candidate,
)
from common.rl_tuner import ReinforceTuner
from tests.nnictl_utils import ROOT

# ------------------------------------------------------------------------------------------------ space


@pytest.mark.parametrize("kind", list(nas.SEARCH_SPACES))
def test_committed_search_space_is_the_rendered_one(kind):
    path = nas_cli.SEARCH_SPACE_FILES[kind]  # a KeyError here: a search space that `render --write` would not write
    assert path.read_text() == render_search_space(kind), "regenerate: python3 -m common.cli.nas render --write"


def test_space_covers_the_seed_dimensions_and_contains_resnet18():
    assert {2, 3, 4} <= set(SPACE["stages"])
    assert set(SPACE["activation"]) == {"relu", "tanh"} and set(SPACE["kernel_size"]) == {3, 5}
    assert arch_key(arch_dict(DEFAULT_CANDIDATE)) == arch_key("resnet18")
    smoke = search_space_json("smoke")
    assert set(smoke) == set(SPACE) and all(set(v["_value"]) <= set(SPACE[k]) for k, v in smoke.items())


def test_every_candidate_is_valid_and_distinct():
    candidates = list(all_candidates())
    assert len(candidates) == 72
    assert len({arch_key(arch_dict(c)) for c in candidates}) == 72
    for c in candidates:
        assert validate_candidate(c) == c


CORNERS = [dict(zip(SPACE, values, strict=True))
           for values in itertools.product(*[(v[0], v[-1]) for v in SPACE.values()])]


@pytest.mark.parametrize("candidate", CORNERS, ids=lambda c: "-".join(map(str, c.values())))
@torch.no_grad()
def test_every_corner_builds_and_runs(candidate):
    model = build_candidate(candidate, num_classes=7).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert model.num_stages == candidate["stages"]
    assert len(model.layer1) == candidate["blocks"]
    assert model.layer1[0].conv1.kernel_size == (candidate["kernel_size"],) * 2
    assert model.fc.in_features == candidate["width"] * 2 ** (candidate["stages"] - 1)
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[candidate["activation"]]
    assert any(isinstance(m, act) for m in model.modules())


def test_arch_json_round_trips_through_build_model():
    c = {"stages": 3, "blocks": 2, "width": 32, "activation": "tanh", "kernel_size": 5}
    arch = json.loads(json.dumps(arch_dict(c)))
    assert arch == {"blocks": [2, 2, 2], "widths": [32, 64, 128], "activation": "tanh", "kernel_size": 5}
    a, b = build_model(arch, 10), build_candidate(c, 10)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


@pytest.mark.parametrize(
    "bad, match",
    [
        ({**DEFAULT_CANDIDATE, "depth": 3}, r"unknown \['depth'\]"),
        ({k: v for k, v in DEFAULT_CANDIDATE.items() if k != "width"}, r"missing \['width'\]"),
        ({**DEFAULT_CANDIDATE, "stages": 5}, r"stages=5 is outside the search space; choose from \[2, 3, 4\]"),
        ({**DEFAULT_CANDIDATE, "activation": "gelu"}, "activation='gelu' is outside"),
        ({**DEFAULT_CANDIDATE, "kernel_size": 4}, "kernel_size=4 is outside"),
        ({**DEFAULT_CANDIDATE, "width": 8}, "width=8 is outside"),
        ({**DEFAULT_CANDIDATE, "stages": "3"}, "stages='3' is outside"),
        ({**DEFAULT_CANDIDATE, "blocks": True}, "blocks=True is outside"),
        ({**DEFAULT_CANDIDATE, "stages": 3.0}, "stages=3.0 is outside"),
        ([("stages", 3)], "a candidate is a dict"),
    ],
)
def test_invalid_candidates_fail_clearly(bad, match):
    with pytest.raises(CandidateError, match=match):
        build_candidate(bad)


def test_restrictions_stay_inside_the_space():
    assert subspace({"width": (16,)})["width"] == (16,)
    with pytest.raises(CandidateError, match="subset"):
        subspace({"width": (8,)})
    with pytest.raises(CandidateError, match="unknown key"):
        subspace({"depth": (2,)})


# ----------------------------------------------------------------------------------------- trial flags


def nas_parser():
    sys.path.insert(0, str(ROOT / "trials"))
    from trials.nas import get_parser

    return get_parser()


def test_trial_flags_default_to_resnet18():
    args = trial.parse_params(nas_parser(), [])
    assert nas.candidate_from_args(args) == DEFAULT_CANDIDATE


def test_tuner_candidate_overrides_flags(tuner):
    c = {"stages": 2, "blocks": 1, "width": 16, "activation": "tanh", "kernel_size": 5}
    tuner(c)
    args = trial.parse_params(nas_parser(), ["--max-params", "3e5"])
    assert nas.candidate_from_args(args) == c and args.max_params == 3e5


@pytest.mark.parametrize(
    "params, match",
    [({"stage": 3}, "stage"), ({"stages": 7}, "valid"), ({"activation": "gelu"}, "valid"), ({"width": "16"}, "type")],
)
def test_bad_tuner_candidate_fails_loudly(tuner, params, match):
    tuner(params)
    with pytest.raises(ValueError, match=match):
        trial.parse_params(nas_parser(), [])


def test_search_space_keys_are_trial_flags():
    dests = {a.dest for a in nas_parser()._actions}
    for kind in ("full", "smoke"):
        assert set(json.loads(nas_cli.SEARCH_SPACE_FILES[kind].read_text())) <= dests


# ---------------------------------------------------------------------------------------------- export

SMALL = {"stages": 2, "blocks": 1, "width": 16, "activation": "relu", "kernel_size": 3}
BEST = {"stages": 3, "blocks": 2, "width": 32, "activation": "tanh", "kernel_size": 5}
BIG = {"stages": 4, "blocks": 2, "width": 64, "activation": "relu", "kernel_size": 5}


def result(candidate, default, **extra):
    return {"default": default, "val_acc": default, "test_acc": default - 0.01, "params": 1000,
            "latency_ms_b1": 1.0, "latency_ms_b64": 10.0, "profile": "smoke", **candidate, **extra}


def nnictl_export_rows():
    """What `nnictl experiment export --type json` writes, with NNI's mis-pairing (#5693): the best trial is
    listed with BIG's parameters and BIG's trial with BEST's; only the echoed copies are right."""
    return [
        {"parameter": SMALL, "value": json.dumps(result(SMALL, 0.60)), "trialJobId": "aaaaa"},
        {"parameter": BIG, "value": json.dumps(result(BEST, 0.80)), "trialJobId": "bbbbb"},
        {"parameter": BEST, "value": json.dumps(result(BIG, 0.70)), "trialJobId": "ccccc"},
    ]


def test_export_picks_the_echoed_candidate_of_the_best_trial(tmp_path, capsys):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(nnictl_export_rows()))
    out = tmp_path / "best_arch.json"
    assert nas_cli.main(["export", "--from-export", str(path), "--out", str(out)]) == 0
    arch = json.loads(out.read_text())
    assert arch == arch_dict(BEST)
    assert build_model(arch, 10)(torch.randn(1, 3, 32, 32)).shape == (1, 10)  # consumable by build_model
    details = json.loads((tmp_path / "best_arch.trial.json").read_text())
    assert details["trial_id"] == "bbbbb" and details["candidate"] == BEST
    captured = capsys.readouterr()
    assert "bbbbb" in captured.out and "using the echoed ones" in captured.err


def test_export_by_other_metric_and_mode():
    records = [nas.result_record(r["trialJobId"], r["value"], r["parameter"]) for r in nnictl_export_rows()]
    assert select_best(records, "default", "minimize")[1] == SMALL
    # Ties: the smaller network wins, then the lower trial id, whatever order the source lists them in.
    records.append(nas.result_record("ddddd", json.dumps(result(SMALL, 0.80, params=999)), SMALL))
    assert select_best(records)[0]["trial_id"] == "ddddd"
    records.append(nas.result_record("AAAAA", json.dumps(result(SMALL, 0.80, params=999)), SMALL))
    assert select_best(records)[0]["trial_id"] == select_best(records[::-1])[0]["trial_id"] == "AAAAA"


def test_export_refuses_results_without_an_echoed_candidate():
    with pytest.raises(ExportError, match="does not echo a valid candidate"):
        select_best([nas.result_record("x", {"default": 0.9, "stages": 3})])
    with pytest.raises(ExportError, match="reported no 'default'"):
        select_best([nas.result_record("x", {"val_acc": 0.9, **BEST})])
    with pytest.raises(ExportError, match="no final results"):
        select_best([])


def fake_registry(tmp_path, exp_id="abcd1234"):
    """nnictl's registry plus an nni.sqlite laid out as NNI 3.0 writes them (schema copied from a real run)."""
    db_path = tmp_path / "work" / exp_id / "db" / "nni.sqlite"
    db_path.parent.mkdir(parents=True)
    registry = tmp_path / ".experiment"
    registry.write_text(json.dumps({exp_id: {"id": exp_id, "logDir": str(tmp_path / "work")}}))
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE TrialJobEvent (timestamp integer, trialJobId text, event text, data text, "
               "logPath text, sequenceId integer, message text, environmentId text)")
    db.execute("CREATE TABLE MetricData (timestamp integer, trialJobId text, parameterId text, type text, "
               "sequence integer, data text)")
    rows = nnictl_export_rows() + [{"parameter": BEST, "value": json.dumps(result(BEST, 0.99)), "trialJobId": "fffff"}]
    for t, row in enumerate(rows):
        shown = json.dumps({"parameter_id": t, "parameter_source": "algorithm", "parameters": row["parameter"]})
        db.execute("INSERT INTO TrialJobEvent VALUES (?, ?, 'RUNNING', ?, '', ?, NULL, 'local-env')",
                   (10 * t, row["trialJobId"], shown, t))
        # The last trial reported a great result and then crashed: it must not be exported.
        end = "FAILED" if row["trialJobId"] == "fffff" else "SUCCEEDED"
        db.execute("INSERT INTO TrialJobEvent VALUES (?, ?, ?, NULL, '', ?, NULL, 'local-env')",
                   (10 * t + 5, row["trialJobId"], end, t))
        db.execute("INSERT INTO MetricData VALUES (?, ?, ?, 'PERIODICAL', 0, ?)",
                   (10 * t + 1, row["trialJobId"], str(t), json.dumps("0.1")))
        db.execute("INSERT INTO MetricData VALUES (?, ?, ?, 'FINAL', 0, ?)",
                   (10 * t + 2, row["trialJobId"], str(t), json.dumps(row["value"])))
    db.commit()
    db.close()
    return registry, exp_id


def test_export_by_experiment_id_reads_nnis_database(tmp_path):
    registry, exp_id = fake_registry(tmp_path)
    records = nas_cli.records_from_db(exp_id, registry)
    assert sorted(r["trial_id"] for r in records) == ["aaaaa", "bbbbb", "ccccc"]  # not the FAILED one
    out = tmp_path / "best.json"
    assert nas_cli.main(["export", exp_id, "--registry", str(registry), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == arch_dict(BEST)
    assert json.loads((tmp_path / "best.trial.json").read_text())["trial_id"] == "bbbbb"


def fake_manager(monkeypatch, tmp_path, exp_id="abcd1234", pid=None):
    """An NNI 3.0 manager's REST API, as nni.experiment reads it (`rest.get`): the trials of fake_registry, the
    FAILED one with a trial.log; the real Experiment.connect and list_trial_jobs parse the replies."""
    import os

    from nni.experiment import rest

    rows = nnictl_export_rows() + [{"parameter": BEST, "value": json.dumps(result(BEST, 0.99)), "trialJobId": "fffff"}]
    log_dir = tmp_path / "trials" / "fffff"
    log_dir.mkdir(parents=True)
    (log_dir / "trial.log").write_text("[2026-12-08 02:55:22] PRINT TRIAL FAILED: RuntimeError: out of memory\n")
    jobs = [{"trialJobId": r["trialJobId"], "status": "FAILED" if r["trialJobId"] == "fffff" else "SUCCEEDED",
             "startTime": 10 * t, "sequenceId": t, "logPath": str(tmp_path / "trials" / r["trialJobId"]),
             "hyperParameters": [json.dumps({"parameter_id": t, "parameter_source": "algorithm",
                                             "parameters": r["parameter"], "parameter_index": 0})],
             "finalMetricData": [{"timestamp": 10 * t + 2, "trialJobId": r["trialJobId"], "parameterId": str(t),
                                  "type": "FINAL", "sequence": 0, "data": json.dumps(r["value"])}]}
            for t, r in enumerate(rows)][::-1]  # the manager's order is not the trial ids'
    replies = {"/experiment": {"id": exp_id}, "/check-status": {"status": "RUNNING"},
               "/experiments-info": [{"id": exp_id, "pid": os.getpid() if pid is None else pid}], "/trial-jobs": jobs}
    asked = []

    def get(port, api, prefix=None):
        asked.append((port, api))
        return replies[api]

    monkeypatch.setattr(rest, "get", get)
    return asked


def test_export_from_a_running_manager_reads_it_through_nni_experiment(tmp_path, monkeypatch, capsys, caplog):
    asked = fake_manager(monkeypatch, tmp_path)
    out = tmp_path / "best.json"
    assert nas_cli.main(["export", "abcd1234", "--port", "8123", "--out", str(out)]) == 0
    assert (8123, "/trial-jobs") in asked and {port for port, _ in asked} == {8123}
    assert json.loads(out.read_text()) == arch_dict(BEST)  # the echoed candidate, not NNI's listing (BIG)
    details = json.loads((tmp_path / "best.trial.json").read_text())
    assert details["trial_id"] == "bbbbb" and details["source"] == "abcd1234@:8123"  # not fffff: it FAILED
    assert "NNI lists trial bbbbb with parameters" in capsys.readouterr().err
    # nni.experiment logs to stdout, where the command prints its result: it is kept quiet there.
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("nni")]


def test_the_manager_and_the_database_give_the_same_trials(tmp_path, monkeypatch):
    """One trial reader, two sources: what a running manager lists is what its database holds."""
    from common.report import load_experiment, load_manager

    registry, exp_id = fake_registry(tmp_path)
    fake_manager(monkeypatch, tmp_path, exp_id)
    live, stored = load_manager(8123, exp_id), load_experiment(exp_id, registry)
    assert [r.trial_id for r in live] == ["aaaaa", "bbbbb", "ccccc", "fffff"]
    assert [(r.trial_id, r.status, r.result, r.parameters) for r in live] == \
        [(r.trial_id, r.status, r.result, r.parameters) for r in stored]
    assert live[-1].last_log_line == "TRIAL FAILED: RuntimeError: out of memory"
    assert nas_cli.records_from_manager(exp_id, 8123) == nas_cli.records_from_db(exp_id, registry)


def test_a_manager_whose_process_is_elsewhere_is_still_read(tmp_path, monkeypatch):
    # A forwarded port or another container: the pid the manager reports is no process of this machine.
    fake_manager(monkeypatch, tmp_path, pid=2**31 - 1)
    assert [r["trial_id"] for r in nas_cli.records_from_manager("abcd1234", 8123)] == ["aaaaa", "bbbbb", "ccccc"]


def test_a_manager_of_another_experiment_is_refused(tmp_path, monkeypatch, capsys):
    fake_manager(monkeypatch, tmp_path, exp_id="other999")
    assert nas_cli.main(["export", "abcd1234", "--port", "8123", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "port 8123 serves experiment other999, not abcd1234" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


def test_export_errors_are_clear(tmp_path, capsys):
    registry, _ = fake_registry(tmp_path)
    out = str(tmp_path / "x.json")
    assert nas_cli.main(["export", "nosuchid", "--registry", str(registry), "--out", out]) == 2
    assert "unknown experiment id 'nosuchid'" in capsys.readouterr().err
    assert nas_cli.main(["export", "--from-export", str(tmp_path / "missing.json"), "--out", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"not": "an export"}))
    assert nas_cli.main(["export", "--from-export", str(tmp_path / "bad.json"), "--out", out]) == 2
    assert "not an `nnictl experiment export" in capsys.readouterr().err
    from tests.nnictl_utils import free_port

    assert nas_cli.main(["export", "abcd1234", "--port", str(free_port()), "--out", out]) == 2
    assert "no NNI manager answers on port" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        nas_cli.main(["export", "--out", out])


def test_candidate_table_lists_best_first():
    records = [nas.result_record(r["trialJobId"], r["value"], r["parameter"]) for r in nnictl_export_rows()]
    lines = nas.candidate_table(records).splitlines()
    assert len(lines) == 5
    assert lines[2] == "| 3 stages x 2, width 32, tanh, 5x5 | 0.800 | 0.800 | 0.790 | 1.00 | 10.0 | 1,000 |"
    del records[0]["result"]["latency_ms_b1"]  # a cost the trial did not report is shown as missing, not 0 or nan
    assert "| 0.590 | – | 10.0 |" in nas.candidate_table(records)


# --------------------------------------------------------------------------------------------- configs

NAS_CONFIGS = sorted(p for d in ("nas", "nas_rl") for p in (ROOT / "experiments" / d).glob("config*.yml"))


@pytest.mark.parametrize("path", NAS_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_nas_configs_are_valid_and_consistent(path):
    ExperimentConfig.load(str(path)).validate()  # relative paths resolve against the config file
    raw = yaml.safe_load(path.read_text())
    space = json.loads((path.parent / raw["searchSpaceFile"]).read_text())
    kind = "smoke" if ".smoke." in path.name else "full"
    profile = kind
    if ".cpu." in path.name:  # the 2-core CPU config searches the smoke sub-space, on real data
        kind, profile = "smoke", "cpu"
    assert space == search_space_json(kind) and f"--profile {profile}" in raw["trialCommand"]
    assert raw["trialCommand"].startswith("python3 trials/nas.py ")
    tuner = raw["tuner"]
    if path.parent.name == "nas":
        assert tuner["className"] == "common.nni_compat.Evolution"  # NNI's, surviving re-delivered parameters
        create_validator_instance("tuners", "Evolution").validate_class_args(**tuner["classArgs"])
        assert tuner["classArgs"]["population_size"] < raw["maxTrialNumber"]  # some trials are evolved
    else:
        assert tuner["className"] == "common.rl_tuner.ReinforceTuner"
        assert (path.parent / tuner["codeDirectory"]).resolve() == ROOT
        ReinforceTuner(**tuner["classArgs"]).update_search_space(space)
    # The trial's flags (budgets included) parse, so `default` means what the config says.
    args = nas_parser().parse_args(raw["trialCommand"].split()[2:])
    assert nas.candidate_from_args(args) == DEFAULT_CANDIDATE


def test_ea_and_rl_share_trial_and_objective():
    for kind in ("config.yml", "config.smoke.yml", "config.cpu.yml"):
        ea = yaml.safe_load((ROOT / "experiments" / "nas" / kind).read_text())
        rl = yaml.safe_load((ROOT / "experiments" / "nas_rl" / kind).read_text())
        assert ea["trialCommand"] == rl["trialCommand"] and ea["maxTrialNumber"] == rl["maxTrialNumber"]


def test_export_writes_where_the_pipeline_config_reads(tmp_path, monkeypatch):
    """`python3 -m common.cli.nas export <id>` without --out writes what experiments/pipeline/config.yml reads."""
    import shlex

    from common.models import load_arch

    config = yaml.safe_load((ROOT / "experiments" / "pipeline" / "config.yml").read_text())
    command = shlex.split(config["trialCommand"])
    export = tmp_path / "export.json"
    export.write_text(json.dumps(nnictl_export_rows()))
    monkeypatch.chdir(tmp_path)  # the repository root, where NNI runs the trials
    assert nas_cli.main(["export", "--from-export", str(export)]) == 0
    assert load_arch(command[command.index("--arch") + 1]) == arch_dict(BEST)


def test_export_of_an_all_failed_search_says_why(tmp_path, capsys):
    from tests.test_report import failed_registry

    registry = failed_registry(tmp_path)
    assert nas_cli.main(["export", "fail0001", "--registry", str(registry), "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "no trial of fail0001 has a result of this suite yet; its 2 trial(s)" in err
    assert 'aaaaa FAILED parameters={"pruner": "fpgm", "sparsity": 1.5}: TRIAL FAILED: sparsity must be' in err
    assert "bbbbb FAILED" in err and "TRIAL FAILED: NonFiniteLossError" in err
