"""Bad input and faults that used to lose finished work, give a wrong result, stall, or end in a bare traceback
(issue: one frozen record; issue #27's probe findings)."""

import errno
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from common.cache import ArtifactCache, CacheReadError
from common.stages import KeepModelError, _keep
from trials.quant import get_parser


def _entry(cache: ArtifactCache) -> Path:
    cache.save("dense", {"k": 1}, {"w": torch.zeros(2)}, {"note": "x"})
    return cache.entry_dir("dense", {"k": 1})


def test_meta_json_that_is_not_an_object_is_moved_aside(tmp_path):
    cache = ArtifactCache(tmp_path)
    entry = _entry(cache)
    (entry / "meta.json").write_text("null")
    with pytest.warns(UserWarning, match="not an object"):
        assert cache.load("dense", {"k": 1}) is None
    assert not entry.exists() and list(tmp_path.glob("dense-*.corrupt-*"))


def test_an_unreadable_entry_folder_says_how_to_fix_it(tmp_path, monkeypatch):
    cache = ArtifactCache(tmp_path)
    meta = _entry(cache) / "meta.json"
    real_exists = Path.exists

    def exists(self):  # what a folder without read/execute permission does (root would bypass chmod)
        if self == meta:
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self)

    monkeypatch.setattr(Path, "exists", exists)
    with pytest.raises(CacheReadError, match="left in place"):
        cache.load("dense", {"k": 1})


def full_disk(monkeypatch, module) -> None:
    """Every file `module` opens with os.fdopen is on a full disk: each write fails with ENOSPC, as the kernel's."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(module.os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))


def test_a_full_disk_while_caching_keeps_the_built_model_and_says_so(tmp_path, monkeypatch):
    import common.cache

    lines = []
    cache = ArtifactCache(tmp_path, log=lines.append)
    full_disk(monkeypatch, common.cache)
    state, info, built = cache.get_or_build("dense", {"k": 2}, lambda: ({"w": torch.ones(1)}, {"ok": True}))
    assert built and info == {"ok": True} and torch.equal(state["w"], torch.ones(1))
    assert any("could not save" in line and "no space left on device" in line for line in lines), lines
    assert not cache.entry_dir("dense", {"k": 2}).exists() and not cache.saved("dense", {"k": 2})


@pytest.mark.parametrize("target", ["/proc/m.onnx", "/dev/null"])
def test_keep_model_where_no_file_can_land_fails_at_parse_time(target):
    from common.trial import parse_params

    with pytest.raises(ValueError, match="--keep-model"):
        parse_params(get_parser(), ["--keep-model", target])


def test_keep_model_on_a_full_disk_fails_and_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    import common.cache

    model = tmp_path / "model.int8.onnx"
    model.write_bytes(b"onnx" * 1000)
    (tmp_path / "nni-out").mkdir()
    monkeypatch.setenv("NNI_OUTPUT_DIR", str(tmp_path / "nni-out"))
    assert _keep(model, str(tmp_path / "kept.onnx")) == str(tmp_path / "kept.onnx")
    assert (tmp_path / "kept.onnx").read_bytes() == (tmp_path / "nni-out" / "model.int8.onnx").read_bytes() == \
        model.read_bytes()
    (tmp_path / "kept.onnx").unlink()
    (tmp_path / "nni-out" / "model.int8.onnx").unlink()
    full_disk(monkeypatch, common.cache)
    with pytest.raises(KeepModelError, match=f"--keep-model {tmp_path / 'full.onnx'}: no space left on device"):
        _keep(model, str(tmp_path / "full.onnx"))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["model.int8.onnx", "nni-out"]  # nothing partial anywhere
    assert "could not keep the deployed model" in capsys.readouterr().out  # NNI's copy: a warning, not the failure


def _experiment(tmp_path: Path, trials: dict[str, tuple[str, str, object]]) -> Path:
    """A registry and database: per trial id, its last event, the last line of its trial.log, its final result."""
    from tests.test_report import nni_database

    exp_dir = tmp_path / "logs" / "odd00001"
    db = nni_database(exp_dir)
    for t, (trial_id, (event, last_line, final)) in enumerate(trials.items()):
        trial_dir = exp_dir / "environments" / "local-env" / "trials" / trial_id
        trial_dir.mkdir(parents=True)
        # As NNI 3.0 writes a trial's stdout (copied from a real trial.log): `[time] PRINT <line>`.
        (trial_dir / "trial.log").write_text(f"[2026-12-08 02:55:22] PRINT session: ...\n"
                                             f"[2026-12-08 02:58:29] PRINT {last_line}\n")
        db.execute("INSERT INTO TrialJobEvent VALUES (?, ?, ?, NULL, ?, ?, NULL, 'local-env')",
                   (t, trial_id, event, str(trial_dir), t))
        if final is not None:
            db.execute("INSERT INTO MetricData VALUES (?, ?, '0', 'FINAL', 0, ?)",
                       (t, trial_id, json.dumps(json.dumps(final))))
    db.commit()
    db.close()
    registry = tmp_path / ".experiment"
    registry.write_text(json.dumps({"odd00001": {"id": "odd00001", "logDir": str(tmp_path / "logs")}}))
    return registry


def test_a_trial_killed_by_nnictl_stop_is_failed_and_a_plain_number_is_named(tmp_path, capsys):
    from common.cli.report import main
    from common.report import load_experiment

    registry = _experiment(tmp_path, {"kill1": ("RUNNING", "TRIAL FAILED: interrupted (KeyboardInterrupt)", None),
                                      "plain": ("SUCCEEDED", "done", 0.93)})
    records = {r.trial_id: r for r in load_experiment("odd00001", registry)}
    assert records["kill1"].status == "FAILED"
    with pytest.raises(SystemExit) as end:
        main(["odd00001", "--registry", str(registry), "--out", str(tmp_path / "out")])
    assert "plain SUCCEEDED parameters=null: reported 0.93, not a result of this suite" in str(end.value)


def test_a_malformed_export_or_an_unwritable_out_is_one_line(tmp_path):
    from common.cli.report import main

    bad = tmp_path / "export.json"
    bad.write_text('[{"value": 1}]')
    with pytest.raises(SystemExit, match="is not an `nnictl experiment export --type json` file"):
        main(["--export", str(bad)])
    (tmp_path / "a-file").write_text("")
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"trialJobId": "t1", "value": json.dumps({"default": 0.5, "accuracy": 0.5})}]))
    with pytest.raises(SystemExit, match="cannot write the report to"):
        main(["--export", str(good), "--out", str(tmp_path / "a-file" / "report")])


# ------------------------------------------------------------------------------------------------
# Findings of the probe (issue #27)


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
