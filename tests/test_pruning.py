import copy
import re

import pytest
import torch

from common.metrics import count_flops, count_params
from common.models import build_model, resnet18
from common.pruning import (
    DEFAULT_GRADUAL_STEPS,
    PRUNERS,
    kept_filters,
    prune_gradually,
    prune_model,
    resolve_steps,
    sparsity_schedule,
    split_finetune,
    validate,
)
from common.train import TrainConfig

X = torch.randn(1, 3, 32, 32)


@pytest.mark.parametrize("pruner", PRUNERS)
def test_each_pruner_shrinks_a_small_resnet(pruner):
    model = build_model({"blocks": [1, 1], "widths": [8, 16]}).eval()
    out_before = model(torch.randn(2, 3, 32, 32)).shape
    pruned, stats = prune_model(model, pruner, 0.5, X)
    assert pruned(torch.randn(2, 3, 32, 32)).shape == out_before
    assert stats.params_after == count_params(pruned) < stats.params_before
    assert stats.flops_after == count_flops(pruned) < stats.flops_before
    assert pruned.layer2[0].conv2.out_channels == 8


def test_half_sparsity_resnet18_quarter_params_and_flops():
    model = resnet18().eval()
    pruned, stats = prune_model(model, "fpgm", 0.5, X)
    # Halving both input and output channels of every conv leaves ~1/4 of the weights and MACs.
    assert 0.2 < stats.params_ratio <= 0.30
    assert 0.2 < stats.flops_ratio <= 0.30
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert pruned.fc.out_features == 10


def test_higher_sparsity_removes_more():
    ratios = [prune_model(build_model({"blocks": [1, 1], "widths": [16, 32]}), "l1", s, X)[1].params_ratio
              for s in (0.25, 0.5, 0.75)]
    assert ratios[0] > ratios[1] > ratios[2]


def test_l1_keeps_the_largest_norm_filters():
    model = build_model({"blocks": [1], "widths": [4]}).eval()
    conv = model.layer1[0].conv1
    with torch.no_grad():
        for i, scale in enumerate([0.01, 5.0, 0.02, 3.0]):
            conv.weight[i].fill_(scale)
    prune_model(model, "l1", 0.5, X)
    kept = model.layer1[0].conv1.weight  # input channels shrink too (the stem was pruned)
    assert sorted(kept.flatten(1)[:, 0].tolist()) == [3.0, 5.0]


@pytest.mark.parametrize(
    "pruner, sparsity, match",
    [("l0", 0.5, "unknown pruner 'l0'"), ("fpgm", 0.0, "between 0 and 1"), ("fpgm", 1.0, "between 0 and 1"),
     ("l1", -0.2, "between 0 and 1"), ("l1", 1.5, "between 0 and 1")],
)
def test_bad_arguments_fail_clearly(pruner, sparsity, match):
    with pytest.raises(ValueError, match=match):
        validate(pruner, sparsity)


# ---------------------------------------------------------------------------------------- gradual pruning

SMALL = {"blocks": [1, 1], "widths": [8, 16]}


def _widths(model):
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def _prune_parser(name="prune"):
    import importlib
    import sys

    from tests.nnictl_utils import ROOT

    sys.path.insert(0, str(ROOT / "trials"))
    return importlib.import_module(f"trials.{name}").get_parser()


def test_sparsity_schedule_is_linear_in_the_kept_fraction_and_ends_at_the_target():
    assert sparsity_schedule(0.5, 3) == pytest.approx([1 / 6, 1 / 3, 0.5])
    assert sparsity_schedule(0.7, 3)[-1] == 0.7  # exactly: 0.7 * 3 / 3 is 0.6999999999999998
    assert sparsity_schedule(0.6, 1) == [0.6]
    kept = [1 - s for s in sparsity_schedule(0.8, 4)]
    assert [a - b for a, b in zip([1.0, *kept], kept, strict=False)] == pytest.approx([0.2] * 4)
    # Filters per round of a 64-wide conv: each round removes a fraction of what is left, to one-shot's 32.
    assert [kept_filters(64, s) for s in sparsity_schedule(0.5, 3)] == [54, 43, 32]
    assert kept_filters(64, 0.5) == 64 - int(64 * 0.5) and kept_filters(10, 0.75) == 3


def test_gradual_reaches_one_shot_widths_round_by_round():
    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    one_shot, one_stats = prune_model(copy.deepcopy(model), "l1", 0.5, X)
    seen = []
    pruned, stats, rounds = prune_gradually(copy.deepcopy(model), "l1", 0.5, 3, X,
                                            lambda k, m, s: seen.append((k, s.sparsity, count_params(m))))
    assert [k for k, _, _ in seen] == [0, 1, 2] and [s for _, s, _ in seen] == sparsity_schedule(0.5, 3)
    params = [p for _, _, p in seen]
    assert one_stats.params_before > params[0] > params[1] > params[2] == stats.params_after
    assert abs(stats.params_after / one_stats.params_after - 1) <= 0.02
    assert _widths(pruned) == _widths(one_shot)  # the same architecture, so equal params and FLOPs
    assert stats.params_before == one_stats.params_before and stats.flops_after == one_stats.flops_after
    assert stats.sparsity == 0.5 and [r.sparsity for r in rounds] == sparsity_schedule(0.5, 3)
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_gradual_in_one_step_is_one_shot():
    torch.manual_seed(1)
    model = build_model(SMALL).eval()
    one_shot, _ = prune_model(copy.deepcopy(model), "fpgm", 0.7, X)
    gradual, _, rounds = prune_gradually(copy.deepcopy(model), "fpgm", 0.7, 1, X)
    a, b = one_shot.state_dict(), gradual.state_dict()
    assert len(rounds) == 1 and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("epochs, cap, per_pass", [(2, 211, 421), (1, None, 7), (10, None, 175), (3, 50, 40)])
@pytest.mark.parametrize("steps", [2, 3, 5])
def test_gradual_rounds_share_one_shots_fine_tune_steps(epochs, cap, per_pass, steps):
    cfg = TrainConfig(epochs=epochs, lr=0.02, schedule="cosine", steps_per_epoch=cap)
    one_shot = epochs * min(cap or per_pass, per_pass)
    r = split_finetune(cfg, steps, per_pass)
    total = steps * r.epochs * r.steps_per_epoch
    assert abs(total - one_shot) <= steps * r.epochs / 2  # rounding: at most half a step per epoch
    assert r.steps_per_epoch <= min(cap or per_pass, per_pass)  # never more batches per epoch than one-shot's
    assert (r.lr, r.schedule) == (cfg.lr, cfg.schedule)


def test_split_finetune_leaves_one_step_and_no_fine_tune_alone():
    cfg = TrainConfig(epochs=2, steps_per_epoch=211)
    assert split_finetune(cfg, 1, 421) is cfg
    assert split_finetune(TrainConfig(epochs=0), 3, 421).epochs == 0
    # The cpu profile: 2 x 211 steps one-shot, 3 rounds of 141 (423 steps, +0.5 %).
    assert (split_finetune(cfg, 3, 421).epochs, split_finetune(cfg, 3, 421).steps_per_epoch) == (1, 141)


@pytest.mark.parametrize("schedule, steps, resolved", [("oneshot", None, 1), ("gradual", None, DEFAULT_GRADUAL_STEPS),
                                                        ("gradual", 5, 5), ("gradual", 1, 1), ("oneshot", 1, 1)])
def test_prune_steps_default_to_the_schedules(schedule, steps, resolved):
    assert resolve_steps(schedule, steps) == resolved


@pytest.mark.parametrize("schedule, steps, match", [
    ("agp", None, "unknown --prune-schedule 'agp'; choose one of oneshot, gradual"),
    ("gradual", 0, "--prune-steps must be an integer >= 1, got 0"),
    ("gradual", 2.5, "--prune-steps must be an integer >= 1, got 2.5"),
    ("gradual", True, "--prune-steps must be an integer >= 1, got True"),
    ("oneshot", 3, "--prune-steps 3 needs --prune-schedule gradual"),
])
def test_bad_schedule_fails_clearly(schedule, steps, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        resolve_steps(schedule, steps)


@pytest.mark.parametrize("trial", ["prune", "pipeline"])
def test_both_trials_take_the_schedule_flags_and_echo_the_resolved_steps(trial):
    from common.trial import parse_params

    parser = _prune_parser(trial)
    assert (parse_params(parser, []).prune_schedule, parse_params(parser, []).prune_steps) == ("oneshot", 1)
    assert parse_params(parser, ["--prune-schedule", "gradual"]).prune_steps == DEFAULT_GRADUAL_STEPS
    assert parse_params(parser, ["--prune-schedule", "gradual", "--prune-steps", "4"]).prune_steps == 4
    with pytest.raises(ValueError, match=re.escape("--prune-steps must be an integer >= 1, got 0")):
        parse_params(parser, ["--prune-schedule", "gradual", "--prune-steps", "0"])
    with pytest.raises(ValueError, match="needs --prune-schedule gradual"):
        parse_params(parser, ["--prune-steps", "3"])


@pytest.mark.parametrize("params, match", [
    ({"prune_schedule": "agp"}, "search space gave prune_schedule='agp'; valid: ['oneshot', 'gradual']"),
    ({"prune_schedule": "gradual", "prune_steps": 2.5}, "--prune-steps must be an integer >= 1, got 2.5 (search space"),
    ({"prune_schedule": "gradual", "prune_steps": "3"}, "--prune-steps must be an integer >= 1, got '3'"),
])
def test_bad_schedule_from_the_tuner_fails_before_any_work(tuner, params, match):
    from common.trial import parse_params

    tuner(params)
    with pytest.raises(ValueError, match=re.escape(match)):
        parse_params(_prune_parser(), [])


def test_prune_trial_rejects_zero_prune_steps_in_seconds():
    import subprocess
    import sys

    from tests.nnictl_utils import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "trials" / "prune.py"), "--prune-schedule", "gradual",
                           "--prune-steps", "0"], capture_output=True, text=True, timeout=300)
    # No wall-clock bound (imports alone take a minute on a loaded 2-core machine): no data was loaded.
    assert proc.returncode != 0 and "session:" not in proc.stdout, "failed before loading any data"
    assert proc.stderr.strip().splitlines()[-1] == "ValueError: --prune-steps must be an integer >= 1, got 0"


def test_gradual_pruned_stage(tmp_path):
    """Through the pruned stage: its own cache entry (one-shot's key unchanged, 1 step shares it), one-shot's
    widths, one-shot's fine-tune epochs split across the rounds, each round on fresh loader epochs."""
    from common.cache import ArtifactCache
    from common.context import StageContext
    from common.data import load_splits, make_loaders
    from common.metrics import LatencySetting
    from common.stages import pruned_stage

    splits = load_splits("synthetic", tmp_path, train_limit=96, eval_limit=32)
    finetune = TrainConfig(epochs=2, lr=0.02, schedule="cosine", print_freq=100)
    inputs = StageContext(loaders=make_loaders(splits, 32, seed=0),
                          labels={"val": splits.val_labels, "test": splits.test_labels}, device=torch.device("cpu"),
                          cache=ArtifactCache(tmp_path / "cache"), data_key={"data": splits.fingerprint},
                          num_classes=splits.num_classes, image_shape=tuple(splits.train_images.shape[1:]), seed=0,
                          train=TrainConfig(epochs=1, lr=0.2, print_freq=100), finetune=finetune, qat=finetune,
                          latency=LatencySetting())
    keys = []
    get_or_build = inputs.cache.get_or_build
    inputs.cache.get_or_build = lambda name, key, build: keys.append(key) or get_or_build(name, key, build)
    tiny = {"blocks": [1], "widths": [8], "activation": "relu", "kernel_size": 3}

    one_shot, one_info = pruned_stage(inputs, tiny, "l1", 0.5)
    assert inputs.loaders["train"].epoch == 2
    gradual, info = pruned_stage(inputs, tiny, "l1", 0.5, schedule="gradual", steps=2)
    assert inputs.loaders["train"].epoch == 2  # round 2 trained on epoch 1, not on round 1's epoch 0 again
    pruned_stage(inputs, tiny, "l1", 0.5, schedule="gradual", steps=1)

    one_key, gradual_key, one_step_key = [k for k in keys if k["stage"] == "pruned"]
    assert "prune_schedule" not in one_key and "prune_steps" not in one_key
    assert {k: v for k, v in gradual_key.items() if k not in one_key} == {"prune_schedule": "gradual",
                                                                           "prune_steps": 2}
    assert one_step_key == one_key  # the same model: served from one-shot's entry
    assert count_params(gradual) == count_params(one_shot) and _widths(gradual) == _widths(one_shot)
    assert len(info["history"]["train_loss"]) == len(one_info["history"]["train_loss"]) == 2  # 2 x 1 epoch
    assert [r["sparsity"] for r in info["rounds"]] == [0.25, 0.5]
    assert info["rounds"][0]["params"] > info["rounds"][1]["params"] == count_params(gradual)
    assert info["val_acc_before_finetune"] == info["rounds"][0]["val_acc_before_finetune"]
    assert info["finetune_per_round"]["epochs"] == 1
