"""What long searches meet: a crashing trial, a diverging one, a killed NNI manager, a build killed mid-write.

Concurrent cache builds and corrupt entries are covered in tests/test_cache.py; here the faults that need
real processes or a real nnictl experiment.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from common.cache import ArtifactCache
from tests.nnictl_utils import ROOT, Experiment, suite_home

SMOKE = ROOT / "experiments" / "pruning" / "config.smoke.yml"
KEY = {"stage": "dense", "seed": 0}


def shared_smoke_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One artifact cache for this session's smoke experiments: the smoke baseline is trained once."""
    return {"NNI_SUITE_HOME": str(suite_home(tmp_path_factory.getbasetemp()))}


@pytest.mark.e2e
def test_failing_trial_ends_failed_with_its_reason_last_in_trial_log(tmp_path):
    space = tmp_path / "impossible.json"
    space.write_text(json.dumps({"pruner": {"_type": "choice", "_value": ["fpgm"]},
                                 "sparsity": {"_type": "choice", "_value": [1.5]}}))
    with Experiment(SMOKE, tmp_path, searchSpaceFile=str(space), maxTrialNumber=1,
                    tuner={"name": "GridSearch"}) as exp:
        status = exp.wait(timeout_s=300)
        (trial,) = exp.trials()
        log = exp.trial_log(trial["id"])
        assert status == "DONE", "a failed trial must end the experiment normally, not hang or error it"
        assert trial["status"] == "FAILED", log
        assert trial["result"] is None, "a failed trial must not report a made-up metric"
        assert not exp.intermediate(trial["id"])
        last = log.strip().splitlines()[-1]
        assert "TRIAL FAILED: ValueError: sparsity must be strictly between 0 and 1" in last, log
        # The traceback goes to trial.stderr (NNI 3.0 keeps stderr out of trial.log); it ends with the same reason.
        stderr = exp.trial_log(trial["id"], "trial.stderr")
        assert stderr.strip().splitlines()[-1].startswith("ValueError: sparsity must be strictly between 0 and 1")


@pytest.mark.e2e
def test_a_typo_in_trial_command_ends_trial_log_with_its_reason(tmp_path):
    """argparse exits (SystemExit, not an Exception) before the trial asks NNI for parameters: trial.log, at
    the path the README gives for NNI 3.0's local training service, must still end with the reason."""
    with Experiment(SMOKE, tmp_path, trialCommand="python3 trials/prune.py --profile smoke --spasity 0.5",
                    maxTrialNumber=1, tuner={"name": "GridSearch"}) as exp:
        status = exp.wait(timeout_s=300)
        (trial,) = exp.trials()
        trial_dir = tmp_path / "nni-experiments" / exp.id / "environments" / "local-env" / "trials" / trial["id"]
        log = (trial_dir / "trial.log").read_text()
        assert status == "DONE" and trial["status"] == "FAILED" and trial["result"] is None, log
        # NNI prefixes each stdout line with `[<time>] PRINT `.
        last = log.strip().splitlines()[-1]
        assert re.fullmatch(r"\[[^]]+\] PRINT TRIAL FAILED: prune\.py: error: unrecognized arguments: --spasity 0\.5",
                            last), log
        assert "usage: prune.py" in (trial_dir / "trial.stderr").read_text()


NAN_TRIAL = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import torch
    from common.train import TrainConfig, fit
    from common.trial import run_main

    def main():
        torch.manual_seed(0)
        batches = [(torch.randn(16, 8), torch.randint(0, 2, (16,))) for _ in range(4)]
        fit(torch.nn.Linear(8, 2), batches, TrainConfig(epochs=5, lr=1e30, schedule="constant"), device="cpu")
        print("REACHED THE END")

    run_main(main)
""")


def test_diverging_trial_stops_at_the_first_non_finite_loss_with_a_clear_message(tmp_path):
    script = tmp_path / "nan_trial.py"
    script.write_text(NAN_TRIAL.format(root=str(ROOT)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "REACHED THE END" not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("common.train.NonFiniteLossError: NaN/inf training loss"), proc.stderr[-2000:]
    assert "epoch 1/5" in last or "epoch 2/5" in last, "must stop at the first bad step, not after all epochs"
    assert "lower the lr" in last
    # Under NNI the summary is also the last line of stdout, which NNI 3.0 writes to trial.log.
    env = {**os.environ, "NNI_EXP_ID": "fakeexp", "NNI_TRIAL_JOB_ID": "fake", "NNI_PLATFORM": "unittest"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.stdout.strip().splitlines()[-1].startswith("TRIAL FAILED: NonFiniteLossError: NaN/inf training loss")


def _die_while_saving(root: str) -> None:
    """Build an entry and die (like SIGKILL or power loss) after model.pt's bytes are written, before the rename."""
    import common.cache as cache_mod

    real_replace = os.replace

    def crash(src, dst, *args, **kwargs):
        if str(dst).endswith("model.pt"):
            os._exit(9)
        real_replace(src, dst, *args, **kwargs)  # e.g. the lock's owner file

    cache_mod.os.replace = crash  # this child process only
    ArtifactCache(root).get_or_build("dense", KEY, lambda: ({"w": torch.full((3,), 7.0)}, {}))


def test_build_killed_mid_write_leaves_nothing_loadable_and_no_stale_lock(tmp_path):
    child = mp.get_context("spawn").Process(target=_die_while_saving, args=(str(tmp_path),))
    child.start()
    child.join(120)
    assert child.exitcode == 9
    assert list(tmp_path.glob("**/.model.pt.*.tmp")), "the crash should have left a half-finished temp file"
    cache = ArtifactCache(tmp_path, lock_timeout_s=10)  # the dead builder's lock (flock) died with it
    assert cache.load("dense", KEY) is None
    start = time.time()
    state, _, built = cache.get_or_build("dense", KEY, lambda: ({"w": torch.ones(3)}, {}))
    assert built and torch.equal(state["w"], torch.ones(3)) and time.time() - start < 10


def _dense_trained_here(log: str) -> bool:
    return re.search(r"dense \S+: trained and cached", log) is not None


@pytest.mark.e2e
def test_resume_after_the_manager_is_killed_finishes_every_trial_without_redoing_work(tmp_path, tmp_path_factory):
    # Two configurations that differ only outside the cache key (latency threads): the trial killed
    # mid-run must find both the baseline and the pruned, fine-tuned model of the finished trial in the
    # cache when it runs again (and the test stays short). NNI's TPE never repeats a configuration.
    space = tmp_path / "same_model.json"
    space.write_text(json.dumps({"pruner": {"_type": "choice", "_value": ["fpgm"]},
                                 "sparsity": {"_type": "choice", "_value": [0.5]},
                                 "latency_threads": {"_type": "choice", "_value": [1, 2]}}))
    with Experiment(SMOKE, tmp_path, env=shared_smoke_home(tmp_path_factory), searchSpaceFile=str(space),
                    maxTrialNumber=2) as exp:
        deadline = time.time() + 900
        while not any(t["status"] == "SUCCEEDED" for t in exp.trials()):
            assert time.time() < deadline, f"no trial finished in time; logs in {tmp_path}"
            assert exp.api("check-status")["status"] not in ("ERROR", "STOPPED")
            time.sleep(3)
        finished = {t["id"]: t for t in exp.trials() if t["status"] == "SUCCEEDED"}
        finished_logs = {tid: exp.trial_log(tid, tail=None) for tid in finished}
        exp.kill_manager()  # with everything it started: the dispatcher and the running trial
        exp.resume()
        status = exp.wait(timeout_s=900)
        trials = exp.trials()
        logs = {t["id"]: exp.trial_log(t["id"], tail=None) for t in trials}
        assert status == "DONE", f"resumed experiment ended {status}: {logs}"
        assert len(trials) == 2 and all(t["status"] == "SUCCEEDED" for t in trials), logs
        for tid, before in finished.items():  # finished trials were not run again
            after = next(t for t in trials if t["id"] == tid)
            assert after["result"] == before["result"] and logs[tid] == finished_logs[tid]
        resumed = [tid for tid in logs if tid not in finished]
        assert resumed, "the trial that was killed must run again after the resume"
        for tid in resumed:
            assert not _dense_trained_here(logs[tid]), logs[tid]
            assert re.search(r"pruned \S+ fpgm 0.5: loaded from cache", logs[tid]), logs[tid]
        assert sum(_dense_trained_here(log) for log in logs.values()) <= 1, "the baseline was trained twice"

