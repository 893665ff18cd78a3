"""Artifact cache: train the dense baseline (or any stage) once, share it across trials and experiments.

An entry is a directory `<root>/<name>-<hash of key>/` with `model.pt` (a plain state dict, loaded
with `weights_only=True`) and `meta.json` (the key, metrics, and the sha256 of `model.pt`).
- Concurrent trials needing the same missing entry serialise on a file lock: one builds, the
  others wait and then load it.
- Writes are atomic (temp file, fsync, rename); `meta.json` is written last and is the commit
  marker, so a half-written entry is never mistaken for a finished one.
- A corrupt entry (hash mismatch, unreadable file) is moved aside, never deleted, with a warning,
  and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

StateDict = dict[str, torch.Tensor]
Builder = Callable[[], tuple[StateDict, dict[str, Any]]]


class CacheError(RuntimeError):
    pass


def default_home() -> Path:
    """Root for data and artifacts: $NNI_SUITE_HOME, else ~/.cache/nni-compression-suite.

    Point it at shared storage (NFS, a mounted bucket) when trials run on several machines.
    """
    env = os.environ.get("NNI_SUITE_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nni-compression-suite"


def key_digest(key: dict[str, Any]) -> str:
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactCache:
    def __init__(self, root: str | os.PathLike | None = None, lock_timeout_s: float = 24 * 3600) -> None:
        self.root = Path(root).expanduser() if root is not None else default_home() / "artifacts"
        self.lock_timeout_s = lock_timeout_s

    def entry_dir(self, name: str, key: dict[str, Any]) -> Path:
        return self.root / f"{name}-{key_digest(key)}"

    def load(self, name: str, key: dict[str, Any]) -> tuple[StateDict, dict[str, Any]] | None:
        """The entry if it is complete and intact; None if absent. Corrupt entries are moved aside."""
        entry = self.entry_dir(name, key)
        meta_path, model_path = entry / "meta.json", entry / "model.pt"
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("key") != json.loads(json.dumps(key, default=str)):
                raise CacheError("its key does not match the requested one")
            if _sha256(model_path) != meta.get("sha256"):
                raise CacheError("model.pt does not match the sha256 recorded in meta.json")
            state = torch.load(model_path, map_location="cpu", weights_only=True)
        except (OSError, ValueError, CacheError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            self._quarantine(entry, err)
            return None
        return state, meta.get("info", {})

    def _quarantine(self, entry: Path, err: BaseException) -> None:
        aside = entry.with_name(f"{entry.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        warnings.warn(f"artifact cache entry {entry} is corrupt ({err}); moved to {aside} and rebuilding", stacklevel=3)
        os.replace(entry, aside)

    def save(self, name: str, key: dict[str, Any], state: StateDict, info: dict[str, Any]) -> Path:
        entry = self.entry_dir(name, key)
        entry.mkdir(parents=True, exist_ok=True)
        (entry / "meta.json").unlink(missing_ok=True)  # uncommit first: a crash below leaves no stale marker
        _atomic_write(entry / "model.pt", lambda f: torch.save(state, f))
        meta = {"key": key, "info": info, "sha256": _sha256(entry / "model.pt"), "created": time.time()}
        payload = json.dumps(meta, indent=2, sort_keys=True, default=str).encode()
        _atomic_write(entry / "meta.json", lambda f: f.write(payload))
        return entry

    def get_or_build(self, name: str, key: dict[str, Any], build: Builder) -> tuple[StateDict, dict[str, Any], bool]:
        """Load the entry or build it under a lock; returns (state_dict, info, built_here)."""
        hit = self.load(name, key)
        if hit is not None:
            return (*hit, False)
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / f"{self.entry_dir(name, key).name}.lock"
        try:
            with FileLock(str(lock_path), timeout=self.lock_timeout_s):
                hit = self.load(name, key)  # another trial may have built it while we waited
                if hit is not None:
                    return (*hit, False)
                state, info = build()
                self.save(name, key, state, info)
                return state, info, True
        except Timeout as err:
            raise CacheError(
                f"waited {self.lock_timeout_s:.0f}s for {lock_path}; another trial holds it. "
                "If no trial is running, delete the lock file."
            ) from err
