"""docs/own-model.md end to end at smoke size: the model file it shows, written outside the repository, and an
ImageFolder through the pipeline trial, deployed int8 and checked on an emulated AVX2-only CPU; and the registry's
MobileNetV2 through nnictl (experiments/pipeline/config.mobilenet.smoke.yml)."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from tests.nnictl_utils import ROOT

DOC = ROOT / "docs" / "own-model.md"


def _image_folder(root, per_class: dict[str, int]) -> None:
    """Two classes a model can tell apart: bright and dark 20x20 images with noise."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, n in per_class.items():
        for label, level in (("bright", 200), ("dark", 50)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (level + torch.randint(-40, 40, (20, 20, 3), generator=g)).clamp(0, 255).to(torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user not installed (emulated AVX2 check)")
def test_the_documented_model_and_image_folder_compress_deploy_and_report(tmp_path):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    model_file = tmp_path / "outside" / "mymodel.py"
    model_file.parent.mkdir()
    model_file.write_text(code)
    _image_folder(tmp_path / "flowers", {"train": 64, "val": 32})
    env = {**os.environ, "NNI_SUITE_HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, str(ROOT / "trials" / "pipeline.py"), "--profile", "smoke",
                          "--dataset", "imagefolder", "--data-dir", str(tmp_path / "flowers"),
                          "--model", f"{model_file}:build", "--portability-check", "avx2"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("FINAL "))[6:])
    assert result["model"] == f"{model_file}:build" and result["arch_key"].startswith("build@")
    assert result["integer_kernels"] is True and result["portable_avx2"] is True
    assert result["params_ratio"] < 0.5 and result["size_mb"] < result["dense_ort_size_mb"]  # pruned 50 %, int8


MOBILENET_SMOKE = ROOT / "experiments" / "pipeline" / "config.mobilenet.smoke.yml"


def _final(run: subprocess.CompletedProcess) -> dict:
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(next(line for line in run.stdout.splitlines() if line.startswith("FINAL "))[6:])


@pytest.mark.e2e
def test_mobilenet_v2_pipeline_smoke_through_nnictl_then_the_prune_trial_from_its_cache(tmp_path):
    """MobileNetV2 (depthwise convs, inverted residuals) through nnictl: one dense model that learned the smoke data,
    pruned by FPGM and by L1, each QAT 8-bit, both int8 files running integer kernels; then the prune trial on the
    same cached models (no training). The quant trial's stage is the pipeline's quantization: not run again here."""
    from common.data import SYNTHETIC_CLASSES
    from tests.nnictl_utils import Experiment

    with Experiment(MOBILENET_SMOKE, tmp_path) as exp:
        results = [t["result"] for t in exp.run_to_end(n_trials=2, timeout_s=1500)]
        env = exp.env
    assert sorted(r["pruner"] for r in results) == ["fpgm", "l1"]
    for r in results:
        assert r["model"] == "mobilenet_v2" and r["arch_key"] == "mobilenet_v2" and r["algorithm"] == "qat"
        # The dense model learned (chance 0.1; MobileNetV2 learns the 24 smoke steps slower than ResNet-18's ~0.4).
        assert r["dense_test_acc"] > 2 / SYNTHETIC_CLASSES and r["dense_val_acc"] > 2 / SYNTHETIC_CLASSES, r
        assert r["params_ratio"] < 0.5 and r["size_ratio"] < 0.2 and r["integer_kernels"] is True
    assert results[0]["dense_test_acc"] == results[1]["dense_test_acc"]  # one cached dense model

    pruned = _final(subprocess.run([sys.executable, str(ROOT / "trials" / "prune.py"), "--profile", "smoke",
                                    "--model", "mobilenet_v2", "--pruner", "fpgm", "--sparsity", "0.5"], cwd=tmp_path,
                                   env=env, capture_output=True, text=True, timeout=900))
    fpgm = next(r for r in results if r["pruner"] == "fpgm")
    assert pruned["test_acc"] == fpgm["pruned_test_acc"] and pruned["params_ratio"] < 0.5
    assert pruned["dense_test_acc"] == fpgm["dense_test_acc"]
