"""The measurement record: one spelling of every result key, its meaning attached, and the way back."""

import pytest

from common.record import (
    Latency,
    Measurement,
    comparison_keys,
    read,
    read_comparison,
    result_keys,
    upgrade,
)

CPU1 = dict(device="cpu", threads=1)


def _model(ms1: float, ms64: float, acc: float = 0.9, kind: str = "state_dict", size: int = 4_000_000) -> Measurement:
    return Measurement(val_acc=acc + 0.01, test_acc=acc, params=1000, flops=5000, size_bytes=size, size_kind=kind,
                       latency=Latency({1: ms1, 64: ms64}, runtime="torch fp32", **CPU1))


def test_headline_keys_are_unprefixed_and_say_what_size_and_latency_are():
    keys = result_keys(_model(2.0, 50.0))
    assert keys["accuracy"] == keys["test_acc"] == 0.9 and keys["val_acc"] == pytest.approx(0.91)
    assert keys["size_mb"] == 4.0 and keys["size_kind"] == "state_dict"
    assert keys["latency_ms_b1"] == 2.0 and keys["latency_ms_b64"] == 50.0
    assert (keys["latency_device"], keys["latency_runtime"], keys["latency_threads"]) == ("cpu", "torch fp32", 1)


def test_named_models_are_prefixed_and_unmeasured_fields_yield_no_key():
    keys = result_keys(Measurement(val_acc=0.5, test_acc=0.4), "sim")
    assert keys == {"sim_val_acc": 0.5, "sim_test_acc": 0.4}  # no `accuracy`: only the headline has it
    keys = result_keys(_model(3.0, 60.0), "dense")
    assert keys["dense_latency_ms_b1"] == 3.0 and keys["dense_size_kind"] == "state_dict" and "accuracy" not in keys


def test_comparison_against_dense_and_other_references():
    model, dense = _model(1.0, 20.0, acc=0.88, size=1_000_000), _model(4.0, 80.0)
    keys = comparison_keys(model, dense)
    assert keys["speedup_b1"] == 4.0 and keys["speedup_b64"] == 4.0 and keys["latency_ratio_b1"] == 0.25
    assert keys["delta_test_acc"] == pytest.approx(-0.02) and keys["size_ratio"] == 0.25
    assert keys["params_ratio"] == 1.0
    onnx = Measurement(size_bytes=2_000_000, size_kind="fp32_onnx",
                       latency=Latency({1: 2.0, 64: 40.0}, runtime="onnxruntime fp32", **CPU1))
    assert comparison_keys(model, dense, size_ref=onnx)["size_ratio"] == 0.5
    vs_onnx = comparison_keys(model, onnx, "dense_ort")
    assert vs_onnx == {"speedup_vs_dense_ort_b1": 2.0, "speedup_vs_dense_ort_b64": 2.0}


def test_latencies_from_different_settings_are_not_compared():
    gpu = Measurement(latency=Latency({1: 0.1}, device="cuda:0", runtime="torch fp32"))
    with pytest.raises(ValueError, match="not comparable"):
        comparison_keys(_model(1.0, 20.0), gpu)


def test_a_size_needs_its_kind():
    with pytest.raises(ValueError, match="kind"):
        Measurement(size_bytes=10)
    with pytest.raises(ValueError, match="unknown size kind"):
        Measurement(size_bytes=10, size_kind="zip")


def test_read_inverts_result_keys():
    m = _model(2.0, 50.0)
    assert read(result_keys(m)) == m
    assert read({**result_keys(m, "pruned"), **result_keys(_model(9.0, 99.0))}, "pruned") == m
    assert read({}, "dense") == Measurement()
    model, dense = _model(1.0, 20.0, acc=0.88), _model(4.0, 80.0)
    vs = read_comparison(comparison_keys(model, dense))
    assert vs["speedup_b64"] == 4.0 and vs["delta_test_acc"] == pytest.approx(-0.02)


def test_results_recorded_with_earlier_keys_are_read_with_todays():
    old = {"trial": "quant", "test_acc": 0.8, "size_mb": 0.5, "latency_ms_b1": 1.0, "int8_bytes": 500_000,
           "dense_torch_fp32_ms_b1": 5.0, "dense_ort_fp32_ms_b1": 3.0, "dense_fp32_onnx_bytes": 2_000_000,
           "speedup_vs_dense_ort_fp32_b1": 3.0}
    new = upgrade(old)
    assert new["dense_latency_ms_b1"] == 5.0 and new["dense_ort_latency_ms_b1"] == 3.0
    assert new["dense_ort_size_mb"] == 2.0 and new["dense_ort_size_kind"] == "fp32_onnx"
    assert new["speedup_vs_dense_ort_b1"] == 3.0 and "int8_bytes" not in new
    assert read(old).size_kind == "int8_onnx"  # a quantization trial's size was always the int8 file
    assert read({"test_acc": 0.8, "size_mb": 1.0}).size_kind == "state_dict"
    assert read({"baseline_test_acc": 0.7, "baseline_latency_ms_b1": 2.0}, "dense").test_acc == 0.7


def test_one_rule_for_the_best_trial_ties_go_to_the_smaller_network_then_the_lower_id():
    from common.record import ranking

    trials = {"b": {"default": 0.9, "params": 10}, "a": {"default": 0.9, "params": 10},
              "c": {"default": 0.9, "params": 5}, "d": {"default": 0.8, "params": 1}}
    assert min(trials, key=lambda t: ranking(trials[t], t)) == "c"
    del trials["c"]
    assert min(trials, key=lambda t: ranking(trials[t], t)) == "a"
    assert min(trials, key=lambda t: ranking(trials[t], t, mode="minimize")) == "d"
