"""Bad input and faults that used to lose finished work or end in a bare traceback (issue: one frozen record)."""

import os
from pathlib import Path

import pytest
import torch

from common.cache import ArtifactCache, CacheReadError
from common.stages import _keep
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


def test_a_full_disk_while_caching_keeps_the_built_model_and_says_so(tmp_path, monkeypatch):
    lines = []
    cache = ArtifactCache(tmp_path, log=lines.append)

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file: No space left on device")

    monkeypatch.setattr(torch, "save", full)
    state, info, built = cache.get_or_build("dense", {"k": 2}, lambda: ({"w": torch.ones(1)}, {"ok": True}))
    assert built and info == {"ok": True} and torch.equal(state["w"], torch.ones(1))
    assert any("could not save" in line and "no space left on device" in line for line in lines), lines
    assert not cache.entry_dir("dense", {"k": 2}).exists()  # no half-written entry


@pytest.mark.parametrize("target", ["/proc/m.onnx", "/dev/null"])
def test_keep_model_where_no_file_can_land_fails_at_parse_time(target):
    from common.trial import parse_params

    with pytest.raises(ValueError, match="--keep-model"):
        parse_params(get_parser(), ["--keep-model", target])


def test_a_model_that_cannot_be_kept_is_reported_not_raised(tmp_path, monkeypatch, capsys):
    model = tmp_path / "model.int8.onnx"
    model.write_bytes(b"onnx")
    monkeypatch.delenv("NNI_OUTPUT_DIR", raising=False)
    assert _keep(model, str(tmp_path / "missing-dir" / "kept.onnx")) == ""
    assert "could not keep the deployed model" in capsys.readouterr().out
    assert _keep(model, str(tmp_path / "kept.onnx")) == str(tmp_path / "kept.onnx")
    assert os.path.getsize(tmp_path / "kept.onnx") == 4
