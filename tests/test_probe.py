"""Findings of the probe (issue #27): wrong results, stalls and tracebacks that bad input or a fault used to give."""

from __future__ import annotations

import sys

import pytest


class _Stop(Exception):
    """Raised by a stand-in stage once it has seen what the trial passed it."""


def test_prune_trial_prunes_by_its_stage_sparsity(monkeypatch):
    """--stage-sparsity reached the echo but not the pruner: the uniform --sparsity model was reported under it."""
    import trials.prune as prune

    seen = {}

    def pruned_stage(ctx, arch, pruner, sparsity, **options):
        seen.update(options, sparsity=sparsity)
        raise _Stop

    monkeypatch.setattr(sys, "argv", ["prune.py", "--stage-sparsity", "0.2,0.2,0.2,0.2"])
    monkeypatch.setattr(prune, "start_session", lambda args: args)
    monkeypatch.setattr(prune, "stage_context", lambda session: session)
    monkeypatch.setattr(prune, "dense_stage", lambda ctx, arch: (None, {}))
    monkeypatch.setattr(prune, "pruned_stage", pruned_stage)
    with pytest.raises(_Stop):
        prune.main()
    assert seen["stage_sparsity"] == pytest.approx((0.2, 0.2, 0.2, 0.2))


def _registry_of_one_trial(tmp_path):
    from tests.test_bad_input import _experiment

    return _experiment(tmp_path, {"t1": ("SUCCEEDED", "done", {"default": 0.5, "val_acc": 0.5})})


def test_report_takes_the_registry_folder_its_help_names(tmp_path):
    from common.report import load_experiment

    registry = _registry_of_one_trial(tmp_path)
    assert [r.trial_id for r in load_experiment("odd00001", registry.parent)] == ["t1"]


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_a_missing_or_corrupt_registry_is_one_line_naming_it(tmp_path, content):
    from common.cli.report import main

    registry = tmp_path / "nni-experiments" / ".experiment"
    if content is not None:
        registry.parent.mkdir()
        registry.write_text(content)
    with pytest.raises(SystemExit) as end:
        main(["odd00001", "--registry", str(registry), "--out", str(tmp_path / "out")])
    assert str(registry) in str(end.value) and "\n" not in str(end.value)


def test_an_export_of_plain_numbers_is_named_not_a_traceback(tmp_path):
    from common.cli.report import main

    export = tmp_path / "export.json"
    export.write_text('[{"trialJobId": "t1", "parameter": {}, "value": "0.93"}, '
                      '{"trialJobId": "t2", "parameter": {}, "value": 0.91}]')
    with pytest.raises(SystemExit, match=r"t1 SUCCEEDED parameters=\{\}: reported 0\.93, not a result of this suite"):
        main(["--export", str(export), "--out", str(tmp_path / "out")])


@pytest.mark.parametrize("budget", ["nan", "-0.3", "0"])
def test_pick_rejects_a_budget_that_admits_nothing_naming_its_flag(tmp_path, budget):
    from common.cli.report import pick_main

    registry = _registry_of_one_trial(tmp_path)
    with pytest.raises(SystemExit, match=f"--max-latency-ratio-b1 must be .*, got {float(budget)}"):
        pick_main(["odd00001", "--registry", str(registry), "--max-latency-ratio-b1", budget])
