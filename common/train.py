"""Training / evaluation loop shared by all compression trials.

One small, dependency-free loop (SGD + Nesterov, label-smoothed CE, per-step LR schedule) so that every
trial (pruning fine-tune, QAT, NAS) trains the same way and results are comparable. On CUDA it uses bf16
autocast + channels_last (no GradScaler needed for bf16); on CPU it stays plain fp32 so tests are exact.
"""

from __future__ import annotations

import datetime
import itertools
import math
import random
import statistics
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.cpu import cpu_info

__all__ = [
    "Loader",
    "MetricLogger",
    "NonFiniteLossError",
    "SmoothedValue",
    "TrainConfig",
    "distillation_loss",
    "eval_mode",
    "evaluate",
    "fit",
    "make_optimizer",
    "make_scheduler",
    "predict",
    "seed_everything",
]

T = TypeVar("T")
PrintFn = Callable[[str], Any]
SCHEDULES = ("onecycle", "cosine", "constant")


class Loader(Protocol):
    """Anything iterable over ``(images NCHW float, labels int64)`` batches with a length (list, DataLoader)."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/inf: the run diverged and continuing would only waste trial time."""


def _print(msg: str) -> None:
    # Trial stdout goes to a file: flush so `tail -f` and NNI's log view see progress immediately.
    print(msg, flush=True)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all CUDA devices) and pick deterministic cuDNN kernels.

    ``cudnn.deterministic``/``benchmark=False`` are cheap for ResNet-18; we deliberately do not call
    ``torch.use_deterministic_algorithms(True)``, which errors on some CUDA ops and slows others.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # numpy only accepts 32-bit seeds
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


# --------------------------------------------------------------------------------------------- logging


class SmoothedValue:
    """A series of values: median/avg over a sliding window plus the global (sample-weighted) average."""

    def __init__(self, window_size: int = 20, fmt: str = "{median:.4f} ({global_avg:.4f})") -> None:
        self.deque: deque[float] = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0
        self.fmt = fmt

    def update(self, value: float, n: int = 1) -> None:
        self.deque.append(value)
        self.count += n
        self.total += value * n

    @property
    def median(self) -> float:
        return statistics.median(self.deque) if self.deque else math.nan

    @property
    def avg(self) -> float:
        return statistics.fmean(self.deque) if self.deque else math.nan

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def value(self) -> float:
        return self.deque[-1] if self.deque else math.nan

    def __str__(self) -> str:
        return self.fmt.format(median=self.median, avg=self.avg, global_avg=self.global_avg, value=self.value)


class MetricLogger:
    """Named SmoothedValues plus a progress iterator (after torchvision's references/classification/utils.py).

    Every report is one plain line through ``print_fn`` (no ``\\r`` progress bars: trial logs are files).
    """

    def __init__(self, delimiter: str = "  ", print_fn: PrintFn = _print, window_size: int = 20) -> None:
        self.meters: defaultdict[str, SmoothedValue] = defaultdict(lambda: SmoothedValue(window_size))
        self.delimiter = delimiter
        self.print_fn = print_fn

    def update(self, n: int = 1, **kwargs: float | torch.Tensor) -> None:
        for name, v in kwargs.items():
            self.meters[name].update(v.item() if isinstance(v, torch.Tensor) else float(v), n)

    def add_meter(self, name: str, meter: SmoothedValue) -> None:
        self.meters[name] = meter

    def __str__(self) -> str:
        return self.delimiter.join(f"{name}: {meter}" for name, meter in self.meters.items())

    def log_every(self, iterable: Iterable[T], print_freq: int, header: str = "") -> Iterator[T]:
        """Yield from ``iterable``; after items 1, 1+k*print_freq and the last one print eta/meters/it/s.

        The line is printed after the consumer's loop body ran, so meters updated for that item are shown.
        """
        total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        print_freq = max(1, print_freq)
        start = time.perf_counter()
        done = 0
        for obj in iterable:
            yield obj
            done += 1
            if (done - 1) % print_freq == 0 or done == total:
                rate = done / max(time.perf_counter() - start, 1e-9)
                parts = [header, f"[{done}/{total if total is not None else '?'}]"]
                if total is not None:
                    parts.append(f"eta: {datetime.timedelta(seconds=int((total - done) / rate))}")
                parts += [str(self), f"{rate:.2f} it/s"]
                self.print_fn(self.delimiter.join(p for p in parts if p))
        elapsed = time.perf_counter() - start
        self.print_fn(
            f"{header} Total time: {datetime.timedelta(seconds=int(elapsed))} "
            f"({elapsed / max(done, 1):.4f} s / it)".strip()
        )


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float = 0.1  # peak lr, tuned for batch ~256; the caller scales it for other batch sizes
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # not applied to BN/bias (any <=1-D) params, see make_optimizer
    label_smoothing: float = 0.1
    schedule: str = "onecycle"  # "onecycle" | "cosine" (linear warmup + cosine, per step) | "constant"
    warmup_fraction: float = 0.15  # cosine warmup length / OneCycleLR pct_start, as a fraction of all steps
    grad_clip: float | None = None  # max global grad norm; None disables clipping
    print_freq: int = 50
    # Cap on steps per epoch (None: one full pass). Each epoch then trains on a fresh random part of the
    # training split (the loader reshuffles), so a short fine-tune needs no smaller copy of the data.
    steps_per_epoch: int | None = None
    # Logit distillation from the `teacher` that fit() is given (ignored without one): loss =
    # (1 - w) * CE + w * T^2 * KL(softmax(teacher/T) || softmax(student/T)); T^2 keeps the soft-target
    # gradients on CE's scale as T changes (Hinton et al. 2015). w = 0 is off.
    distill_weight: float = 0.0
    distill_temperature: float = 4.0
    # bf16 autocast + channels_last on a CPU that computes bf16 natively (AMX or AVX512-BF16: 2.6x the
    # fp32 images/s of ResNet-18 on the cpu profile's machine); fp32 on every other CPU, where bf16 is
    # emulated and slower. CUDA always trains in bf16. What ran is `training_precision`, part of cache keys.
    cpu_bf16: bool = False

    def __post_init__(self) -> None:
        # Fail at config time (trial start) rather than after the data pipeline spun up.
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1 or None, got {self.steps_per_epoch}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if self.distill_temperature <= 0:
            raise ValueError(f"distill_temperature must be > 0, got {self.distill_temperature}")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with two param groups: "decay" (conv/linear weights) and "no_decay" (every <=1-D parameter).

    Decaying BN affine params and biases only fights normalisation and hurts accuracy; the <=1-D rule
    also catches LayerNorm and the scalar scales/zero-points learned by QAT. Frozen params are skipped.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("model has no trainable parameters")
    # torch rejects nesterov without momentum; treat that combination as plain SGD.
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step LR schedule over ``cfg.epochs * steps_per_epoch`` steps (call ``.step()`` after each batch)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        # cycle_momentum=False so cfg.momentum is honoured instead of OneCycleLR's own 0.85..0.95 cycle.
        # Starts at lr/25, peaks at lr after pct_start, anneals (cos) to lr/25/1e4.
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=total, pct_start=cfg.warmup_fraction, cycle_momentum=False
        )
    sched = torch.optim.lr_scheduler
    if cfg.schedule == "cosine":
        warmup = round(cfg.warmup_fraction * total)
        # Linear ramp lr * (step + 1) / (warmup + 1), reaching the peak exactly at step == warmup, then cosine
        # to 0 at step == total (fit stops one step before, so the cosine never turns back up).
        cosine = sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))
        if warmup == 0:  # LinearLR cannot span 0 steps
            return cosine
        ramp = sched.LinearLR(optimizer, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup)
        return sched.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])
    return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)


# --------------------------------------------------------------------------------------------- helpers


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore each submodule's own train/eval flag.

    Restoring per submodule (not ``model.train(prev)``) keeps deliberately frozen parts, e.g. BN layers
    put in eval() inside a training model, exactly as they were.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def training_precision(cfg: TrainConfig, device: str | torch.device, mixed_precision: bool = True) -> str:
    """`"bf16"` or `"fp32"`: what `fit(model, ..., cfg, device=device)` computes in on this machine."""
    if not mixed_precision:
        return "fp32"
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16"
    return "bf16" if dev.type == "cpu" and cfg.cpu_bf16 and cpu_info().native_bf16 else "fp32"


def _prepare(model: nn.Module, device: torch.device, bf16: bool | None = None) -> None:
    model.to(device)
    if device.type == "cuda" if bf16 is None else bf16:
        # channels_last lets cuDNN / oneDNN pick their fastest (NHWC) conv kernels; only affects 4-D params.
        model.to(memory_format=torch.channels_last)


def _to_device(x: torch.Tensor, device: torch.device, bf16: bool | None = None) -> torch.Tensor:
    if (device.type == "cuda" if bf16 is None else bf16) and x.dim() == 4:
        return x.to(device, non_blocking=True, memory_format=torch.channels_last)
    return x.to(device, non_blocking=True)


def _autocast(device: torch.device, enabled: bool | None = None) -> torch.autocast:
    # bf16 has fp32's exponent range, so unlike fp16 it needs no loss scaling. Evaluation (enabled=None)
    # uses it on CUDA only: CPU accuracies are exact fp32, what an fp32 deployment computes.
    on = device.type == "cuda" if enabled is None else enabled
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on)


def _inputs(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


# ------------------------------------------------------------------------------------------- train/eval


TrainingStep = Callable[[tuple[torch.Tensor, torch.Tensor], nn.Module], tuple[torch.Tensor, torch.Tensor]]


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    t = float(temperature)
    log_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * t * t


class _FP32(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.inner(x.float())


def fp32_exact(model: nn.Module) -> nn.Module:
    """`model` with autocast switched off inside: `evaluate` runs CUDA in bf16, which would blur the
    8-bit grid of a fake-quantized model. A no-op on CPU."""
    return model if isinstance(model, _FP32) else _FP32(model)


class _Capped:
    """The first `n` batches of every pass over `loader`, with a length (the schedule and the logger's eta)."""

    def __init__(self, loader: Loader, n: int) -> None:
        self.loader, self.n = loader, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return itertools.islice(iter(self.loader), self.n)


def fit(
    model: nn.Module,
    train_loader: Loader,
    cfg: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    val_loader: Loader | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    print_fn: PrintFn = _print,
    optimizer: torch.optim.Optimizer | None = None,
    training_step: TrainingStep | None = None,
    max_steps: int | None = None,
    mixed_precision: bool = True,
    name: str | None = None,
    teacher: nn.Module | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` in place for ``cfg.epochs`` epochs; return per-epoch history lists.

    History / ``on_epoch_end(epoch_index, metrics)`` keys: ``train_loss`` (label-smoothed CE, sample mean),
    ``train_acc``, ``lr`` (lr of the epoch's last step) and, only when ``val_loader`` is given,
    ``val_acc``/``val_loss`` (``val_*`` history lists stay empty otherwise). ``epoch_index`` is 0-based.
    ``cfg.epochs == 0`` is a no-op ("skip fine-tune"). Raises NonFiniteLossError on the first NaN/inf
    loss, before it is back-propagated. The model is left in eval() mode. A loader with ``reset()``
    (TensorLoader) is reset first, so every fit sees the same batches whatever the loader served before.

    NNI's quantizers own the optimizer (they patch its ``step``) and the loss: they pass ``optimizer``
    and ``training_step`` (``(batch, model) -> (loss, logits)``); the schedule, clipping, NaN guard and
    logging stay this loop's. ``mixed_precision=False`` keeps everything fp32 (fake quantization needs
    it: bf16 is as coarse as the int8 grid); ``max_steps`` stops early; ``name`` labels the log lines.
    ``cfg.steps_per_epoch`` caps the batches of each epoch. ``teacher`` (with ``cfg.distill_weight > 0``)
    mixes logit distillation into whatever loss the step returned (see TrainConfig); it runs in eval mode
    without gradients, and ``train_loss`` is the mixed loss.
    """
    history: dict[str, list[float]] = {k: [] for k in ("train_loss", "train_acc", "lr", "val_acc", "val_loss")}
    train_loader, steps = _epoch_batches(train_loader, cfg)
    if cfg.epochs == 0:
        model.eval()
        return history

    dev = torch.device(device)
    bf16 = training_precision(cfg, dev, mixed_precision) == "bf16"
    _prepare(model, dev, bf16)
    optimizer = optimizer if optimizer is not None else make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, steps)
    step_fn = training_step or _cross_entropy_step(cfg, dev, bf16)
    if teacher is not None and cfg.distill_weight > 0:
        teacher.to(dev).eval()  # BN running statistics, no dropout: the teacher's own predictions
    else:
        teacher = None
    done = 0
    for epoch in range(cfg.epochs):
        model.train()
        header = f"{name} epoch [{epoch + 1}/{cfg.epochs}]" if name else f"Epoch: [{epoch + 1}/{cfg.epochs}]"
        logger = MetricLogger(print_fn=print_fn)
        loss_sum, seen = 0.0, 0
        correct = torch.zeros((), dtype=torch.long, device=dev)  # stays on device: no extra sync per step
        lr = optimizer.param_groups[0]["lr"]
        for step, (x, y) in enumerate(logger.log_every(train_loader, cfg.print_freq, header), start=1):
            x, y = _to_device(x, dev, bf16), y.to(dev, non_blocking=True)
            where = f"epoch {epoch + 1}/{cfg.epochs}, step {step}/{steps}"
            loss_val, logits, lr = _optimize(model, step_fn, (x, y), optimizer, scheduler, cfg, teacher, bf16,
                                             f"{name + ': ' if name else ''}", where)

            n = y.size(0)
            loss_sum += loss_val * n
            seen += n
            correct += (logits.detach().argmax(1) == y).sum()
            logger.update(loss=loss_val, lr=lr)
            done += 1
            if max_steps is not None and done >= max_steps:
                break

        metrics = {"train_loss": loss_sum / seen, "train_acc": correct.item() / seen, "lr": lr}
        if val_loader is not None:
            val = evaluate(model if mixed_precision else fp32_exact(model), val_loader, device=dev)
            metrics |= {"val_acc": val["accuracy"], "val_loss": val["loss"]}
        _end_epoch(epoch, metrics, history, header, print_fn, on_epoch_end)
        if max_steps is not None and done >= max_steps:
            break

    if bf16 and dev.type == "cpu":
        # Back to the default layout: pruning, ONNX export and NNI's wrappers expect contiguous weights.
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    return history


def _epoch_batches(train_loader: Loader, cfg: TrainConfig) -> tuple[Loader, int]:
    """The loader reset to its first epoch, capped at `cfg.steps_per_epoch` batches, and its batch count."""
    # A cached artifact must depend on its key only: fine-tuning after training the dense model in this
    # process must see the batches it sees after loading that model from the cache.
    reset = getattr(train_loader, "reset", None)
    if callable(reset):
        reset()
    steps = len(train_loader)
    if cfg.epochs and steps == 0:
        raise ValueError("train_loader is empty")
    if cfg.steps_per_epoch is not None and cfg.steps_per_epoch < steps:
        return _Capped(train_loader, cfg.steps_per_epoch), cfg.steps_per_epoch
    return train_loader, steps


def _cross_entropy_step(cfg: TrainConfig, dev: torch.device, bf16: bool) -> TrainingStep:
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def step(batch: tuple[torch.Tensor, torch.Tensor], m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        with _autocast(dev, bf16):
            logits = m(batch[0])
        return criterion(logits.float(), batch[1]), logits

    return step


def _optimize(model: nn.Module, step_fn: TrainingStep, batch: tuple[torch.Tensor, torch.Tensor],
              optimizer: torch.optim.Optimizer, scheduler: Any, cfg: TrainConfig, teacher: nn.Module | None,
              bf16: bool, label: str, where: str) -> tuple[float, torch.Tensor, float]:
    """One optimizer step (distilling from `teacher` when given); returns the loss, the logits and the lr used."""
    loss, logits = step_fn(batch, model)
    if teacher is not None:
        with torch.no_grad(), _autocast(batch[0].device, bf16):
            soft = teacher(batch[0])
        w = cfg.distill_weight
        loss = (1 - w) * loss + w * distillation_loss(logits, soft, cfg.distill_temperature)
    # .item() is the one host sync per step; it both feeds the logger and checks finiteness, and
    # checking before backward() stops a diverged step from corrupting the weights.
    loss_val = loss.item()
    if not math.isfinite(loss_val):
        raise NonFiniteLossError(f"{label}NaN/inf training loss ({loss_val}) at {where}: training diverged; lower "
                                 f"the lr (peak lr={cfg.lr:g}) or set grad_clip.")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    lr = optimizer.param_groups[0]["lr"]  # the lr this step actually used
    optimizer.step()
    scheduler.step()
    return loss_val, logits, lr


def _end_epoch(epoch: int, metrics: dict[str, float], history: dict[str, list[float]], header: str,
               print_fn: PrintFn, on_epoch_end: Callable[[int, dict[str, float]], None] | None) -> None:
    for k, v in metrics.items():
        history[k].append(v)
    print_fn(f"{header} " + "  ".join(f"{k}: {v:.4g}" for k, v in metrics.items()))
    if on_epoch_end is not None:
        on_epoch_end(epoch, dict(metrics))


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Any], *, device: str | torch.device = "cpu") -> dict[str, float]:
    """Top-1 ``accuracy`` in [0, 1] and sample-mean (unsmoothed) CE ``loss`` over ``loader``.

    Runs in eval mode (bf16 autocast on CUDA) and restores the model's previous train/eval flags.
    """
    dev = torch.device(device)
    _prepare(model, dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.long, device=dev)
    n = 0
    with eval_mode(model):
        for x, y in loader:
            x, y = _to_device(x, dev), y.to(dev, non_blocking=True)
            with _autocast(dev):
                logits = model(x)
            logits = logits.float()
            # Sum then divide once: batch-mean averaging would overweight a short last batch.
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            n += y.numel()
    if n == 0:
        raise ValueError("evaluate() got an empty loader")
    return {"accuracy": correct.item() / n, "loss": loss_sum.item() / n}


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable[Any], *, device: str | torch.device = "cpu") -> torch.Tensor:
    """Top-1 class predictions (int64, CPU) for every sample in loader order.

    Batches may be ``(x, y)`` pairs (labels ignored) or bare inputs. Mode is restored like ``evaluate``.
    """
    dev = torch.device(device)
    _prepare(model, dev)
    preds = []
    with eval_mode(model):
        for batch in loader:
            with _autocast(dev):
                logits = model(_to_device(_inputs(batch), dev))
            preds.append(logits.float().argmax(1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
