"""Logit distillation from the dense model while fine-tuning (common.train.fit's `teacher`, the trial flags)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common import trial
from common.stages import pruned_stage
from common.train import TrainConfig, distillation_loss, fit
from common.trial import stage_context

TINY = {"blocks": [1], "widths": [8], "activation": "relu", "kernel_size": 3}


def _batches(n: int = 256, batch_size: int = 32, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)  # labels unrelated to the teacher's predictions
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)]


def _kl_to_teacher(student: nn.Module, teacher: nn.Module, batches) -> float:
    with torch.no_grad():
        x = torch.cat([b[0] for b in batches])
        return F.kl_div(F.log_softmax(student(x), 1), F.log_softmax(teacher(x), 1), reduction="batchmean",
                        log_target=True).item()


def test_distillation_loss_is_temperature_scaled_kl():
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    assert distillation_loss(t, t, 3.0).item() == pytest.approx(0.0, abs=1e-6)
    manual = (F.softmax(t / 2, 1) * (F.log_softmax(t / 2, 1) - F.log_softmax(s / 2, 1))).sum(1).mean() * 4
    assert distillation_loss(s, t, 2.0).item() == pytest.approx(manual.item(), rel=1e-5)


def test_weight_one_moves_the_students_logits_to_the_teachers():
    torch.manual_seed(0)
    teacher = nn.Linear(16, 4)
    with torch.no_grad():
        teacher.weight.mul_(3)  # confident, and different from the labels
    student0 = nn.Linear(16, 4)
    batches = _batches()
    before = _kl_to_teacher(student0, teacher, batches)
    teacher_state = copy.deepcopy(teacher.state_dict())

    def train(weight: float, with_teacher: bool = True) -> nn.Module:
        student = copy.deepcopy(student0)
        cfg = TrainConfig(epochs=15, lr=0.5, label_smoothing=0.0, weight_decay=0.0, distill_weight=weight,
                          distill_temperature=2.0)
        history = fit(student, batches, cfg, teacher=teacher if with_teacher else None, print_fn=lambda _: None)
        assert all(math.isfinite(v) for v in history["train_loss"])
        return student

    distilled, plain = _kl_to_teacher(train(1.0), teacher, batches), _kl_to_teacher(train(0.0), teacher, batches)
    assert distilled < 0.2 * before and distilled < 0.2 * plain
    # Without a teacher the weight is inert: exactly the plain run.
    assert _kl_to_teacher(train(1.0, with_teacher=False), teacher, batches) == pytest.approx(plain)
    # The teacher is only read.
    assert all(torch.equal(v, teacher_state[k]) for k, v in teacher.state_dict().items())


def test_a_callers_training_step_is_distilled_too():
    """NNI's quantizers pass their own training_step: the distillation term is mixed into the loss it returns."""
    torch.manual_seed(1)
    teacher, student = nn.Linear(16, 4), nn.Linear(16, 4)
    batch = _batches()[0]
    seen: list[tuple[float, torch.Tensor]] = []

    def step(b, m):
        logits = m(b[0])
        loss = F.cross_entropy(logits, b[1])
        seen.append((loss.item(), logits.detach().clone()))
        return loss, logits

    cfg = TrainConfig(epochs=1, lr=0.1, distill_weight=0.25, distill_temperature=1.5)
    history = fit(student, [batch], cfg, teacher=teacher, training_step=step, print_fn=lambda _: None)
    (ce, logits), = seen
    with torch.no_grad():
        expected = 0.75 * ce + 0.25 * distillation_loss(logits, teacher(batch[0]), 1.5).item()
    assert history["train_loss"][0] == pytest.approx(expected, rel=1e-5) and expected != pytest.approx(ce)


@pytest.mark.parametrize("weight, temperature, match", [(1.5, 4.0, "distill_weight"), (-0.1, 4.0, "distill_weight"),
                                                        (0.5, 0.0, "distill_temperature")])
def test_bad_distillation_flags_fail_at_parse_time(weight, temperature, match):
    with pytest.raises(ValueError, match=match):
        trial.parse_params(trial.base_parser("t"), ["--distill-weight", str(weight),
                                                    "--distill-temperature", str(temperature)])


def test_distillation_is_in_the_pruned_cache_key_and_the_echo(tmp_path, capsys):
    def session(*flags: str) -> trial.Session:
        args = trial.parse_params(trial.base_parser("t"), ["--cache-dir", str(tmp_path / "cache"), *flags])
        return trial.start_session(args)

    plain = session()
    pruned_stage(stage_context(plain), TINY, "l1", 0.5)
    # Off with any temperature is the same entry; on is another one, fine-tuned from the dense teacher.
    pruned_stage(stage_context(session("--distill-temperature", "9")), TINY, "l1", 0.5)
    distilled = session("--distill-weight", "0.5", "--distill-temperature", "2")
    assert distilled.finetune_config().distill_weight == 0.5 and distilled.finetune_config().distill_temperature == 2
    pruned_stage(stage_context(distilled), TINY, "l1", 0.5)
    out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pruned b1_w8")]
    assert [line.rsplit(": ", 1)[1] for line in out] == ["built and cached", "loaded from cache", "built and cached"]
    echoed = trial.report_final(0.5, {}, distilled.args, "prune")
    assert (echoed["distill_weight"], echoed["distill_temperature"]) == (0.5, 2.0)


def test_quantization_aware_training_distils_from_the_teacher():
    """QAT/LSQ/DoReFa train through fit with NNI's training_step: a teacher and a weight change their loss."""
    from common.models import build_model
    from common.quantization import quantize_model

    torch.manual_seed(0)
    x = torch.randn(64, 1, 8, 8)
    batches = [(x[i : i + 16], torch.randint(0, 4, (16,))) for i in range(0, 64, 16)]
    model, teacher = build_model(TINY, 4, in_channels=1).eval(), build_model(TINY, 4, in_channels=1).eval()

    def loss(weight: float) -> float:
        cfg = TrainConfig(epochs=1, lr=0.01, distill_weight=weight, distill_temperature=2.0)
        _, _, info = quantize_model(model, "qat", 8, train_loader=batches, finetune_cfg=cfg,
                                    example_input=x[:1], calibration_batches=1, teacher=teacher)
        return info["history"]["train_loss"][0]

    plain, distilled = loss(0.0), loss(1.0)
    assert math.isfinite(distilled) and distilled != pytest.approx(plain, rel=1e-3)
