"""`report compare` on real NNI output: the uniform and the per-stage pareto smoke searches, run by nnictl
(experiments/pareto/config.uniform.smoke.yml and config.smoke.yml), their databases copied as fixtures."""

import json
import shutil
from pathlib import Path

import pytest

from common import compare
from common.cli.report import main
from common.front import pick
from common.pareto import hypervolume
from common.report import front_results, load_experiment

FIXTURES = Path(__file__).parent / "fixtures"
IDS = {s: json.loads((FIXTURES / f"pareto_{s}_smoke_meta.json").read_text())["id"] for s in compare.SEARCHES}


@pytest.fixture
def registry(tmp_path):
    """A nnictl registry holding both recorded searches, laid out as NNI lays it out."""
    entries = {}
    for search, exp_id in IDS.items():
        db_dir = tmp_path / "logs" / exp_id / "db"
        db_dir.mkdir(parents=True)
        shutil.copy(FIXTURES / f"pareto_{search}_smoke_nni.sqlite", db_dir / "nni.sqlite")
        entries[exp_id] = {"id": exp_id, "logDir": str(tmp_path / "logs"), "status": "DONE"}
    (tmp_path / ".experiment").write_text(json.dumps(entries))
    return tmp_path / ".experiment"


def _results(registry):
    return {s: front_results(load_experiment(e, registry), e) for s, e in IDS.items()}


def test_both_fronts_their_hypervolumes_against_one_reference_and_each_budget_pick(registry, tmp_path, capsys):
    out = tmp_path / "report"
    main(["compare", IDS["uniform"], IDS["stagewise"], "--registry", str(registry), "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    c = report["comparison"]
    assert c["reference_point"] == {"val_acc": 0.0, "latency_ratio_b1": 1.0, "packed_size_ratio": 1.0}
    assert c["experiments"] == IDS and c["unequal_settings"] == [] and len(c["cpus"]) == 1
    results = _results(registry)
    # The uniform search ran the per-stage flags with one value for all stages; the per-stage one did not have to.
    assert all(len(set(r["stage_sparsity"].split(","))) == 1 for r in results["uniform"])
    for search, rs in results.items():
        points = [tuple(r[k] for k in compare.OBJECTIVES) for r in rs]
        assert c["hypervolume"][search] == pytest.approx(
            hypervolume(points, (0.0, 1.0, 1.0), tuple(compare.OBJECTIVES.values())))
        assert c["hypervolume"][search] > 0
        assert report["fronts"][IDS[search]]["hypervolume"] == pytest.approx(c["hypervolume"][search])
        for budget, limits in compare.BUDGETS.items():
            best, closest = pick(rs, limits)
            chosen = c["picks"][budget][search]
            assert chosen["within"] == (best is not None)
            assert chosen["result"]["trial_id"] == (best or closest)["trial_id"]
    text = (out / "report.md").read_text()
    assert "## Per-stage against uniform" in text and "latency_ratio_b1 ≤ 0.3" in text
    assert "packed_size_ratio ≤ 0.1" in text and (out / "compare_fronts.png").is_file()
    # The confirmation's grid: the anchor, then each distinct pick once.
    grid = json.loads((out / "confirm_space.json").read_text())["point"]["_value"]
    assert grid[0]["_name"] == "anchor"
    picked = {compare.point(p["result"]) for by in c["picks"].values() for p in by.values() if p["result"]}
    assert {tuple(g[k]["_value"][0] for k in compare.POINT_KEYS) for g in grid[1:]} == picked
    assert "uniform hypervolume" in capsys.readouterr().out


def test_a_confirmation_is_matched_to_the_picks_it_retrained(registry, tmp_path):
    # The per-stage search stands in for its own confirmation: each of its picks finds itself, the uniform ones
    # (not among its trials) nothing.
    out = tmp_path / "report"
    main(["compare", IDS["uniform"], IDS["stagewise"], "--confirm", IDS["stagewise"], "--registry", str(registry),
          "--out", str(out)])
    rows = json.loads((out / "report.json").read_text())["comparison"]["confirmation"]
    assert len(rows) == 2 * len(compare.BUDGETS)
    for r in rows:
        if r["search"] == "stagewise":
            assert r["cpu_val_acc"] == r["proxy_val_acc"] and r["cpu_test_acc"] == r["proxy_test_acc"]
        elif tuple(r["point"]) not in {tuple(x["point"]) for x in rows if x["search"] == "stagewise"}:
            assert r["cpu_val_acc"] is None and "proxy_ranks_right" not in r
    assert "Confirmation: the picks re-trained" in (out / "report.md").read_text()


def test_pick_keeps_working_on_a_search(registry, capsys):
    with pytest.raises(SystemExit) as none:
        main(["pick", IDS["stagewise"], "--registry", str(registry), "--max-latency-ratio-b1", "0.0001"])
    assert none.value.code == 1 and "none of" in capsys.readouterr().out
    main(["pick", IDS["uniform"], "--registry", str(registry), "--max-latency-ratio-b1", "10"])
    assert "best within latency_ratio_b1 <= 10" in capsys.readouterr().out


def test_an_unknown_experiment_is_one_line(registry):
    with pytest.raises(SystemExit, match="report compare: unknown experiment id 'nope'"):
        main(["compare", "nope", IDS["stagewise"], "--registry", str(registry)])
