"""Trial plumbing: parameters (flags + tuner overrides), the session, and the final report."""

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from common import stages, trial
from common.data import DATASETS, DatasetNotFoundError
from common.metrics import count_params
from common.models import build_model
from common.profiles import PROFILES, get_profile
from common.record import LATENCY_BATCHES
from tests.nnictl_utils import ROOT

TINY = {"blocks": [1], "widths": [8], "activation": "relu", "kernel_size": 3}
SMALL = {"blocks": [1, 1], "widths": [8, 16], "activation": "relu", "kernel_size": 3}


def prune_parser():
    sys.path.insert(0, str(ROOT / "trials"))
    from trials.prune import get_parser

    return get_parser()


def test_flags_alone_outside_nni():
    args = trial.parse_params(prune_parser(), ["--pruner", "l1", "--sparsity", "0.3"])
    assert (args.pruner, args.sparsity, args.profile) == ("l1", 0.3, "smoke")


def test_tuner_values_override_flags(tuner):
    tuner({"pruner": "l2", "sparsity": 0.7})
    args = trial.parse_params(prune_parser(), ["--pruner", "l1", "--sparsity", "0.3", "--profile", "smoke"])
    assert (args.pruner, args.sparsity, args.profile) == ("l2", 0.7, "smoke")


def test_tuner_int_becomes_float(tuner):
    tuner({"budget_power": 2})  # a JSON 2 for a float flag is cast, not rejected
    power = trial.parse_params(prune_parser(), []).budget_power
    assert power == 2.0 and isinstance(power, float)


def test_a_nested_choice_sets_the_flags_it_names(tuner):
    tuner({"variant": {"_name": "fpgm-gradual", "pruner": "fpgm", "prune_schedule": "gradual"}, "seed": 2})
    args = trial.parse_params(prune_parser(), ["--pruner", "l1"])
    assert (args.pruner, args.prune_schedule, args.seed) == ("fpgm", "gradual", 2)
    assert "variant" not in vars(args)


@pytest.mark.parametrize(
    "params, match",
    [({"sparsty": 0.5}, "sparsty"),
     ({"variant": {"_name": "x", "seed": 1}, "seed": 2}, "variant='x' sets seed again"),
     ({"variant": {"_name": "x", "sparsty": 0.5}}, "sparsty"), ({"pruner": "l0"}, "valid"), ({"pruner": 3}, "type")],
)
def test_bad_search_space_fails_loudly(tuner, params, match):
    tuner(params)
    with pytest.raises(ValueError, match=match):
        trial.parse_params(prune_parser(), [])


def test_report_final_echoes_parameters(capsys):
    args = trial.parse_params(prune_parser(), ["--pruner", "fpgm", "--sparsity", "0.5"])
    result = trial.report_final(0.75, {"accuracy": 0.7}, args, "prune")
    assert result["trial"] == "prune" and result["default"] == 0.75
    assert result["pruner"] == "fpgm" and result["sparsity"] == 0.5
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("FINAL ")][-1]
    assert json.loads(line[len("FINAL "):]) == json.loads(json.dumps(result))
    from common.cpu import cpu_info

    assert result["cpu_model"] == cpu_info().model and result["cpu_isa"] == cpu_info().isa  # every trial names its CPU


def test_every_trial_reports_under_the_configs_budget(capsys):
    metrics = {"accuracy": 0.5, "val_acc": 0.6, "test_acc": 0.5, "latency_ratio_b1": 0.4, "params": 100}
    plain = trial.report_objective(metrics, trial.parse_params(prune_parser(), []), "prune")
    assert plain["default"] == 0.6 and plain["within_budget"] is True and plain["budget_factor"] == 1.0
    args = trial.parse_params(prune_parser(), ["--max-latency-ratio-b1", "0.3", "--budget-penalty", "hard"])
    over = trial.report_objective(metrics, args, "prune")
    assert over["default"] == pytest.approx(0.6 * 0.3 / 0.4 - 1) and over["within_budget"] is False
    assert over["budget_latency_ratio_b1"] == 0.3 and over["val_acc"] == 0.6  # raw metrics still reported
    soft = trial.report_objective(metrics, trial.parse_params(prune_parser(), ["--max-params", "200"]), "prune")
    assert soft["default"] == 0.6


def test_bad_budget_fails_before_any_work(capsys):
    with pytest.raises(ValueError, match="--max-params must be a finite number > 0, got -1"):
        trial.parse_params(prune_parser(), ["--max-params", "-1"])
    with pytest.raises(SystemExit):
        trial.parse_params(prune_parser(), ["--budget-penalty", "strict"])
    assert "invalid choice: 'strict'" in capsys.readouterr().err


def test_budget_from_the_tuner_is_checked(tuner):
    tuner({"max_params": 0})
    with pytest.raises(ValueError, match=r"--max-params must be .*, got 0 \(search space: max_params=0\)"):
        trial.parse_params(prune_parser(), [])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_report_final_refuses_non_finite(bad):
    args = trial.parse_params(prune_parser(), [])
    with pytest.raises(RuntimeError, match="non-finite"):
        trial.report_final(bad, {}, args, "prune")


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_is_selectable_by_its_name_and_its_data_set_overridable(name):
    profile = get_profile(name)
    assert profile == PROFILES[name] and profile.name == name and profile.dataset in DATASETS
    assert trial.parse_params(trial.base_parser("t"), ["--profile", name]).profile == name
    assert get_profile(name, dataset=None) == profile  # --dataset not given: the profile's own
    other = next(d for d in DATASETS if d != profile.dataset)
    assert get_profile(name, dataset=other) == replace(profile, dataset=other)


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ValueError, match=f"unknown profile 'fast'; choose one of {', '.join(PROFILES)}$"):
        get_profile("fast")


def test_compression_metrics_agree_with_each_other(tmp_path):
    args = trial.parse_params(trial.base_parser("t"), ["--data-dir", str(tmp_path / "data"),
                                                        "--cache-dir", str(tmp_path / "cache")])
    session = trial.start_session(args)
    torch.manual_seed(0)
    n = session.splits.num_classes
    dense, small = build_model(SMALL, n).eval(), build_model(TINY, n).eval()
    m = trial.compression_metrics(trial.stage_context(session), small, dense,
                                  dense_acc={"val_acc": 0.5, "test_acc": 0.25})
    assert m["accuracy"] == m["test_acc"] and m["dense_val_acc"] == 0.5 and m["dense_test_acc"] == 0.25
    assert m["delta_test_acc"] == pytest.approx(m["test_acc"] - 0.25)
    assert m["params_ratio"] == pytest.approx(count_params(small) / count_params(dense)) and m["params_ratio"] < 1
    assert m["flops_ratio"] < 1 and m["size_mb"] < m["dense_size_mb"]
    for b in LATENCY_BATCHES:
        assert m[f"speedup_b{b}"] == pytest.approx(m[f"dense_latency_ms_b{b}"] / m[f"latency_ms_b{b}"])
        assert m[f"latency_ratio_b{b}"] == pytest.approx(1 / m[f"speedup_b{b}"])


def test_missing_cifar_names_the_file(tmp_path, offline):
    args = trial.parse_params(trial.base_parser("t"), ["--dataset", "cifar10", "--data-dir", str(tmp_path / "none")])
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        trial.start_session(args)


def test_cuda_requested_without_cuda(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        trial.resolve_device("cuda")


def test_baseline_trial_on_cifar_format_files(fake_cifar_dir, tmp_path, capsys):
    """The real CIFAR-10 path through a whole trial: files → session → cached baseline → report."""
    args = trial.parse_params(trial.base_parser("t"), [
        "--dataset", "cifar10", "--data-dir", str(fake_cifar_dir.root), "--cache-dir", str(tmp_path / "cache")])
    session = trial.start_session(args)
    assert len(session.splits.test_labels) == 30 and session.splits.classes[0] == "airplane"
    model, info = stages.dense_stage(trial.stage_context(session), "resnet18")
    assert len(info["history"]["train_loss"]) == get_profile("smoke").train.epochs
    again, _ = stages.dense_stage(trial.stage_context(session), "resnet18")  # from the cache, same weights
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    assert "loaded from cache" in capsys.readouterr().out


def test_prune_trial_rejects_impossible_sparsity_before_loading_data():
    proc = subprocess.run([sys.executable, str(ROOT / "trials" / "prune.py"), "--sparsity", "1.5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    # The reason is the last line of the log (what NNI's trial.log / stderr shows), not buried in a traceback.
    assert proc.stderr.strip().splitlines()[-1].startswith("ValueError: sparsity must be strictly between 0 and 1")
    # Rejected before the session started: no data loaded, nothing trained (start_session prints `session:`).
    assert "session:" not in proc.stdout


def test_advisor_budget_sets_the_finetune_epochs(tuner):
    """Hyperband/BOHB add TRIAL_BUDGET to the parameters; it must be accepted and become the fine-tune epochs."""
    tuner({"pruner": "l1", "sparsity": 0.5, "TRIAL_BUDGET": 3})
    args = trial.parse_params(prune_parser(), ["--finetune-epochs", "7"])
    smoke = get_profile("smoke")
    assert trial.finetune_config(args, smoke).epochs == 3  # the advisor's budget wins over the flag
    fractional = trial.FrozenParams(**{**vars(args), "TRIAL_BUDGET": 1.67})  # BOHB's budgets can be fractional
    assert trial.finetune_config(fractional, smoke).epochs == 2
    assert trial.finetune_config(trial.FrozenParams(**{**vars(args), "TRIAL_BUDGET": None}), smoke).epochs == 7


def test_parsed_parameters_are_resolved_and_frozen():
    args = trial.parse_params(prune_parser(), ["--profile", "smoke"])
    assert args.dataset == "synthetic" and args.device == "cpu" and args.prune_steps == 1
    assert args.data_dir.endswith("data") and args.cache_dir.endswith("artifacts")
    with pytest.raises(AttributeError, match="frozen after parsing; 'sparsity' cannot change"):
        args.sparsity = 0.9


def test_changed_or_other_images_never_share_a_cached_model(fake_imagefolder_dir, tmp_path, capsys):
    """Two folders with the same classes, or one image changed, are different data: a different key, a rebuild."""
    from PIL import Image

    root = fake_imagefolder_dir.root
    other = tmp_path / "other"
    shutil.copytree(root / "train", other / "train")
    shutil.copytree(root / "val", other / "val")
    Image.new("RGB", (20, 30), (90, 90, 90)).save(other / "train" / "cat" / "0.png")  # one image differs

    def session(data_dir):
        args = trial.parse_params(trial.base_parser("t"), ["--dataset", "imagefolder", "--data-dir", str(data_dir),
                                                           "--cache-dir", str(tmp_path / "cache")])
        return trial.start_session(args)

    first, again, changed = session(root), session(root), session(other)
    assert first.splits.classes == changed.splits.classes and first.splits.num_classes == changed.splits.num_classes
    first, again, changed = (trial.stage_context(s) for s in (first, again, changed))
    assert stages.dense_key(first, TINY) == stages.dense_key(again, TINY)  # same files: the same entry
    assert stages.dense_key(first, TINY) != stages.dense_key(changed, TINY)
    for inputs in (first, again, changed):
        stages.dense_stage(inputs, TINY)
    out = [line.split(": ")[-1] for line in capsys.readouterr().out.splitlines() if line.startswith("dense ")]
    assert out == ["trained and cached", "loaded from cache", "trained and cached"]


def test_a_cached_pruned_model_is_the_same_whichever_process_built_it(tmp_path):
    """Built in the process that trained the dense model, or after loading that model from the cache: the same
    key, so the same weights (the loader's epoch counter must not carry over from dense training). The stages
    are called on plain values, without a session."""
    from common.cache import ArtifactCache
    from common.context import StageContext
    from common.data import load_splits, make_loaders
    from common.metrics import LatencySetting
    from common.train import TrainConfig

    splits = load_splits("synthetic", tmp_path, train_limit=96, eval_limit=32)

    def inputs(cache_dir):
        finetune = TrainConfig(epochs=1, lr=0.02, schedule="cosine", print_freq=100)
        return StageContext(
            loaders=make_loaders(splits, 32, seed=0), labels={"val": splits.val_labels, "test": splits.test_labels},
            device=torch.device("cpu"), cache=ArtifactCache(cache_dir),
            data_key={"dataset": "synthetic", "data": splits.fingerprint}, num_classes=splits.num_classes,
            image_shape=tuple(splits.train_images.shape[1:]), seed=0,
            train=TrainConfig(epochs=2, lr=0.2, print_freq=100), finetune=finetune, qat=finetune,
            latency=LatencySetting())

    trained_here = inputs(tmp_path / "a")
    stages.dense_stage(trained_here, TINY)
    pruned_a, _ = stages.pruned_stage(trained_here, TINY, "l1", 0.5)
    dense_entry = trained_here.cache.entry_dir("dense", stages.dense_key(trained_here, TINY))
    shutil.copytree(dense_entry, tmp_path / "b" / dense_entry.name)  # a cache holding only the dense model
    loaded = inputs(tmp_path / "b")
    pruned_b, _ = stages.pruned_stage(loaded, TINY, "l1", 0.5)
    assert not list((tmp_path / "b").glob("dense-*.lock")), "the dense model must come from the cache"
    a, b = pruned_a.state_dict(), pruned_b.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def quant_parser():
    sys.path.insert(0, str(ROOT / "trials"))
    from trials.quant import get_parser

    return get_parser()


@pytest.mark.parametrize("argv, message", [
    (["--latency-threads", "0"], "--latency-threads must be an integer >= 1, got 0"),
    (["--budget-power", "0"], "--budget-power must be a finite number > 0, got 0.0"),
    (["--calibration-batches", "0"], "--calibration-batches must be an integer >= 1, got 0"),
    (["--trial-budget", "nan"], "--trial-budget must be a finite number > 0, got nan"),
    (["--finetune-epochs", "-1"], "--finetune-epochs must be an integer >= 0 (0 skips fine-tuning), got -1"),
    (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["--keep-model", "/nonexistent/dir/model.onnx"], "--keep-model /nonexistent/dir/model.onnx: not a writable"),
])
def test_every_late_check_fails_in_parse_params_naming_the_flag(argv, message):
    """Each of these once failed only after training (or inside NNI, without naming the parameter)."""
    with pytest.raises(ValueError, match=re.escape(message)):
        trial.parse_params(quant_parser(), argv)


@pytest.mark.parametrize("params, message", [
    ({"latency_threads": 0}, "--latency-threads must be an integer >= 1, got 0 (search space: latency_threads=0)"),
    ({"finetune_epochs": "3"}, "--finetune-epochs must be an integer >= 0"),  # merge_parameter takes any type here
    ({"TRIAL_BUDGET": float("inf")}, "--trial-budget must be a finite number > 0, got inf"),
    ({"calibration_batches": 0}, "--calibration-batches must be an integer >= 1, got 0"),
])
def test_tuner_values_are_checked_as_flags_are(tuner, params, message):
    tuner(params)
    with pytest.raises(ValueError, match=re.escape(message)):
        trial.parse_params(quant_parser(), [])


def test_a_bad_flag_is_the_last_line_of_the_log(tuner, capsys):
    """argparse exits with SystemExit, not an Exception: its reason must still end trial.log (stdout under NNI)."""
    tuner({})
    with pytest.raises(SystemExit) as exit_info:
        trial.run_main(lambda: trial.parse_params(prune_parser(), ["--spasity", "0.5"]))
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"TRIAL FAILED: \S+: error: unrecognized arguments: --spasity 0\.5", last), out
    assert "usage:" in err and err.strip().splitlines()[-1] == last


def test_help_is_not_a_failure(capsys):
    with pytest.raises(SystemExit) as exit_info:
        trial.run_main(lambda: trial.parse_params(prune_parser(), ["--help"]))
    assert exit_info.value.code == 0 and "TRIAL FAILED" not in capsys.readouterr().err


def test_quant_trial_rejects_zero_calibration_batches_in_seconds():
    start = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "trials" / "quant.py"), "--calibration-batches", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "session:" not in proc.stdout, "failed before loading any data"
    assert proc.stderr.strip().splitlines()[-1] == "ValueError: --calibration-batches must be an integer >= 1, got 0"
    assert time.time() - start < 60


def test_skip_bad_images_flag_reaches_the_loader(fake_imagefolder_dir, tmp_path):
    (fake_imagefolder_dir.root / "train" / "dog" / "0.png").write_bytes(b"garbage")
    flags = ["--dataset", "imagefolder", "--data-dir", str(fake_imagefolder_dir.root), "--cache-dir", str(tmp_path)]
    with pytest.raises(DatasetNotFoundError, match=r"1 unreadable image.*dog/0\.png"):
        trial.start_session(trial.parse_params(trial.base_parser("t"), flags))
    session = trial.start_session(trial.parse_params(trial.base_parser("t"), [*flags, "--skip-bad-images"]))
    assert len(session.splits.train_labels) + len(session.splits.val_labels) == 11


def test_the_trial_kind_is_declared_not_the_script_name(monkeypatch):
    monkeypatch.setattr("sys.argv", ["renamed_copy_of_prune.py"])
    args = trial.parse_params(prune_parser(), [])
    assert trial.report_final(0.5, {}, args, "prune")["trial"] == "prune"
    with pytest.raises(ValueError, match="unknown trial kind 'renamed'"):
        trial.report_final(0.5, {}, args, "renamed")


def test_a_measured_subset_keeps_the_cache_keys_of_the_data_loaded(tmp_path):
    """The search profile measures on a fixed subset of the cpu profile's data: its trials must find the models the
    cpu profile cached (the same data key), and measure on the same images every time."""
    args = trial.parse_params(trial.base_parser("t"), ["--data-dir", str(tmp_path / "data"),
                                                        "--cache-dir", str(tmp_path / "cache")])
    full = trial.start_session(args)
    subset = trial.start_session(args, replace(get_profile("smoke"), measure_limit=100))
    again = trial.start_session(args, replace(get_profile("smoke"), measure_limit=100))
    assert subset.data_key() == full.data_key()
    assert len(subset.loaders["val"].labels) == len(subset.loaders["test"].labels) == 100
    assert torch.equal(subset.splits.train_images, full.splits.train_images)
    assert torch.equal(subset.splits.val_images, again.splits.val_images)
    # A class-stratified subset of the full split: each class keeps its share (to one image).
    for split in ("val", "test"):
        whole, part = (getattr(s.splits, f"{split}_labels").bincount(minlength=10) for s in (full, subset))
        assert ((part - whole * 100 / whole.sum()).abs() <= 1).all()


def test_report_final_says_how_long_the_trial_took():
    args = trial.parse_params(prune_parser(), [])
    result = trial.report_final(0.5, {"accuracy": 0.5}, args, "prune")
    import psutil

    assert 0 < result["trial_seconds"] <= time.time() - psutil.Process().create_time() + 0.1  # since start


def test_the_retrying_channel_is_installed_before_the_trial_asks_for_its_parameters(monkeypatch):
    """Issue #27: asking for parameters is where a reset connection killed trials; the channel must be in place."""
    import nni

    calls = []
    monkeypatch.setattr(trial.nni_compat, "resilient_trial_channel", lambda: calls.append("channel"))
    monkeypatch.setattr(trial, "in_nni_trial", lambda: True)
    monkeypatch.setattr(nni, "get_next_parameter", lambda: calls.append("ask") or {})
    trial.parse_params(trial.base_parser("t"), [])
    assert calls == ["channel", "ask"]
