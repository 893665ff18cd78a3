"""The prepared GPU check (common/cli/gpu_check.py): one clear line without CUDA, its baseline part without NNI,
ONNX or OpenVINO, and the whole path on a CPU at a tiny size (the GPU run itself needs a GPU)."""

import os
import subprocess
import sys

import pytest
import torch

from common.cli import gpu_check
from tests.nnictl_utils import ROOT

MISSING = ("nni", "onnx", "onnxruntime", "onnxscript", "openvino")  # what a GPU machine with torch alone lacks


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "common.cli.gpu_check", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_cuda_it_fails_with_one_clear_line():
    done = _run([])
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().startswith("gpu_check: no CUDA device") and len(done.stderr.strip().splitlines()) == 1


def test_the_baseline_part_runs_without_nni_onnx_or_openvino(tmp_path):
    for name in MISSING:  # each import fails, as where the package is not installed
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed here')\n")
    done = _run(["--device", "cpu", "--tiny", "--only", "baseline"],
                {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "gpu_check baseline: train_seconds" in done.stdout and "gpu_check: passed" in done.stdout


def test_the_pipeline_part_runs_the_full_recipes_through_the_trials_stages(capsys):
    profile = gpu_check.profile_for(tiny=False)
    assert (profile.batch_size, profile.train.lr, profile.image_size) == (256, 0.2, 32)  # the `full` recipe at 32x32
    gpu_check.main(["--device", "cpu", "--tiny", "--only", "pipeline"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("gpu_check pipeline:"))
    assert "runtime_used ort" in line and "weight_bits 7" in line and "speedup_vs_dense_ort_b64" in line
