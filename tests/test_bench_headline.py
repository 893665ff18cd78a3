"""The headline speed bench (common/cli/bench_headline.py): it times what the trials deploy, a trial's own stage
measures the same ratio on the same CPU, and its records become docs/ tables only as full runs."""

import math
import os
from pathlib import Path

import pytest
import torch

from common.cli import bench_headline as bh
from common.report import HEADLINE
from common.stages import quantize_deploy_measure

# The bench and a trial's stage build the same int8 file (same seed, same stages) and time it against the same dense
# fp32 ONNX Runtime file, each in its own interleaved run: their ratios differ only by timing noise, which on a
# shared 2-core machine (other trials beside it, 16x16 inputs, 10 rounds) stays within this factor.
AGREEMENT = 1.5
PTQ = bh.CONFIGS[4]


def test_every_headline_row_has_a_timed_configuration():
    labels = {c.label for c in bh.CONFIGS}
    assert {label for label, _, _ in HEADLINE} <= set(bh.HEADLINE_SPEED)
    assert set(bh.HEADLINE_SPEED.values()) <= labels and bh.CONFIGS[0].label == bh.REFERENCE
    assert PTQ.label == "PTQ 8-bit from dense"  # the trained twin's configuration


# Running the bench inside a pytest-xdist worker (OpenVINO's and ONNX Runtime's thread pools loaded in it) took the
# worker down ("node down: Not properly terminated") in the next nnictl test on this worker, in three full suite runs
# on an AMD EPYC Zen 4; the suite passed without these two tests. Until the bench runs in a subprocess here, they run
# by hand: `python3 -m pytest -q -n 0 tests/test_bench_headline.py`.
IN_PROCESS = pytest.mark.skipif("PYTEST_XDIST_WORKER" in os.environ,
                                reason="the in-process bench crashed an xdist worker: run with -n 0")


@pytest.fixture(scope="module")
def small_run():
    size = bh.Size(side=16, repeats=10, warmup=2, train_steps=3, quick=True)
    return size, bh.bench_headline(size, threads=(1,), configs=(bh.CONFIGS[0], PTQ))


@IN_PROCESS
def test_the_bench_and_a_trial_measure_the_same_speed_up(small_run, tmp_path: Path):
    """PTQ 8-bit from the untrained dense model: the bench's speed-up over dense fp32 ONNX Runtime and the one the
    trials' quantize-deploy-measure stage reports (`speedup_vs_dense_ort_b*`), on this CPU, at 1 thread."""
    size, data = small_run
    ctx = bh._context(tmp_path, size.side)
    ctx = type(ctx)(**{**vars(ctx), "latency": bh.LatencySetting(1, size.warmup, size.repeats)})
    dense = bh._starts(ctx)["dense"]
    trial = quantize_deploy_measure(ctx, dense, {"dense": dense}, algorithm="ptq", bits=8, calibration_batches=2,
                                    min_agreement=0.0)
    bench = next(c for c in data["configurations"] if c["label"] == PTQ.label)["by_threads"]["1"]
    for b in (1, 64):
        ratio = bench["vs_dense_ort"][str(b)] / trial[f"speedup_vs_dense_ort_b{b}"]
        assert 1 / AGREEMENT <= ratio <= AGREEMENT, (b, bench["vs_dense_ort"], trial[f"speedup_vs_dense_ort_b{b}"])
    assert trial["int8_scheme_used"] == data["int8_scheme"] == "reduced"


@IN_PROCESS
def test_the_record_says_what_ran_where(small_run):
    _, data = small_run
    where = bh.cpu.cpu_info()
    assert (data["cpu_class"], data["cpu_model"], data["cpu_isa"]) == (where.isa_class, where.model, where.isa)
    assert data["versions"]["torch"] == torch.__version__.split("+")[0] and data["versions"]["onnxruntime"]
    reference = data["configurations"][0]["by_threads"]["1"]
    assert reference["runtime"] == "onnxruntime fp32" and reference["vs_dense_ort"] == {"1": 1.0, "64": 1.0}
    ptq = data["configurations"][1]
    assert ptq["file"] == "int8 ONNX" and 0.2 < ptq["size_ratio"] < 0.3  # int8 weights: a quarter of fp32's bytes
    assert ptq["by_threads"]["1"]["runtime"].endswith(" int8")
    trained = data["trained_check"]
    assert trained["trained"]["steps"] == 3
    ratios = trained["trained_over_untrained_ms"]["1"]
    assert set(ratios) == set(ptq["by_threads"]["1"]["all_runtimes_ms"])  # each runtime against itself
    assert all(math.isfinite(v) and v > 0 for per in ratios.values() for v in per.values())
    speedups = bh.headline_speedups(data)
    assert speedups["dense ResNet-18"] == (1.0, 1.0) and "QAT 8-bit from dense" not in speedups  # not timed here
    table = bh.speed_markdown(data)
    assert sum(line.startswith("| PTQ 8-bit from dense | 1 |") for line in table) == 1
