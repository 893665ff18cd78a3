"""A prepared GPU check: the `full` profile's baseline and pipeline trials' code (common.stages, the trials' stages)
on CUDA, on synthetic 32x32 images, for a few epochs: at most 8 minutes on one GPU. Nothing else depends on it;
where a GPU is at hand, run it and record what it printed in docs/results.md.

    python3 -m common.cli.gpu_check                      # one GPU; one line and exit status 1 where CUDA is missing
    python3 -m common.cli.gpu_check --only baseline      # torch alone: no NNI, ONNX or OpenVINO imported
    python3 -m common.cli.gpu_check --device cpu --tiny  # the same code in a minute on a CPU (tests/test_gpu_check.py)

The baseline part needs torch, numpy and filelock (and this repository). The pipeline part prunes and quantizes
with NNI and deploys the int8 model with ONNX Runtime on the CPU, so it needs the wheels of `nni==3.0` (with its own
dependencies; `tensorboard`, whose protos NNI's dependency analysis imports), `onnx`, `onnxscript` and
`onnxruntime`, at requirements.txt's versions; OpenVINO is not needed (`--runtime ort`), nor is nnictl run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from common.cache import ArtifactCache
from common.context import StageContext
from common.data import load_splits, make_loaders
from common.metrics import LatencySetting
from common.profiles import Profile, get_profile
from common.train import seed_everything

# Sizes of the check: (train images, eval images per split, image side, dense epochs, fine-tune and QAT epochs,
# latency warm-up, timed rounds). On a GPU a few epochs of the full recipe; --tiny: a CPU in about a minute.
SIZES = {"gpu": (20_000, 2_000, 32, 3, 1, 2, 5), "tiny": (256, 64, 16, 1, 1, 1, 1)}
# Models on synthetic data after a few epochs are far from converged: near-tie logits that float rounding flips
# between NNI's simulation and the runtime (the smoke profile's gate, common/profiles.py).
MIN_AGREEMENT = 0.90


def check_device(name: str) -> torch.device:
    """The device, or exit with one line where CUDA was asked for and is missing."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"gpu_check: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}, "
                 "torch.cuda.is_available() is False): this check needs one GPU")
    return device


def profile_for(tiny: bool) -> Profile:
    """The `full` profile on synthetic data, its recipes cut to a few epochs (steps and learning rates unchanged)."""
    train, evaluate, side, epochs, finetune, warmup, repeats = SIZES["tiny" if tiny else "gpu"]
    full = get_profile("full", dataset="synthetic")
    return replace(full, train=replace(full.train, epochs=epochs), finetune=replace(full.finetune, epochs=finetune),
                   qat=replace(full.qat or full.finetune, epochs=finetune), train_limit=train, eval_limit=evaluate,
                   image_size=side, latency_warmup=warmup, latency_repeats=repeats, min_agreement=MIN_AGREEMENT,
                   portability_check="none")


def context(profile: Profile, device: torch.device, home: Path) -> StageContext:
    """The StageContext a trial of `profile` builds (common.trial.stage_context), without NNI: nothing reported."""
    splits = load_splits(profile.dataset, home / "data", val_fraction=profile.val_fraction,
                         train_limit=profile.train_limit, eval_limit=profile.eval_limit, image_size=profile.image_size)
    loaders = make_loaders(splits, profile.batch_size, device=device, channels_last=device.type == "cuda",
                           pad=profile.crop_pad)
    seed_everything(0)
    data_key = {"dataset": profile.dataset, "data": splits.fingerprint, "batch_size": profile.batch_size}
    return StageContext(loaders=loaders, labels={"val": splits.val_labels, "test": splits.test_labels},
                        device=device, cache=ArtifactCache(home / "artifacts"), data_key=data_key,
                        num_classes=splits.num_classes, image_shape=tuple(splits.train_images.shape[1:]), seed=0,
                        train=profile.train, finetune=profile.finetune, qat=profile.qat or profile.finetune,
                        latency=LatencySetting(1, profile.latency_warmup, profile.latency_repeats))


def baseline(ctx: StageContext) -> dict[str, Any]:
    """The baseline trial's code: the dense ResNet-18 trained with the recipe, measured (accuracy, latency)."""
    from common.models import DEFAULT_MODEL
    from common.stages import dense_stage
    from common.trial import measure

    t0 = time.perf_counter()
    dense, _ = dense_stage(ctx, DEFAULT_MODEL)
    trained = time.perf_counter() - t0
    m = measure(ctx, {"dense": dense})[0]["dense"]
    return {"train_seconds": trained, "val_acc": m.val_acc, "test_acc": m.test_acc,
            "latency_ms": dict(m.latency.ms), "latency_on": f"{m.latency.runtime}, {m.latency.device}"}


def pipeline(ctx: StageContext) -> dict[str, Any]:
    """The pipeline trial's code: dense (cached by the baseline) → FPGM 50 % → fine-tune → QAT 8-bit → int8 file on
    ONNX Runtime (the CPU), every stage measured beside the dense model."""
    from common.models import DEFAULT_MODEL
    from common.stages import compress_pipeline

    t0 = time.perf_counter()
    m = compress_pipeline(ctx, DEFAULT_MODEL, pruner="fpgm", sparsity=0.5, algorithm="qat", bits=8,
                          int8_scheme="reduced", runtime="ort", min_agreement=MIN_AGREEMENT, portability_check="none")
    return {"seconds": time.perf_counter() - t0, **{k: m[k] for k in (
        "pruned_test_acc", "int8_test_acc", "delta_test_acc", "agreement_val", "size_ratio", "params_ratio",
        "speedup_vs_dense_ort_b1", "speedup_vs_dense_ort_b64", "runtime_used", "weight_bits")}}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m common.cli.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (with --tiny: the unit test)")
    parser.add_argument("--only", choices=("baseline", "pipeline"), help="one part (default: both, baseline first)")
    parser.add_argument("--tiny", action="store_true", help="256 images at 16x16, one epoch: the code path only")
    args = parser.parse_args(argv)
    device = check_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    profile, t0 = profile_for(args.tiny), time.perf_counter()
    print(f"gpu_check: {name}, torch {torch.__version__}, `full` recipes on {profile.train_limit} synthetic "
          f"{profile.image_size}x{profile.image_size} images, {profile.train.epochs} dense epochs", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as home:
        ctx = context(profile, device, Path(home))
        for part, run in (("baseline", baseline), ("pipeline", pipeline)):
            if args.only in (None, part):
                result = run(ctx)
                print(f"gpu_check {part}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                        for k, v in result.items()), flush=True)
    print(f"gpu_check: passed in {time.perf_counter() - t0:.0f} s on {name}")


if __name__ == "__main__":
    main()
