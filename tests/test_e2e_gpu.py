"""The GPU configs' scheduling, checked on a CPU-only machine: NNI's GPU collector is given a fake NVML.

NNI's manager asks `python -m nni.tools.nni_manager_scripts.collect_gpu_info` (which imports `pynvml`)
for the GPUs; a `pynvml` module first on PYTHONPATH makes it report N idle GPUs. The trials are replaced
by a script that reports the CUDA_VISIBLE_DEVICES NNI gave it: the training-service block under test is
exactly the one in config.gpu.yml.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.nnictl_utils import ROOT, Experiment

FAKE_NVML = '''
"""Fake NVML: FAKE_GPUS idle GPUs, no processes."""
import os
from types import SimpleNamespace

_N = int(os.environ["FAKE_GPUS"])
def nvmlInit(): pass
def nvmlShutdown(): pass
def nvmlDeviceGetCount(): return _N
def nvmlSystemGetDriverVersion(): return "fake"
def nvmlSystemGetCudaDriverVersion_v2(): return 12000
def nvmlDeviceGetHandleByIndex(i): return i
def nvmlDeviceGetName(d): return f"FakeGPU{d}"
def nvmlDeviceGetNumGpuCores(d): return 1
def nvmlDeviceGetMemoryInfo(d): return SimpleNamespace(total=1 << 34, free=1 << 34)
def nvmlDeviceGetUtilizationRates(d): return SimpleNamespace(gpu=0, memory=0)
def nvmlDeviceGetComputeRunningProcesses_v3(d): return []
def nvmlDeviceGetGraphicsRunningProcesses_v3(d): return []
def nvmlSystemGetProcessName(pid): return "?"
'''

REPORT_GPU = '''
import os, time
import nni
nni.get_next_parameter()
time.sleep(5)  # overlap with the other trials, so the scheduler must place them side by side
nni.report_final_result({"default": 0.0, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")})
'''


@pytest.mark.e2e
@pytest.mark.parametrize("experiment, gpus", [("baseline", 1), ("pruning", 2)])
def test_gpu_config_gives_each_trial_a_gpu_of_its_own(tmp_path: Path, experiment: str, gpus: int):
    fake = tmp_path / "fake_nvml"
    fake.mkdir()
    (fake / "pynvml.py").write_text(FAKE_NVML)
    code = tmp_path / "code"
    code.mkdir()
    (code / "report_gpu.py").write_text(REPORT_GPU)
    config = ROOT / "experiments" / experiment / "config.gpu.yml"
    env = {"PYTHONPATH": str(fake), "FAKE_GPUS": str(gpus)}
    with Experiment(config, tmp_path, env=env, trialCodeDirectory=str(code), trialCommand="python3 report_gpu.py",
                    trialConcurrency=gpus, maxTrialNumber=2) as exp:
        # The stock setting (maxTrialNumberPerGpu 1) never starts a trial with 1 GPU and the manager stops
        # answering (see config.gpu.yml), so a bounded wait is the test.
        trials = exp.run_to_end(n_trials=2, timeout_s=240)
        devices = [t["result"]["cuda_visible_devices"] for t in trials]
        if gpus == 1:
            assert devices == ["0", "0"]  # one after the other on the only GPU
        else:
            assert sorted(devices) == ["0", "1"]  # side by side, one GPU each
