"""End to end: the multi-objective smoke search through nnictl, then its front in the report and `report pick`."""

import json

import pytest

from common.cli.report import main as report_main
from common.stagewise import parse
from tests.nnictl_utils import ROOT, Experiment

CONFIG = ROOT / "experiments" / "pareto" / "config.smoke.yml"
OBJECTIVES = ("val_acc", "latency_ratio_b1", "packed_size_ratio")


@pytest.mark.e2e
def test_pareto_smoke_search_reports_a_front_and_picks_within_a_budget(tmp_path, capsys):
    # 3 of the config's 4 trials keep the suite short; the report, the front and `pick` need no more.
    with Experiment(CONFIG, tmp_path, maxTrialNumber=3) as exp:
        trials = exp.run_to_end(n_trials=3, timeout_s=1200)
        for t in trials:
            r = t["result"]
            assert all(isinstance(r[k], float) for k in OBJECTIVES), r
            widths = parse("stage_sparsity", r["stage_sparsity"])  # each trial ran a per-stage configuration
            assert len(widths) == 4 and r["int8_scheme_used"] == "reduced"
        dispatcher = (tmp_path / "nni-experiments" / exp.id / "log" / "dispatcher.log").read_text()
        assert "told as failed" not in dispatcher  # the tuner received every objective of every trial

        report_main([exp.id, "--out", str(tmp_path / "report")])
        front = json.loads((tmp_path / "report" / "report.json").read_text())["fronts"][exp.id]
        assert front["objectives"] == dict(zip(OBJECTIVES, ("maximize", "minimize", "minimize"), strict=True))
        assert 1 <= len(front["front"]) <= 3 and front["hypervolume"] > 0
        assert (tmp_path / "report" / f"front_{exp.id}.png").is_file()

        capsys.readouterr()
        report_main(["pick", exp.id, "--max-latency-ratio-b1", "10", "--max-size-ratio", "10"])
        picked = capsys.readouterr().out
        best = max(trials, key=lambda t: t["result"]["val_acc"])
        assert f"trial {best['id']}" in picked.splitlines()[0] and "int8_model" in picked
        with pytest.raises(SystemExit) as none:
            report_main(["pick", exp.id, "--max-latency-ratio-b1", "0.0001"])
        said = capsys.readouterr().out
        assert none.value.code == 1 and "none of 3 trials is within latency_ratio_b1 <= 0.0001" in said
