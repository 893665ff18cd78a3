import argparse
import errno
import json
import multiprocessing as mp
import os
import re
import socket
import stat
import threading
import time

import pytest
import torch

from common import cache as cache_module
from common.cache import ArtifactCache, CacheError, CacheReadError, key_digest
from common.cli.cache import main as cache_command

KEY = {"stage": "dense", "seed": 0}


def tiny_state(value: float = 1.0):
    return {"w": torch.full((3,), value)}


def test_build_once_then_load(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return tiny_state(), {"acc": 0.5}

    state, info, built = cache.get_or_build("dense", KEY, build)
    assert built and info == {"acc": 0.5} and torch.equal(state["w"], torch.ones(3))
    state2, info2, built2 = cache.get_or_build("dense", KEY, build)
    assert not built2 and info2 == {"acc": 0.5} and torch.equal(state2["w"], torch.ones(3))
    assert len(calls) == 1


def test_keys_separate_entries(tmp_path):
    cache = ArtifactCache(tmp_path)
    cache.get_or_build("dense", {"seed": 0}, lambda: (tiny_state(0), {}))
    state, _, built = cache.get_or_build("dense", {"seed": 1}, lambda: (tiny_state(1), {}))
    assert built and torch.equal(state["w"], torch.ones(3))
    assert key_digest({"a": 1, "b": 2}) == key_digest({"b": 2, "a": 1})


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage_meta"])
def test_corrupt_entry_is_moved_aside_and_rebuilt(tmp_path, damage):
    cache = ArtifactCache(tmp_path)
    cache.get_or_build("dense", KEY, lambda: (tiny_state(1), {}))
    entry = cache.entry_dir("dense", KEY)
    model_pt = entry / "model.pt"
    if damage == "truncate":
        model_pt.write_bytes(model_pt.read_bytes()[:40])
    elif damage == "flip":
        data = bytearray(model_pt.read_bytes())
        data[-20] ^= 0xFF
        model_pt.write_bytes(bytes(data))
    else:
        (entry / "meta.json").write_text("{not json")
    with pytest.warns(UserWarning, match="corrupt"):
        state, _, built = cache.get_or_build("dense", KEY, lambda: (tiny_state(2), {}))
    assert built and torch.equal(state["w"], torch.full((3,), 2.0))
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1, "the damaged entry must be kept for inspection, not deleted"
    assert cache.load("dense", KEY) is not None


def test_entry_without_meta_is_not_used(tmp_path):
    """A crash between writing model.pt and meta.json leaves an uncommitted entry."""
    cache = ArtifactCache(tmp_path)
    entry = cache.entry_dir("dense", KEY)
    entry.mkdir(parents=True)
    torch.save(tiny_state(9), entry / "model.pt")
    assert cache.load("dense", KEY) is None
    state, _, built = cache.get_or_build("dense", KEY, lambda: (tiny_state(1), {}))
    assert built and torch.equal(state["w"], torch.ones(3))


def test_failed_build_leaves_no_entry(tmp_path):
    cache = ArtifactCache(tmp_path)

    def boom():
        raise RuntimeError("training diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        cache.get_or_build("dense", KEY, boom)
    assert cache.load("dense", KEY) is None
    assert not list(cache.entry_dir("dense", KEY).parent.glob("**/*.tmp"))


def test_pickled_objects_are_refused(tmp_path):
    """Loads use weights_only=True: a checkpoint holding arbitrary objects is not unpickled."""
    cache = ArtifactCache(tmp_path)
    cache.save("dense", KEY, {"w": torch.ones(1), "obj": argparse.Namespace(x=1)}, {})
    with pytest.warns(UserWarning, match="corrupt"):
        assert cache.load("dense", KEY) is None


def _build_in_process(root, log_path, barrier):
    cache = ArtifactCache(root)
    barrier.wait()

    def build():
        with open(log_path, "a") as f:
            f.write("built\n")
        time.sleep(1.0)
        return tiny_state(3), {"who": "builder"}

    state, info, _ = cache.get_or_build("dense", KEY, build)
    assert torch.equal(state["w"], torch.full((3,), 3.0)) and info == {"who": "builder"}


def test_concurrent_processes_build_once(tmp_path):
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    log = tmp_path / "log.txt"
    procs = [ctx.Process(target=_build_in_process, args=(tmp_path / "c", log, barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert log.read_text().count("built") == 1


def test_lock_timeout_names_the_lock(tmp_path):
    from filelock import FileLock

    cache = ArtifactCache(tmp_path, lock_timeout_s=0.2)
    lock = tmp_path / f"{cache.entry_dir('dense', KEY).name}.lock"
    with FileLock(str(lock)), pytest.raises(CacheError, match="lock"):
        cache.get_or_build("dense", KEY, lambda: (tiny_state(), {}))


def test_meta_records_key_and_hash(tmp_path):
    cache = ArtifactCache(tmp_path)
    entry = cache.save("dense", KEY, tiny_state(), {"acc": 1})
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["key"] == KEY and len(meta["sha256"]) == 64


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_files_are_readable_as_the_umask_allows(tmp_path, umask, mode):
    """mkstemp alone makes 0600 files: another user of a shared cache could not load them."""
    old = os.umask(umask)
    try:
        entry = ArtifactCache(tmp_path).save("dense", KEY, tiny_state(), {})
    finally:
        os.umask(old)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in entry.iterdir()} == {"model.pt": mode, "meta.json": mode}


def test_unreadable_entry_is_reported_not_quarantined(tmp_path, monkeypatch):
    """Cannot read (permission) is not corrupt: the entry stays, nothing is rebuilt over it."""
    cache = ArtifactCache(tmp_path)
    entry = cache.save("dense", KEY, tiny_state(), {})
    (entry / "model.pt").chmod(0)
    if os.geteuid() == 0:  # root reads a 0000 file: raise what open() raises for any other user
        def denied(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

        monkeypatch.setattr(cache_module, "_sha256", denied)
    builds = []
    with pytest.raises(CacheReadError, match="cannot read .*Permission denied"):
        cache.get_or_build("dense", KEY, lambda: builds.append(1) or (tiny_state(2), {}))
    assert not builds and entry.is_dir() and not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    (entry / "model.pt").chmod(0o644)
    monkeypatch.undo()
    assert torch.equal(cache.load("dense", KEY)[0]["w"], torch.ones(3))


def test_a_waiting_trial_says_what_it_waits_for_and_who_holds_it(tmp_path):
    building, release = threading.Event(), threading.Event()

    def slow_build():
        building.set()
        release.wait(30)
        return tiny_state(5), {"who": "holder"}

    holder = threading.Thread(target=lambda: ArtifactCache(tmp_path).get_or_build("dense", KEY, slow_build))
    holder.start()
    assert building.wait(30)
    lines: list[str] = []
    waiter = ArtifactCache(tmp_path, wait_log_s=0.2, log=lines.append)
    threading.Timer(1.0, release.set).start()
    state, info, built = waiter.get_or_build("dense", KEY, lambda: pytest.fail("the waiter must not build"))
    holder.join(30)
    assert not built and info == {"who": "holder"} and torch.equal(state["w"], torch.full((3,), 5.0))
    name = cache_module.ArtifactCache(tmp_path).entry_dir("dense", KEY).name
    assert lines[0].startswith(f"cache: waiting for {name}")
    assert f"held by pid {os.getpid()} on host {socket.gethostname()}" in lines[0]
    assert any(re.search(r"still waiting for .* after \d+s: held by pid", line) for line in lines[1:-1]), lines
    assert re.match(r"cache: got .* after waiting \d+s", lines[-1])
    assert not list(tmp_path.glob("*.owner")), "the owner file goes with the lock"


def test_cache_command_lists_and_prunes_quarantine_and_stale_locks(tmp_path, capsys):
    from filelock import FileLock

    cache = ArtifactCache(tmp_path)
    cache.get_or_build("dense", KEY, lambda: (tiny_state(), {}))
    (cache.entry_dir("dense", KEY) / "meta.json").write_text("{not json")
    with pytest.warns(UserWarning, match="corrupt"):
        cache.get_or_build("dense", KEY, lambda: (tiny_state(), {}))  # quarantines the damaged one, rebuilds
    held = tmp_path / "other.lock"
    assert cache_command(["list", "--cache-dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "entries: 1" in listing and "quarantined: 1" in listing and "free (stale)" in listing
    with FileLock(str(held)):
        assert cache_command(["prune", "--cache-dir", str(tmp_path), "--dry-run"]) == 0
        assert len([p for p in tmp_path.iterdir() if ".corrupt-" in p.name]) == 1  # dry run: nothing gone
        assert cache_command(["prune", "--cache-dir", str(tmp_path)]) == 0
        assert "removed 2 item(s)" in capsys.readouterr().out  # the quarantined entry and the free lock
        assert held.exists(), "a lock somebody holds is kept"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [cache.entry_dir("dense", KEY).name, "other.lock"]
    assert cache.load("dense", KEY) is not None
