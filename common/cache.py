"""Artifact cache: train the dense baseline (or any stage) once, share it across trials and experiments.

An entry is a directory `<root>/<name>-<hash of key>/` with `model.pt` (a plain state dict, loaded
with `weights_only=True`) and `meta.json` (the key, metrics, and the sha256 of `model.pt`).
- Concurrent trials needing the same missing entry serialise on a file lock: one builds, the
  others wait and then load it.
- Writes are atomic (temp file, fsync, rename); `meta.json` is written last and is the commit
  marker, so a half-written entry is never mistaken for a finished one.
- A corrupt entry (hash mismatch, truncated or undecodable file) is moved aside, never deleted, with a
  warning, and rebuilt. An entry this process cannot *read* (permission, I/O error) is left alone and
  raises CacheReadError: on shared storage it is another user's good entry, not a broken one.
- Files are created with the umask's permissions (mkstemp alone would make them 0600), so with the
  usual umask 022 (or 002 for group-shared caches) other users' trials can load them.
- A trial waiting for another trial's build says, every `wait_log_s`, what it waits for, who holds the
  lock (pid, host and user from `<lock>.owner`) and for how long.

`scan` and `prune` list and tidy a cache; `python3 -m common.cli.cache list|prune` runs them.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import hashlib
import io
import json
import os
import pickle
import shutil
import socket
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


class CacheReadError(CacheError):
    """An entry exists but this process may not read it (permission, I/O): left in place, never quarantined."""


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


def _umask() -> int:
    """The process umask; read from /proc where possible, since os.umask() can only read it by setting it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode open() would give a new file: 0o666 less the umask."""
    return 0o666 & ~_umask()


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """`write(file)` into a temporary file beside `path`, synced and renamed onto it: `path` is the whole new
    content or untouched; a failed write (a full disk) leaves no partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())  # mkstemp makes 0600: other users of a shared cache could not read
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _log(message: str) -> None:
    print(message, flush=True)  # a trial's stdout is its trial.log


def lock_owner(lock_path: Path) -> dict[str, Any] | None:
    """What the holder of `lock_path` wrote into its `.owner` sidecar (pid, host, user, since), if anything."""
    try:
        owner = json.loads(Path(f"{lock_path}.owner").read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def describe_owner(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "held by an unknown process (no owner file)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
    return f"held by pid {owner.get('pid')} on host {owner.get('host')} (user {owner.get('user')}) since {since}"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no $USER
        return str(os.getuid())


class ArtifactCache:
    def __init__(self, root: str | os.PathLike | None = None, lock_timeout_s: float = 24 * 3600,
                 wait_log_s: float = 60.0, log: Callable[[str], None] = _log) -> None:
        self.root = Path(root).expanduser() if root is not None else default_home() / "artifacts"
        self.lock_timeout_s = lock_timeout_s
        self.wait_log_s = wait_log_s  # how often a waiting trial says what it waits for
        self.log = log

    def entry_dir(self, name: str, key: dict[str, Any]) -> Path:
        return self.root / f"{name}-{key_digest(key)}"

    def load(self, name: str, key: dict[str, Any]) -> tuple[StateDict, dict[str, Any]] | None:
        """The entry if it is complete and intact; None if absent. Corrupt entries are moved aside;
        an entry this process cannot read raises CacheReadError and stays where it is."""
        entry = self.entry_dir(name, key)
        meta_path, model_path = entry / "meta.json", entry / "model.pt"
        try:
            if not meta_path.exists():  # inside the try: an unreadable entry folder raises PermissionError here
                return None
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise CacheError(f"meta.json holds {type(meta).__name__}, not an object")
            if meta.get("key") != json.loads(json.dumps(key, default=str)):
                raise CacheError("its key does not match the requested one")
            if _sha256(model_path) != meta.get("sha256"):
                raise CacheError("model.pt does not match the sha256 recorded in meta.json")
            state = torch.load(model_path, map_location="cpu", weights_only=True)
        except FileNotFoundError as err:  # meta.json without model.pt: an incomplete entry
            self._quarantine(entry, err)
            return None
        except OSError as err:  # permission, I/O: the entry may be fine, only this process cannot read it
            raise CacheReadError(
                f"cannot read artifact cache entry {entry} ({err}); it is left in place. On shared storage every "
                "user of the cache needs read access (umask 022, or 002 for a group; `chmod -R g+rX` for old "
                "entries), or pass --cache-dir for a cache of your own."
            ) from err
        except (ValueError, CacheError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            self._quarantine(entry, err)
            return None
        return state, meta.get("info", {})

    def _quarantine(self, entry: Path, err: BaseException) -> None:
        aside = entry.with_name(f"{entry.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        try:
            os.replace(entry, aside)
        except OSError as move_err:
            raise CacheError(f"artifact cache entry {entry} is corrupt ({err}) but cannot be moved aside "
                             f"({move_err}); remove it, or pass --cache-dir for a cache of your own") from move_err
        warnings.warn(f"artifact cache entry {entry} is corrupt ({err}); moved to {aside} and rebuilding", stacklevel=3)

    def save(self, name: str, key: dict[str, Any], state: StateDict, info: dict[str, Any]) -> Path:
        entry = self.entry_dir(name, key)
        entry.mkdir(parents=True, exist_ok=True)
        (entry / "meta.json").unlink(missing_ok=True)  # uncommit first: a crash below leaves no stale marker
        # Serialised in memory first: torch.save writing to a full disk reports only `unexpected pos ...`, while a
        # plain write says ENOSPC.
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write(entry / "model.pt", lambda f: f.write(buffer.getbuffer()))
        meta = {"key": key, "info": info, "sha256": _sha256(entry / "model.pt"), "created": time.time()}
        payload = json.dumps(meta, indent=2, sort_keys=True, default=str).encode()
        atomic_write(entry / "meta.json", lambda f: f.write(payload))
        return entry

    def saved(self, name: str, key: dict[str, Any]) -> bool:
        """Whether the entry is committed (its meta.json written): false after a build that could not be saved."""
        return (self.entry_dir(name, key) / "meta.json").exists()

    def get_or_build(self, name: str, key: dict[str, Any], build: Builder) -> tuple[StateDict, dict[str, Any], bool]:
        """Load the entry or build it under a lock; returns (state_dict, info, built_here). A built entry that
        cannot be saved (a full disk, a read-only cache) is still returned: the log says what was not kept."""
        hit = self.load(name, key)
        if hit is not None:
            return (*hit, False)
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / f"{self.entry_dir(name, key).name}.lock"
        lock = self._acquire(lock_path)
        owner = Path(f"{lock_path}.owner")
        try:
            record = {"pid": os.getpid(), "host": socket.gethostname(), "user": _user(), "since": time.time()}
            with contextlib.suppress(OSError):  # who holds the lock is for waiting trials' logs: not worth failing
                atomic_write(owner, lambda f: f.write(json.dumps(record).encode()))
            hit = self.load(name, key)  # another trial may have built it while we waited
            if hit is not None:
                return (*hit, False)
            state, info = build()
            self._save_or_warn(name, key, state, info)
            return state, info, True
        finally:
            owner.unlink(missing_ok=True)
            lock.release()

    def _save_or_warn(self, name: str, key: dict[str, Any], state: StateDict, info: dict[str, Any]) -> None:
        entry = self.entry_dir(name, key)
        try:
            self.save(name, key, state, info)
        except (OSError, RuntimeError) as err:  # RuntimeError: what torch.save itself may raise
            reason = "no space left on device" if getattr(err, "errno", None) == errno.ENOSPC \
                else f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            shutil.rmtree(entry, ignore_errors=True)  # never leave a half-written entry behind
            self.log(f"cache: could not save {entry.name} ({reason}); the trial goes on with the model in memory, "
                     "the next trial will build it again. Free space, or pass --cache-dir elsewhere.")

    def _acquire(self, lock_path: Path) -> FileLock:
        """The entry's lock, waited for with a log line every `wait_log_s`: who holds it and for how long."""
        lock = FileLock(str(lock_path), mode=file_mode())
        start = time.monotonic()
        try:
            lock.acquire(blocking=False)
            return lock
        except Timeout:
            pass
        except PermissionError as err:
            raise CacheError(f"cannot open the lock file {lock_path} ({err}); on a shared cache every user needs "
                             "write access to the lock files: umask 002 and a shared group") from err
        what = lock_path.name.removesuffix(".lock")
        self.log(f"cache: waiting for {what}, which another trial is building: {describe_owner(lock_owner(lock_path))}")
        while True:
            waited = time.monotonic() - start
            if waited >= self.lock_timeout_s:
                raise CacheError(
                    f"waited {self.lock_timeout_s:.0f}s for {lock_path}; another trial holds it "
                    f"({describe_owner(lock_owner(lock_path))}). If no trial is running, "
                    "`python3 -m common.cli.cache prune` removes locks nobody holds."
                )
            try:
                lock.acquire(timeout=min(self.wait_log_s, self.lock_timeout_s - waited))
                self.log(f"cache: got {what} after waiting {time.monotonic() - start:.0f}s")
                return lock
            except Timeout:
                self.log(f"cache: still waiting for {what} after {time.monotonic() - start:.0f}s: "
                         f"{describe_owner(lock_owner(lock_path))}")


# ---------------------------------------------------------------------------------------- maintenance


def _lock_is_free(lock_path: Path) -> bool:
    lock = FileLock(str(lock_path), mode=file_mode())
    try:
        lock.acquire(blocking=False)
    except (Timeout, OSError):
        return False
    lock.release()
    return True


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def scan(root: Path) -> dict[str, list[dict[str, Any]]]:
    """What is under `root`: committed `entries`, `uncommitted` ones (no meta.json: a build running or
    killed), `quarantined` (`*.corrupt-*`) and `locks` (free, or who holds them)."""
    found: dict[str, list[dict[str, Any]]] = {"entries": [], "uncommitted": [], "quarantined": [], "locks": []}
    if not root.is_dir():
        return found
    for path in sorted(root.iterdir()):
        if path.name.endswith(".lock"):
            free = _lock_is_free(path)
            found["locks"].append({"path": path, "free": free, "owner": None if free else lock_owner(path)})
        elif ".corrupt-" in path.name:
            found["quarantined"].append({"path": path, "bytes": _size(path)})
        elif path.is_dir():
            kind = "entries" if (path / "meta.json").exists() else "uncommitted"
            found[kind].append({"path": path, "bytes": _size(path)})
    return found


def prune(root: Path, dry_run: bool = False, log: Callable[[str], None] = _log) -> list[Path]:
    """Delete quarantined entries and the locks (with their `.owner` files) that no process holds.

    A lock is deleted only while this process holds it; a trial that opened it just before still
    re-checks the cache after locking, so at worst two trials build the same entry, never a wrong one.
    """
    removed = []
    found = scan(root)
    for item in found["quarantined"]:
        log(f"{'would remove' if dry_run else 'removing'} quarantined {item['path']}")
        if not dry_run and item["path"].is_dir():
            shutil.rmtree(item["path"])
        elif not dry_run:
            item["path"].unlink()
        removed.append(item["path"])
    for item in found["locks"]:
        if not item["free"]:
            log(f"keeping {item['path']}: {describe_owner(item['owner'])}")
            continue
        lock = FileLock(str(item["path"]), mode=file_mode())
        try:
            lock.acquire(blocking=False)
        except (Timeout, OSError):
            continue  # taken since the scan
        try:
            log(f"{'would remove' if dry_run else 'removing'} stale lock {item['path']}")
            if not dry_run:
                Path(f"{item['path']}.owner").unlink(missing_ok=True)
                item["path"].unlink(missing_ok=True)
            removed.append(item["path"])
        finally:
            lock.release()
    return removed

