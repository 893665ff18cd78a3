import argparse
import json
import multiprocessing as mp
import time

import pytest
import torch

from common.cache import ArtifactCache, CacheError, key_digest

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
