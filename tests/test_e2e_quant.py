"""End to end: the quantization smoke experiment through nnictl, exactly as a user starts it."""

import json
import math
from pathlib import Path

import pytest
import yaml

from common import portability
from common.cpu import cpu_info, deployed_weight_bits
from common.data import SYNTHETIC_CLASSES
from common.profiles import get_profile
from tests.nnictl_utils import ROOT, Experiment

CONFIG = ROOT / "experiments" / "quant" / "config.smoke.yml"
KEYS = {"default", "accuracy", "val_acc", "test_acc", "sim_val_acc", "sim_test_acc", "int8_val_acc", "int8_test_acc",
        "dense_test_acc", "agreement_val", "agreement_test",
        "start_latency_ms_b1", "start_latency_ms_b64", "start_ort_latency_ms_b1", "start_ort_latency_ms_b64",
        "int8_latency_ms_b1", "int8_latency_ms_b64", "start_val_acc", "start_test_acc", "params", "params_ratio",
        "latency_ratio_b1",
        "dense_latency_ms_b1", "dense_latency_ms_b64", "speedup_b1", "speedup_b64",
        "speedup_vs_start_ort_b1", "speedup_vs_start_ort_b64", "latency_runtime", "latency_device", "latency_threads",
        "size_mb", "size_kind", "packed_size_mb", "dense_ort_size_mb", "size_ratio", "packed_size_ratio",
        "activations_from_nni", "activations_from_ort", "weights_from_nni", "integer_kernels", "int8_model",
        "algorithm", "bits", "start", "profile",
        # the CPU, the weight grid and the runtime that ship, and both runtimes beside each other
        "cpu_model", "cpu_isa", "int8_scheme_used", "runtime_used", "min_agreement",
        "int8_ort_latency_ms_b1", "agreement_val_ort", "dense_ort_latency_ms_b64", "speedup_vs_dense_ort_b64",
        "portable_avx2", "agreement_val_avx2_ort", "agreement_val_avx2_openvino", "latency_contended"}


@pytest.mark.e2e
def test_quant_smoke_experiment_through_nnictl(tmp_path):
    space = json.loads((CONFIG.parent / "search_space.json").read_text())
    # 3 of the smoke config's trials keep CI short; with TPE's seed they cover dense and pruned starts, 4 and 8 bits.
    # Each deployed file is also run on an emulated AVX2-only CPU (off by default in the smoke profile).
    check = portability.unavailable_reason() is None
    command = yaml.safe_load(CONFIG.read_text())["trialCommand"]
    command += " --portability-check avx2 --portability-images 32" if check else ""
    with Experiment(CONFIG, tmp_path, maxTrialNumber=3, trialCommand=command) as exp:
        trials = exp.run_to_end(n_trials=3, timeout_s=1200)
        for t in trials:
            r = t["result"]
            assert set(r) >= KEYS, f"missing keys {KEYS - set(r)}"
            assert r["algorithm"] in space["algorithm"]["_value"] and r["bits"] in space["bits"]["_value"]
            assert r["start"] in space["start"]["_value"] and r["profile"] == "smoke"
            assert r["default"] == r["int8_val_acc"] == r["val_acc"]  # the deployed model is what is tuned
            numbers = [v for v in r.values() if isinstance(v, float)]
            assert all(math.isfinite(v) for v in numbers), r
            assert r["accuracy"] == r["test_acc"] == r["int8_test_acc"]
            assert r["agreement_val"] >= r["min_agreement"] == get_profile("smoke").min_agreement  # the gate held
            assert r["dense_test_acc"] > 3 / SYNTHETIC_CLASSES  # the smoke baseline learned (~0.6; chance 0.1)
            assert r["integer_kernels"] is True and r["weights_from_nni"] >= 21
            assert r["cpu_model"] == cpu_info().model and r["cpu_isa"] == cpu_info().isa
            assert r["int8_scheme"] == r["int8_scheme_used"] == "reduced"  # the portable grid by default
            if check and portability.host_is_avx2_only():  # this CPU is the AVX2-only one: its gate is the check
                assert r["portable_avx2"] is True and "host gate is the check" in r["portability_note"]
                assert all(r[f"agreement_val_avx2_{rt}"] == r[f"agreement_val_{rt}"] for rt in ("ort", "openvino"))
            elif check:  # the default grid agrees with this host on the emulated AVX2-only CPU, on both runtimes
                assert r["portable_avx2"] is True and r["portability_images"] == 32, r["portability_note"]
                assert r["agreement_val_avx2_ort"] >= 0.99 and r["agreement_val_avx2_openvino"] >= 0.99
            assert r["weight_bits"] == min(r["bits"], deployed_weight_bits(8, r["int8_scheme_used"]))
            assert r["runtime"] == "auto" and r["latency_ms_b1"] == r[f"int8_{r['runtime_used']}_latency_ms_b1"]
            assert r["size_kind"] == "int8_onnx" and r["size_ratio"] < 0.3
            assert r["packed_size_mb"] < r["dense_ort_size_mb"]
            if r["bits"] == 4:
                assert "4-bit weights on int8 kernels" in r["latency_runtime"]
                assert r["packed_size_mb"] < 0.6 * r["size_mb"]
            assert Path(r["int8_model"]).is_file()  # the deployed model is kept in the trial's output dir
