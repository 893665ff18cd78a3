"""Run an experiment config through nnictl for the end-to-end tests, with its own port and
working directory, and stop whatever was started (by experiment id)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import yaml

from common.cli.record import absolute_paths, manager_get, wait_until_ended

ROOT = Path(__file__).resolve().parents[1]
SSHD = Path("/usr/sbin/sshd")  # Debian's openssh-server: tests/test_e2e_remote.py's "remote machine"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def suite_home(basetemp: Path) -> Path:
    """The smoke artifact cache of the whole pytest run (`basetemp`: pytest's base temp dir): entries are keyed by
    content, so experiments share the smoke baseline exactly as a user's experiments do, built once. Under
    pytest-xdist each worker's basetemp is a folder of the run's, and the workers share the run's cache (its
    entries are built under a lock, as concurrent trials build them)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        basetemp = basetemp.parent
    return basetemp / "smoke-suite-home"


def manager_processes(exp_id: str) -> list:
    """The live NNI manager processes (node main.js) of experiment `exp_id`, as psutil.Process objects."""
    import psutil

    def is_ours(cmdline: list[str]) -> bool:
        return any(a.endswith("main.js") for a in cmdline) and f"--experiment-id {exp_id}" in " ".join(cmdline)

    return [p for p in psutil.process_iter(["cmdline"]) if is_ours(p.info["cmdline"] or [])]


def nnictl(*args: str, env: dict | None = None, timeout: float = 120) -> str:
    exe = shutil.which("nnictl")
    assert exe, "nnictl is not on PATH: pip install -r requirements.txt"
    proc = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"nnictl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


class Experiment:
    """`nnictl create` a copy of `config` whose relative paths are made absolute and whose NNI
    working directory lives in tmp_path, so nothing is left in ~/nni-experiments."""

    def __init__(self, config: Path, tmp_path: Path, *, env: dict[str, str] | None = None, **overrides) -> None:
        self.port = free_port()
        self.tmp = tmp_path
        cfg = absolute_paths(yaml.safe_load(config.read_text()), config.parent)
        cfg["experimentWorkingDirectory"] = str(tmp_path / "nni-experiments")
        cfg.update(overrides)
        self.config = tmp_path / "config.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        # `env` adds to the environment of nnictl, the NNI manager and (on the local platform) every trial.
        self.env = {**os.environ, "NNI_SUITE_HOME": str(suite_home(tmp_path.parent)), **(env or {})}
        self.id: str | None = None
        self.started = False

    def __enter__(self) -> Experiment:
        nnictl("create", "--config", str(self.config), "--port", str(self.port), env=self.env)
        self.started = True
        # The id from the manager on our own port, not parsed from nnictl's coloured console text.
        self.id = self.api("experiment")["id"]
        return self

    def __exit__(self, *exc) -> None:
        if not self.started:
            return
        # Stop by id when known; by our private port otherwise, so a failed test never leaks a manager.
        target = [self.id] if self.id else ["--port", str(self.port)]
        try:
            nnictl("stop", *target, env=self.env)
        except Exception as err:  # noqa: BLE001 - cleanup must not hide the test's own failure
            print(f"warning: could not stop experiment {target}: {err}")

    @property
    def experiment_dir(self) -> Path:
        """NNI's folder of this experiment: its db/, log/ and trials' environments/."""
        return self.tmp / "nni-experiments" / str(self.id)

    def api(self, path: str):
        return manager_get(self.port, path)

    def wait(self, timeout_s: float) -> str:
        """Wait until the experiment ends; return its final status (DONE, ERROR, ...; common.cli.record's rule)."""
        try:  # a tuner that died ends the wait at once (TunerDied, one line with the id), not at the timeout
            return wait_until_ended(self.port, poll_s=3, timeout_s=timeout_s, experiment_dir=self.experiment_dir)
        except TimeoutError as err:
            raise TimeoutError(f"experiment {self.id}: {err}; logs in {self.tmp}") from None

    def run_to_end(self, n_trials: int, timeout_s: float) -> list[dict]:
        """Wait for the end; assert the experiment is DONE with `n_trials` trials, all SUCCEEDED (failed trials'
        logs in the message); return the trials."""
        status = self.wait(timeout_s)
        trials = self.trials()
        logs = {t["id"]: self.trial_log(t["id"]) for t in trials if t["status"] != "SUCCEEDED"}
        assert status == "DONE", f"experiment ended {status}; failed trial logs: {logs}; NNI files in {self.tmp}"
        assert len(trials) == n_trials, f"{len(trials)} trials, expected {n_trials}"
        assert all(t["status"] == "SUCCEEDED" for t in trials), logs
        return trials

    def trials(self) -> list[dict]:
        """Each trial's status and its final result (parsed from the reported JSON)."""
        out = []
        for job in self.api("trial-jobs"):
            final = job.get("finalMetricData") or []
            result = json.loads(json.loads(final[0]["data"])) if final else None
            out.append({"id": job["trialJobId"], "status": job["status"], "result": result})
        return out

    def trial_log(self, trial_id: str, name: str = "trial.log", tail: int | None = 3000) -> str:
        """The end of a trial's log. NNI 3.0 writes stdout to trial.log and stderr to trial.stderr, under
        <id>/environments/<env>/trials/<trial>/ (local) or <id>/trials/<trial>/ (downloaded from remote)."""
        logs = sorted((self.tmp / "nni-experiments" / str(self.id)).glob(f"**/trials/{trial_id}/{name}"))
        texts = [p.read_text() for p in logs]
        return "\n".join(t[-tail:] if tail else t for t in texts) if logs else f"(no {name})"

    def intermediate(self, trial_id: str) -> list[float]:
        """A trial's intermediate results (one per fine-tune epoch here), in the order reported."""
        rows = [m for m in self.api("metric-data") if m["trialJobId"] == trial_id and m["type"] == "PERIODICAL"]
        return [float(json.loads(json.loads(m["data"]))) for m in sorted(rows, key=lambda m: m["sequence"])]

    def kill_manager(self) -> None:
        """SIGKILL the NNI manager's process group: the manager, its dispatcher and its local trials die at
        once, as in a crash of the machine or session running them. nnictl starts the manager with
        setpgrp (nni/experiment/launcher.py), so the group is the manager's pid and holds nothing else."""
        managers = manager_processes(self.id)
        assert len(managers) == 1, f"expected one NNI manager for experiment {self.id}, found {len(managers)}"
        os.killpg(managers[0].pid, signal.SIGKILL)
        managers[0].wait(30)

    def resume(self) -> None:
        """`nnictl resume` on a new port (the old one may linger in TIME_WAIT)."""
        self.port = free_port()
        nnictl("resume", self.id, "--port", str(self.port), "--experiment_dir",
               str(self.tmp / "nni-experiments"), env=self.env)
