"""The report command on recorded experiments (fixtures copied from a real pruning smoke run)."""

import json
import shutil
from pathlib import Path

import pytest

from common.report import ReportError, TrialRecord, load_experiment, load_export, main, pareto_front, summary_rows

FIXTURES = Path(__file__).parent / "fixtures"
EXPORT = FIXTURES / "pruning_smoke_export.json"
DB = FIXTURES / "pruning_smoke_nni.sqlite"
EXP_ID = json.loads((FIXTURES / "pruning_smoke_meta.json").read_text())["id"]


@pytest.fixture
def registry(tmp_path):
    """A nnictl registry whose only experiment is the recorded run, laid out as NNI lays it out."""
    db_dir = tmp_path / "logs" / EXP_ID / "db"
    db_dir.mkdir(parents=True)
    shutil.copy(DB, db_dir / "nni.sqlite")
    path = tmp_path / ".experiment"
    path.write_text(json.dumps({EXP_ID: {"id": EXP_ID, "logDir": str(tmp_path / "logs"), "status": "DONE"}}))
    return path


def test_pareto_front():
    pts = [(1.0, 0.5), (2.0, 0.7), (2.0, 0.6), (3.0, 0.65), (0.5, 0.4), (4.0, 0.9)]
    assert pareto_front(pts) == [4, 0, 1, 5]


def test_database_and_export_agree(registry):
    from_db = {r.trial_id: r for r in load_experiment(EXP_ID, registry)}
    from_export = {r.trial_id: r for r in load_export(EXPORT)}
    assert from_db and set(from_db) == set(from_export)
    for trial_id, rec in from_db.items():
        assert rec.status == "SUCCEEDED"
        assert rec.result == from_export[trial_id].result
        assert rec.result["trial"] == "prune" and {"pruner", "sparsity", "accuracy"} <= set(rec.result)


def test_summary_picks_best_by_default(registry):
    records = load_experiment(EXP_ID, registry)
    rows = summary_rows(records)
    assert rows[0]["model"].startswith("dense")
    best = max((r.result for r in records), key=lambda r: r["default"])
    pruned_row = rows[1]
    assert pruned_row["model"].startswith("best pruned")
    assert f"pruner={best['pruner']}" in pruned_row["model"] and f"sparsity={best['sparsity']}" in pruned_row["model"]
    assert pruned_row["size_ratio"] == best["size_ratio"]


def test_report_writes_table_and_plots(registry, tmp_path):
    out = tmp_path / "report"
    main([EXP_ID, "--registry", str(registry), "--out", str(out)])
    text = (out / "report.md").read_text()
    assert "| dense ResNet-18 (baseline)" in text and "best pruned" in text
    assert "Smoke profile" in text  # smoke numbers are labelled as such
    for name in ("accuracy_vs_latency", "accuracy_vs_size", "accuracy_vs_sparsity"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({name}.png)" in text


def test_failed_trials_are_listed_not_summarised(registry):
    records = load_experiment(EXP_ID, registry) + [TrialRecord("x", "bad01", "FAILED", None)]
    assert all("bad01" not in r["model"] for r in summary_rows(records))


def test_unknown_experiment_is_a_clear_error(registry, capsys):
    with pytest.raises(ReportError, match="unknown experiment id 'nope1234'"):
        load_experiment("nope1234", registry)
    with pytest.raises(SystemExit, match="unknown experiment id"):
        main(["nope1234", "--registry", str(registry)])


def test_no_results_is_a_clear_error():
    with pytest.raises(ReportError, match="no trial has a final result"):
        summary_rows([TrialRecord("x", "t1", "RUNNING", None)])
