"""The report command on recorded experiments (fixtures copied from real pruning and pipeline smoke runs)."""

import json
import shutil
from pathlib import Path

import pytest

from common.cli.report import main
from common.report import (
    ReportError,
    TrialRecord,
    load_experiment,
    load_export,
    pareto_front,
    pipeline_steps,
    summary_rows,
)

FIXTURES = Path(__file__).parent / "fixtures"
EXPORT = FIXTURES / "pruning_smoke_export.json"
DB = FIXTURES / "pruning_smoke_nni.sqlite"
EXP_ID = json.loads((FIXTURES / "pruning_smoke_meta.json").read_text())["id"]
# The pipeline smoke config (budget: int8 latency b64 <= 10% of dense ResNet-18's, hard penalty), run by nnictl.
PIPELINE_ID = json.loads((FIXTURES / "pipeline_smoke_meta.json").read_text())["id"]


@pytest.fixture
def registry(tmp_path):
    """A nnictl registry holding the recorded runs, laid out as NNI lays it out."""
    entries = {}
    for exp_id, db in ((EXP_ID, DB), (PIPELINE_ID, FIXTURES / "pipeline_smoke_nni.sqlite")):
        db_dir = tmp_path / "logs" / exp_id / "db"
        db_dir.mkdir(parents=True)
        shutil.copy(db, db_dir / "nni.sqlite")
        entries[exp_id] = {"id": exp_id, "logDir": str(tmp_path / "logs"), "status": "DONE"}
    path = tmp_path / ".experiment"
    path.write_text(json.dumps(entries))
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


def test_report_json_summary_holds_numbers_and_report_md_formats_them(registry, tmp_path):
    out = tmp_path / "report"
    main([EXP_ID, "--registry", str(registry), "--out", str(out)])
    summary = json.loads((out / "report.json").read_text())["summary"]
    for row in summary:
        # Numbers, plus what each size and latency is (labels, not formatted numbers).
        numbers = {k: v for k, v in row.items() if k not in ("model", "size_kind", "latency_on", "portable_avx2")}
        assert all(v is None or isinstance(v, (int, float)) for v in numbers.values()), row
    dense, pruned = summary
    results = [r.result for r in load_experiment(EXP_ID, registry)]
    best = max(results, key=lambda r: r["default"])
    assert dense["accuracy"] == pytest.approx(sum(r["dense_test_acc"] for r in results) / len(results))
    assert dense["delta"] is None and pruned["accuracy"] == best["accuracy"]
    # Recorded before sizes named their kind: a pruning trial's size is its state dict, and the table says so.
    assert dense["size_kind"] == pruned["size_kind"] == "state_dict"
    assert pruned["delta"] == best["delta_test_acc"]
    line = next(x for x in (out / "report.md").read_text().splitlines() if x.startswith("| best pruned"))
    assert f"| {100 * best['accuracy']:.2f} % | {100 * best['delta_test_acc']:+.2f} pt |" in line


def test_failed_trials_are_listed_not_summarised(registry):
    records = load_experiment(EXP_ID, registry) + [TrialRecord("x", "bad01", "FAILED", None)]
    assert all("bad01" not in r["model"] for r in summary_rows(records))


def test_unknown_experiment_is_a_clear_error(registry, capsys):
    with pytest.raises(ReportError, match="unknown experiment id 'nope1234'"):
        load_experiment("nope1234", registry)
    with pytest.raises(SystemExit, match="unknown experiment id"):
        main(["nope1234", "--registry", str(registry)])


def test_no_results_is_a_clear_error():
    with pytest.raises(ReportError, match="no trial has a result of this suite"):
        summary_rows([TrialRecord("x", "t1", "RUNNING", None)])


def test_pipeline_budget_and_steps(registry, tmp_path):
    records = load_experiment(PIPELINE_ID, registry)
    results = [r.result for r in records]
    assert results and all(r.ok for r in records) and {r["trial"] for r in results} == {"pipeline"}
    over = [r for r in results if not r["within_budget"]]
    within = [r for r in results if r["within_budget"]]
    assert over and within  # the recorded run has both, so the report's marking is exercised
    for r in results:
        assert r["within_budget"] == (r["latency_ratio_b64"] <= r["budget_latency_ratio_b64"])
    best = max(results, key=lambda r: r["default"])
    assert best["within_budget"]  # hard penalty: the best trial meets the budget

    steps = pipeline_steps(best)
    assert [s["step"].split(",")[0] for s in steps] == [
        "dense ResNet-18 (baseline)", "architecture (trained)", "pruned + fine-tuned", "pruned",
        "quantized (NNI simulation)", "deployed int8"]
    dense, pruned, deployed = steps[0], steps[2], steps[-1]
    assert dense["speedup_b1"] == 1.0 and dense["size_ratio"] == 1.0
    assert deployed["test_acc"] == best["int8_test_acc"] and deployed["latency_ms_b64"] == best["latency_ms_b64"]
    assert deployed["speedup_b64"] == pytest.approx(best["speedup_b64"])
    assert deployed["size_ratio"] == pytest.approx(best["size_ratio"])
    assert deployed["size_ratio"] < pruned["size_ratio"] < 1.0

    out = tmp_path / "report"
    main([EXP_ID, PIPELINE_ID, "--registry", str(registry), "--out", str(out)])
    text = (out / "report.md").read_text()
    assert "best pruned" in text and "best combined (NAS → prune → quantize)" in text
    assert "What each step cost" in text
    # What to ship, kept in the trial's output dir: named relative to the NNI experiments folder (no machine path).
    assert f"Deployed model: `{best['int8_model'].split('nni-experiments/')[1]}`" in text
    assert text.count("| **over** |") == len(over)
    data = json.loads((out / "report.json").read_text())
    assert len(data["trials"]) == len(load_experiment(EXP_ID, registry)) + len(records)
    assert data["summary"][-1]["model"].startswith("best combined")
    assert {t["result"]["trial"] for t in data["trials"]} == {"prune", "pipeline"}
    combined = next(line for line in text.splitlines() if line.startswith("| best combined"))
    assert f"sparsity={best['sparsity']}" in combined and f"algorithm={best['algorithm']}" in combined


def nni_database(exp_dir: Path):
    """An empty database with the two tables of NNI 3.0's that the report reads, at <exp_dir>/db/nni.sqlite."""
    import sqlite3

    (exp_dir / "db").mkdir(parents=True)
    db = sqlite3.connect(exp_dir / "db" / "nni.sqlite")
    db.execute("CREATE TABLE TrialJobEvent (timestamp integer, trialJobId text, event text, data text, "
               "logPath text, sequenceId integer, message text, environmentId text)")
    db.execute("CREATE TABLE MetricData (timestamp integer, trialJobId text, parameterId text, type text, "
               "sequence integer, data text)")
    return db


def failed_registry(tmp_path: Path, exp_id: str = "fail0001") -> Path:
    """A registry and database of an experiment whose trials all FAILED, with trial.log files where NNI 3.0
    writes them; one trial's logPath is left out (read from the layout instead)."""
    exp_dir = tmp_path / "logs" / exp_id
    db = nni_database(exp_dir)
    trials = {"aaaaa": ({"pruner": "fpgm", "sparsity": 1.5}, "sparsity must be strictly between 0 and 1, got 1.5"),
              "bbbbb": ({"pruner": "l1", "sparsity": 0.5}, "NonFiniteLossError: NaN/inf training loss")}
    for t, (trial_id, (params, reason)) in enumerate(trials.items()):
        trial_dir = exp_dir / "environments" / "local-env" / "trials" / trial_id
        trial_dir.mkdir(parents=True)
        # As NNI 3.0 writes a trial's stdout (copied from a real trial.log): `[time] PRINT <line>`.
        (trial_dir / "trial.log").write_text(f"[2026-12-08 02:55:22] PRINT session: ...\n"
                                             f"[2026-12-08 02:55:23] PRINT TRIAL FAILED: {reason}\n\n")
        log_path = str(trial_dir) if trial_id == "aaaaa" else None
        shown = json.dumps({"parameter_id": t, "parameter_source": "algorithm", "parameters": params})
        db.execute("INSERT INTO TrialJobEvent VALUES (?, ?, 'WAITING', ?, ?, ?, NULL, 'local-env')",
                   (10 * t, trial_id, shown, log_path, t))
        db.execute("INSERT INTO TrialJobEvent VALUES (?, ?, 'FAILED', NULL, ?, ?, NULL, 'local-env')",
                   (10 * t + 5, trial_id, log_path, t))
    db.commit()
    db.close()
    registry = tmp_path / ".experiment"
    registry.write_text(json.dumps({exp_id: {"id": exp_id, "logDir": str(tmp_path / "logs"), "status": "DONE"}}))
    return registry


def test_all_failed_experiment_lists_each_trial_and_why(tmp_path):
    registry = failed_registry(tmp_path)
    records = load_experiment("fail0001", registry)
    assert [(r.status, r.parameters["sparsity"]) for r in records] == [("FAILED", 1.5), ("FAILED", 0.5)]
    with pytest.raises(SystemExit) as info:
        main(["fail0001", "--registry", str(registry), "--out", str(tmp_path / "out")])
    message = str(info.value)
    assert "no trial has a result of this suite yet" in message and "its 2 trial(s)" in message
    assert 'aaaaa FAILED parameters={"pruner": "fpgm", "sparsity": 1.5}: TRIAL FAILED: sparsity must be' in message
    assert 'bbbbb FAILED parameters={"pruner": "l1", "sparsity": 0.5}: TRIAL FAILED: NonFiniteLossError' in message


def test_header_names_each_cpu_and_warns_when_trials_ran_on_several(tmp_path):
    from common.report import markdown, write_report

    def record(trial_id, cpu, isa, scheme):
        return TrialRecord("exp", trial_id, "SUCCEEDED", {
            "default": 0.9, "trial": "quant", "profile": "cpu", "dataset": "fashion-mnist", "val_acc": 0.9,
            "test_acc": 0.9, "accuracy": 0.9, "cpu_model": cpu, "cpu_isa": isa, "int8_scheme_used": scheme})

    vnni = record("a", "Intel Xeon 8480+", "avx2+avx512f+avx512_vnni", "full")
    one = markdown([vnni], [])
    assert "CPU: Intel Xeon 8480+ [avx2+avx512f+avx512_vnni], int8 scheme full (1 trials)." in one
    assert "different CPUs" not in one
    both = markdown([vnni, record("b", "AMD EPYC 7B13", "avx2", "reduced")], [])
    assert "AMD EPYC 7B13 [avx2], int8 scheme reduced" in both and "ran on 2 different CPUs" in both
    write_report([vnni], tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["machines"] == [
        {"cpu_model": "Intel Xeon 8480+", "cpu_isa": "avx2+avx512f+avx512_vnni", "int8_schemes": ["full"], "trials": 1}]


def test_headline_names_the_cpu_of_each_seed_and_takes_speed_from_one_run():
    from common.report import cpu_label, headline_markdown

    def row(model, cpus):
        return {"model": model, "seeds": len(cpus), "accuracy": 0.9, "accuracy_std": 0.0, "delta": -0.01,
                "delta_std": 0.0, "size_ratio": 0.25, "speedup_b1": 5.0, "speedup_b1_std": 0.0, "speedup_b64": 6.0,
                "speedup_b64_std": 0.0, "portable_avx2": "yes", "cpu": cpus["0"], "seed_cpus": cpus}

    rows = [row("QAT 8-bit from dense", {"0": "AMD EPYC [avx2]", "1": "Xeon [amx_int8]"}),
            row("dense", {"0": "Xeon [avx512_vnni]"})]
    own = headline_markdown(rows)
    assert own[0].endswith("| accuracy measured on (seed: CPU) |") and own[1].count("---") == 9
    assert own[2].endswith("| 5.00× | 6.00× | yes | 0: AMD EPYC [avx2]; 1: Xeon [amx_int8] |")
    assert own[3].endswith("| 0: Xeon [avx512_vnni] |")
    one_run = headline_markdown(rows, speed={"QAT 8-bit from dense": (3.4, 4.1)})
    assert "| 3.40× | 4.10× | yes |" in one_run[2] and "| – | – | yes |" in one_run[3]  # never mixed with trials'
    assert cpu_label({"cpu_model": "Intel(R) Xeon(R) Processor", "cpu_isa": "avx2+avx512f+avx512_vnni+amx_int8"}) \
        == "Intel Xeon Processor [amx_int8]"
    assert cpu_label({"cpu_model": "AMD EPYC", "cpu_isa": "avx2"}) == "AMD EPYC [avx2]" and cpu_label({}) == "?"


def test_recorded_cpu_report_is_real_data_and_rebuilds_from_its_json(tmp_path):
    """results/cpu holds Fashion-MNIST trials only, and its report.md is what this code writes from its report.json
    (the docs' tables are generated from both: tests/test_docs.py)."""
    root = FIXTURES.parents[1]
    recorded = json.loads((root / "results" / "cpu" / "report.json").read_text())
    finished = [t for t in recorded["trials"] if t["result"]]  # a FAILED trial (a missed int8 gate) has none
    assert {t["result"]["dataset"] for t in finished} == {"fashion-mnist"}
    assert all(t["status"] == "FAILED" for t in recorded["trials"] if not t["result"])
    main(["--from-report", str(root / "results" / "cpu" / "report.json"), "--out", str(tmp_path)])
    assert (tmp_path / "report.md").read_text() == (root / "results" / "cpu" / "report.md").read_text()


def test_a_superseded_experiment_is_left_out(registry, tmp_path):
    main([EXP_ID, "--registry", str(registry), "--out", str(tmp_path / "first")])
    with pytest.raises(SystemExit, match="report: no trial has a result"):
        main(["--from-report", str(tmp_path / "first" / "report.json"), "--exclude", EXP_ID, "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--exclude nothere: no such experiment"):
        main(["--from-report", str(tmp_path / "first" / "report.json"), "--exclude", "nothere", "--out", str(tmp_path)])


def test_a_report_rebuilt_from_its_report_json_is_the_same_report(registry, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    main([EXP_ID, "--registry", str(registry), "--out", str(first)])
    main(["--from-report", str(first / "report.json"), "--out", str(again)])
    assert (again / "report.md").read_text() == (first / "report.md").read_text()
    assert json.loads((again / "report.json").read_text()) == json.loads((first / "report.json").read_text())
    (tmp_path / "bad.json").write_text('{"summary": []}')
    with pytest.raises(SystemExit, match="bad.json is not a report.json"):
        main(["--from-report", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x")])


@pytest.mark.parametrize("recorded", ["smoke", "cpu"])
def test_committed_reports_hold_numbers_for_scripts(recorded):
    summary = json.loads((FIXTURES.parents[1] / "results" / recorded / "report.json").read_text())["summary"]
    for row in summary:
        numbers = {k: v for k, v in row.items() if k not in ("model", "size_kind", "latency_on", "portable_avx2")}
        assert all(v is None or isinstance(v, (int, float)) for v in numbers.values()), row


def test_a_configuration_run_on_several_seeds_is_one_row_with_mean_std_and_n(tmp_path):
    from common.report import markdown, summary_rows

    def trial(tid, seed, sparsity, acc, dense, default):
        return TrialRecord("e1", tid, "SUCCEEDED", {
            "trial": "prune", "profile": "cpu", "dataset": "fashion-mnist", "pruner": "fpgm", "sparsity": sparsity,
            "seed": seed, "default": default, "test_acc": acc, "accuracy": acc, "dense_test_acc": dense,
            "delta_test_acc": acc - dense, "params": 10, "speedup_b1": 2.0 + seed, "speedup_b64": 4.0})

    records = [trial("a", 0, 0.5, 0.90, 0.92, 0.91), trial("b", 1, 0.5, 0.88, 0.91, 0.89),
               trial("c", 2, 0.5, 0.89, 0.93, 0.90), trial("c2", 2, 0.5, 0.89, 0.93, 0.90),  # a rerun of seed 2
               trial("d", 0, 0.7, 0.95, 0.92, 0.899)]  # ranked on validation, not on its lucky test
    row = next(r for r in summary_rows(records) if r["model"].startswith("best pruned"))
    assert row["model"].endswith("sparsity=0.5") and row["seeds"] == 3
    assert row["accuracy"] == pytest.approx(0.89) and row["accuracy_std"] == pytest.approx(0.01)
    assert row["delta"] == pytest.approx((-0.02 - 0.03 - 0.04) / 3)  # paired: each seed against its own dense
    assert row["speedup_b1"] == pytest.approx(3.0) and row["speedup_b1_std"] == pytest.approx(1.0)
    assert "| best pruned: pruner=fpgm, sparsity=0.5 | 3 | 89.00 ± 1.00 % | -3.00 ± 1.00 pt |" in markdown(records, [])


def test_pick_reads_the_same_sources_as_the_report_and_says_when_none_fits(tmp_path, capsys):
    recorded = FIXTURES.parents[1] / "results" / "cpu" / "report.json"
    trials = [t for t in json.loads(recorded.read_text())["trials"]
              if t["result"] and "latency_ratio_b1" in t["result"]]
    experiment = trials[0]["experiment"]
    ours = [t for t in trials if t["experiment"] == experiment]
    others = sorted({t["experiment"] for t in trials} - {experiment})
    excluded = [flag for e in others for flag in ("--exclude", e)]
    main(["pick", "--from-report", str(recorded), *excluded, "--max-latency-ratio-b1", "10"])
    best = max(ours, key=lambda t: t["result"]["val_acc"])
    assert f"trial {best['trial_id']}" in capsys.readouterr().out.splitlines()[0]
    with pytest.raises(SystemExit) as none:
        main(["pick", "--from-report", str(recorded), *excluded, "--max-latency-ratio-b1", "0.0001"])
    said = capsys.readouterr().out.splitlines()[0]
    assert none.value.code == 1 and "trials is within latency_ratio_b1 <= 0.0001; closest: trial" in said
    assert said.split("closest: trial ")[1].split()[0] in {t["trial_id"] for t in ours}


def test_a_running_experiment_whose_tuner_died_is_named_in_one_line(registry, capsys):
    """NNI keeps it RUNNING with no error anywhere (issue #27); the report says so and still reads its trials."""
    entries = json.loads(registry.read_text())
    entries[EXP_ID]["status"] = "RUNNING"
    registry.write_text(json.dumps(entries))
    assert load_experiment(EXP_ID, registry) and capsys.readouterr().err == ""  # its dispatcher runs
    log_dir = registry.parent / "logs" / EXP_ID / "log"
    log_dir.mkdir()
    shutil.copy(FIXTURES / "dead_dispatcher" / "log" / "dispatcher.log", log_dir)  # a real dead one's log
    assert load_experiment(EXP_ID, registry)
    assert capsys.readouterr().err.splitlines() == [
        f"warning: experiment {EXP_ID}: NNI's tuner process (dispatcher) exited (KeyError: 0); no trial will start "
        f"again though NNI says RUNNING (nnictl stop {EXP_ID})"]


def test_pick_never_ranks_latency_ratios_of_different_cpus_against_each_other(tmp_path, capsys):
    def trial(tid: str, cpu: str, val: float, latency: float) -> dict:
        return {"experiment": f"exp-{cpu}", "trial_id": tid, "status": "SUCCEEDED",
                "result": {"default": val, "val_acc": val, "trial": "quant", "latency_ratio_b1": latency,
                           "size_ratio": 0.25, "cpu_model": f"CPU {cpu}", "cpu_isa": cpu}}

    source = tmp_path / "report.json"
    source.write_text(json.dumps({"trials": [trial("x1", "avx2", 0.90, 0.5), trial("x2", "avx2", 0.91, 0.9),
                                             trial("y1", "amx", 0.95, 0.2)]}))
    main(["pick", "--from-report", str(source), "--max-latency-ratio-b1", "0.6"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("latency ratios measured on 2 CPUs")
    picked = [line for line in out if line.startswith("best within")]
    assert picked == ["best within latency_ratio_b1 <= 0.6: trial y1 (ratios measured on CPU amx [amx])",
                      "best within latency_ratio_b1 <= 0.6: trial x1 (ratios measured on CPU avx2 [avx2])"]
    main(["pick", "--from-report", str(source), "--max-size-ratio", "0.3"])  # a size ratio is the CPU's to none
    assert capsys.readouterr().out.splitlines()[0] == ("best within size_ratio <= 0.3: trial y1 "
                                                       "(ratios measured on CPU amx [amx])")


def test_headline_rows_keep_each_models_trials_apart_and_name_the_model():
    """MobileNetV2 trials get their own rows, labelled with the model and listed after ResNet-18's, which stay what
    they were; a pipeline row selects the model's own network (its registry key), not a NAS architecture."""
    from dataclasses import replace

    from common.report import headline_rows, load_report

    resnet = load_report(FIXTURES.parents[1] / "results" / "cpu" / "report.json")
    before = headline_rows(resnet)

    def mobilenet(r, **extra):
        return replace(r, trial_id=f"mnv2-{r.trial_id}", result={**r.result, "model": "mobilenet_v2", **extra})

    dense = next(r for r in resnet if r.ok and r.result["trial"] == "baseline")
    pipe = next(r for r in resnet if r.ok and r.result["trial"] == "pipeline" and r.result["distill_weight"] == 0.0)
    added = [mobilenet(dense, test_acc=0.5), mobilenet(pipe, arch_key="mobilenet_v2"),
             mobilenet(pipe, arch_key="b1-1-1_w16-32-64_tanh_k5", distill_weight=0.5)]  # a NAS net: no row
    rows = headline_rows([*resnet, *added])
    assert rows[:len(before)] == before
    labels = [r["model"] for r in rows[len(before):]]
    assert labels == ["dense MobileNetV2", "MobileNetV2: pipeline FPGM 50 % → QAT 8-bit"]
    assert rows[len(before)]["accuracy"] == 0.5 and rows[len(before)]["seeds"] == 1
