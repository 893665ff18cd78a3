"""Bad input and faults that used to lose finished work or end in a bare traceback (issue: one frozen record)."""

import errno
import json
import os
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
