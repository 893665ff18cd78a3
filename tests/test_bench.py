"""The benchmark commands keep working (their numbers are checked by people, not by timed tests)."""

import math

import pytest

from common.cli.bench import bench_pruning, print_pruning


def test_bench_pruning_reports_ratios(capsys, monkeypatch):
    monkeypatch.setattr("common.cli.bench._thread_settings", lambda: [1])
    r = bench_pruning(repeats=1, warmup=1)  # the ratios, not the timings, are under test
    assert 0 < r["params_ratio"] <= 0.30 and 0 < r["flops_ratio"] <= 0.30
    assert set(r["latency"][1]) == {1, 64}
    assert all(v["dense_ms"] > 0 and v["pruned_ms"] > 0 for v in r["latency"][1].values())
    print_pruning(r)
    assert "speed-up" in capsys.readouterr().out


def test_bench_train_measures_every_input_shape(capsys):
    from common.cli.bench import TRAIN_INPUTS, bench_train, print_train

    r = bench_train(steps=1, batch_size=2)
    assert set(r) == set(TRAIN_INPUTS) and all(v["train_ips"] > 0 and v["cores_used"] > 0 for v in r.values())
    print_train(r)
    assert "1x28x28 native" in capsys.readouterr().out


def test_bench_data_speedup_is_against_the_faster_stock_loader(capsys):
    from common.cli.bench import bench_data, print_data

    result = bench_data(n_images=64, batch_size=32, epochs=1)
    assert set(result) == {"tensor_loader_ips", "dataloader_ips", "dataloader_workers2_ips", "speedup"}
    stock = [v for k, v in result.items() if k.startswith("dataloader") and math.isfinite(v)]
    assert stock, result  # the single-process DataLoader always runs
    assert result["speedup"] == pytest.approx(result["tensor_loader_ips"] / max(stock))
    print_data(result)
    assert "speed-up vs the faster DataLoader" in capsys.readouterr().out


def _quant_results(runtimes):
    """benchmark_quant's result shape, with distinct made-up numbers (the real run takes minutes)."""
    from common.cli.bench_quant import BATCHES

    models = ["dense_torch_fp32", "dense_ort_fp32", "pruned_torch_fp32",
              *(f"{m}_int8_{r}" for m in ("dense", "pruned") for r in runtimes)]
    results = []
    for threads, setting in ((1, 1), (2, "all")):
        lat = {m: {b: 1.0 + i + b / 100 for b in BATCHES} for i, m in enumerate(models)}
        lat["dense_int8"], lat["pruned_int8"] = lat["dense_int8_ort"], lat["pruned_int8_ort"]
        ratios = {f"{name}_b{b}": 2.0 for b in BATCHES for name in (
            "dense_int8_vs_ort_fp32", "dense_int8_vs_dense_torch", "pruned_int8_vs_dense_torch",
            *(f"dense_int8_{r}_vs_ort_fp32" for r in runtimes))}
        results.append({"threads": threads, "threads_setting": setting, "cpu_model": "cpu", "cpu_isa": "avx2",
                        "int8_scheme": "full", "weight_bits": 8, "runtimes": runtimes, "latency_ms": lat,
                        "ratios": ratios, "scales": {"nni_quantizer": "QATQuantizer"},
                        "sizes": {"dense_fp32_bytes": 1000, "dense_int8_bytes": 300, "pruned_int8_bytes": 90,
                                  "dense_int8_file_ratio": 0.3, "pruned_int8_file_ratio": 0.09},
                        "targets": {"pruned_int8_file_ratio": {"value": 0.09, "target": 0.1, "met": True}}})
    return results


@pytest.mark.parametrize("runtimes", [["ort"], ["ort", "openvino"]])
def test_print_quant_tables_have_a_full_row_per_thread_setting_and_batch(capsys, runtimes):
    from common.cli.bench_quant import print_quant

    print_quant(_quant_results(runtimes))
    out = capsys.readouterr().out
    tables, previous = [], ""
    for line in out.splitlines():  # a table: consecutive lines that start with "|"
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    assert len(tables) == len(runtimes)  # the OpenVINO table only where OpenVINO ran
    for header, rule, *rows in tables:
        width = header.count("|")
        assert rule.count("|") == width and len(rows) == 4  # 2 thread settings x batch 1, 64
        assert all(row.count("|") == width for row in rows)
    assert tables[0][2].startswith("| 1 (1) | 1 | 1.01 | 2.01 |")  # dense torch, then dense ORT fp32
    assert "| all (2) | 64 |" in tables[-1][-1]
    if "openvino" in runtimes:  # OpenVINO vs ORT int8: ORT's latency over OpenVINO's
        lat = _quant_results(runtimes)[0]["latency_ms"]
        assert f"| {lat['dense_int8_ort'][1] / lat['dense_int8_openvino'][1]:.2f}x |" in tables[1][2]
    assert "pruned_int8_file_ratio = 0.090 (target <= 0.1): met" in out


def test_quant_bench_measures_through_the_trials_stage(monkeypatch):
    """One quantize → deploy path: the bench's numbers are the stage's results, ratios within one stage call."""
    import common.cli.bench_quant as bench_quant
    from common.record import Latency, Measurement, result_keys

    calls = []

    def stage(inputs, start, references, *, start_name, min_agreement, **kwargs):
        calls.append((start_name, inputs.latency.threads, min_agreement, kwargs["algorithm"]))
        n, fast = inputs.latency.threads, 1.0 if start_name == "start" else 0.25

        def timed(ms1: float, runtime: str) -> Measurement:
            return Measurement(latency=Latency({1: ms1, 64: 40 * ms1}, "cpu", runtime, n))

        beside = 10.0 if start_name == "start" else 12.0  # the dense model, timed again beside the pruned one
        return {**result_keys(Measurement(size_bytes=250 if start_name == "start" else 70, size_kind="int8_onnx")),
                **result_keys(timed(beside, "torch fp32"), "dense"), **result_keys(timed(6.0, "ort fp32"), "dense_ort"),
                **result_keys(Measurement(size_bytes=1000, size_kind="fp32_onnx"), "dense_ort"),
                **result_keys(timed(8.0, "torch fp32"), start_name),
                **result_keys(timed(2.0 * fast, "onnxruntime int8"), "int8_ort"),
                "weight_bits": 8, "nni_quantizer": "QATQuantizer", "integer_ops": 21,
                **dict.fromkeys(("activations_from_nni", "activations_from_ort", "weights_from_nni",
                                 "weights_from_ort"), 1)}

    monkeypatch.setattr(bench_quant, "quantize_deploy_measure", stage)
    [r] = bench_quant.benchmark_quant((1,), train_images=32)
    assert calls == [("start", 1, 0.0, "qat"), ("pruned", 1, 0.0, "qat")]  # the gate is off for random weights
    assert r["runtimes"] == ["ort"] and r["ratios"]["dense_int8_vs_ort_fp32_b1"] == 3.0
    assert r["ratios"]["pruned_int8_vs_dense_torch_b1"] == 24.0  # 12 ms beside it / 0.5 ms, not 10 / 0.5
    assert r["sizes"]["dense_int8_file_ratio"] == 0.25 and r["sizes"]["pruned_int8_file_ratio"] == 0.07
    assert r["targets"]["pruned_int8_file_ratio"]["met"] and r["targets"]["dense_int8_file_ratio"]["met"]
