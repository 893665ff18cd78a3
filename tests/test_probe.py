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


def test_a_model_the_full_cache_could_not_keep_is_not_called_cached(tmp_path, monkeypatch, capsys):
    import torch

    import common.cache
    from common.cache import ArtifactCache
    from common.context import StageContext
    from common.data import load_splits, make_loaders
    from common.metrics import LatencySetting
    from common.stages import dense_stage
    from common.train import TrainConfig
    from tests.test_bad_input import full_disk

    splits = load_splits("synthetic", tmp_path, train_limit=64, eval_limit=32)
    recipe = TrainConfig(epochs=1, lr=0.02, schedule="cosine", warmup_fraction=0.0, print_freq=100)
    ctx = StageContext(loaders=make_loaders(splits, 32, seed=0), labels={"val": splits.val_labels,
                       "test": splits.test_labels}, device=torch.device("cpu"), cache=ArtifactCache(tmp_path / "c"),
                       data_key={"data": splits.fingerprint}, num_classes=splits.num_classes,
                       image_shape=tuple(splits.train_images.shape[1:]), seed=0, train=recipe, finetune=recipe,
                       qat=recipe, latency=LatencySetting(threads=1, warmup=1, repeats=1))
    tiny = {"blocks": [1], "widths": [8], "activation": "relu", "kernel_size": 3}
    full_disk(monkeypatch, common.cache)
    model, _ = dense_stage(ctx, tiny)
    out = capsys.readouterr().out
    assert "no space left on device" in out and "trained, not cached" in out and "trained and cached" not in out
    assert model(torch.zeros(1, *ctx.image_shape)).shape == (1, splits.num_classes)  # the model in memory works


@pytest.mark.parametrize("command", ["list", "prune"])
def test_cache_commands_on_a_missing_folder_name_it(tmp_path, capsys, command):
    from common.cli.cache import main

    missing = tmp_path / "no-such-cache"
    assert main([command, "--cache-dir", str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err and "\n" not in err.strip()


PARETO_SMOKE = "experiments/pareto/config.smoke.yml"


@pytest.mark.parametrize("change, named", [
    (("val_acc: maximize", "val_accuracy: maximize"), "objective 'val_accuracy'"),
    (("latency_ratio_b1: minimize", "latency_ratio_b1: min"), "direction 'min'"),
    (("population_size: 4", "population: 4"), "classArgs population: unknown"),
    (("searchSpaceFile: search_space.json", 'searchSpace: {w: {_type: normal, _value: [0, 1]}}'),
     "key 'w': type 'normal'"),
])
def test_configs_check_names_what_would_stall_or_kill_the_pareto_tuner(tmp_path, capsys, change, named):
    """Before nnictl create: one line naming the key, not an experiment RUNNING with 0 trials or 'did not connect'."""
    from common.cli.configs import main
    from tests.nnictl_utils import ROOT

    text = (ROOT / PARETO_SMOKE).read_text()
    assert change[0] in text
    config = tmp_path / "pareto" / "config.yml"
    config.parent.mkdir()
    config.write_text(text.replace(*change))
    (tmp_path / "pareto" / "search_space.json").write_text((ROOT / "experiments/pareto/search_space.json").read_text())
    assert main(["check", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert named in err and str(config) in err and "\n" not in err


def test_configs_check_passes_every_committed_config(capsys):
    from common.cli.configs import main
    from tests.nnictl_utils import ROOT

    configs = sorted(str(p) for p in (ROOT / "experiments").glob("*/config*.yml"))
    assert main(["check", *configs]) == 0, capsys.readouterr().err


def test_a_skipped_portability_check_does_not_say_avx2(monkeypatch):
    import numpy as np

    from common import portability

    monkeypatch.setattr(portability, "unavailable_reason", lambda: "qemu-x86_64 not found")
    result = portability.check_avx2("m.onnx", np.zeros((2, 1, 4, 4), np.float32), {"ort": np.zeros(2)},
                                    min_agreement=0.99, log=lambda line: None)
    keys = result.result_keys()
    assert keys["portability_check_used"] == "skipped" and keys["portable_avx2"] is None
    assert keys["portability_note"] == "qemu-x86_64 not found"


def test_a_contended_latency_is_said_in_the_log_and_the_report(monkeypatch, capsys):
    from dataclasses import replace

    from common import metrics
    from common.report import load_export, markdown
    from tests.test_report import EXPORT

    monkeypatch.setattr(metrics.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(metrics.os, "getloadavg", lambda: (3.4, 2.0, 1.0))
    assert metrics.contention(1)["latency_contended"] is True
    assert "load average 3.40 on 2 cores, latency_contended" in capsys.readouterr().out
    monkeypatch.setattr(metrics.os, "getloadavg", lambda: (1.1, 2.0, 1.0))
    assert metrics.contention(1)["latency_contended"] is False and capsys.readouterr().out == ""

    records = load_export(EXPORT)
    assert "latency_contended" not in markdown(records, [])
    busy = [replace(r, result={**r.result, "latency_contended": True}) if i == 0 else r for i, r in enumerate(records)]
    assert f"1 trial(s) timed latencies on a busy machine (`latency_contended`: {records[0].trial_id})" in \
        markdown(busy, [])


@pytest.mark.parametrize("script", ["baseline", "nas"])
@pytest.mark.parametrize("flag", [["--finetune-epochs", "3"], ["--trial-budget", "2"], ["--distill-weight", "0.5"]])
def test_trials_that_fine_tune_nothing_refuse_fine_tuning_flags(script, flag, monkeypatch, capsys):
    """baseline and nas trained as if the flag were not there, yet echoed it in their result."""
    import importlib

    monkeypatch.setattr(sys, "argv", [f"{script}.py", *flag])
    with pytest.raises(SystemExit):  # at parse time, before any data is loaded
        importlib.import_module(f"trials.{script}").main()
    assert f"unrecognized arguments: {' '.join(flag)}" in capsys.readouterr().err
