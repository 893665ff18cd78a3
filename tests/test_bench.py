"""The benchmark scripts keep working (their numbers are checked by people, not by timed tests)."""

from common.bench import bench_pruning, print_pruning


def test_bench_pruning_reports_ratios(capsys, monkeypatch):
    monkeypatch.setattr("common.bench._thread_settings", lambda: [1])
    r = bench_pruning(repeats=1)
    assert 0 < r["params_ratio"] <= 0.30 and 0 < r["flops_ratio"] <= 0.30
    assert set(r["latency"][1]) == {1, 64}
    assert all(v["dense_ms"] > 0 and v["pruned_ms"] > 0 for v in r["latency"][1].values())
    print_pruning(r)
    assert "speed-up" in capsys.readouterr().out


def test_bench_train_measures_every_input_shape(capsys):
    from common.bench import TRAIN_INPUTS, bench_train, print_train

    r = bench_train(steps=1, batch_size=2)
    assert set(r) == set(TRAIN_INPUTS) and all(v["train_ips"] > 0 and v["cores_used"] > 0 for v in r.values())
    print_train(r)
    assert "1x28x28 native" in capsys.readouterr().out
