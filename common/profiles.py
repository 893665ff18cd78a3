"""Compute budgets, defined once: every trial and benchmark takes its sizes from a profile.

- `smoke`: synthetic data, a few hundred images, a few epochs, CPU-friendly: a trial in well under
  a minute, offline. Its accuracies say the pipeline works, nothing about CIFAR-10.
- `full`: CIFAR-10, the recipe expected to take CIFAR ResNet-18 to >= 93% test accuracy on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from common.train import TrainConfig

# A deployed int8 model that agrees with NNI's simulation on fewer validation images does not run NNI's grid.
MIN_AGREEMENT = 0.99


@dataclass(frozen=True)
class Profile:
    name: str
    dataset: str
    train: TrainConfig  # the dense baseline
    finetune: TrainConfig  # recovery after pruning / quantization-aware training
    batch_size: int
    train_limit: int | None = None  # cap on training images (None: all)
    eval_limit: int | None = None  # cap on validation and test images
    val_fraction: float = 0.1
    latency_repeats: int = 20
    latency_warmup: int = 3
    # Deployed vs simulated top-1 (validation) below this fails a quantization trial (common/stages.py).
    min_agreement: float = MIN_AGREEMENT


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        dataset="synthetic",
        # 3 epochs (~30 s on 2 CPU cores, once per cache) lift the synthetic baseline well above chance,
        # so a pruning or quantization loss is visible even in a smoke run.
        train=TrainConfig(epochs=3, lr=0.2, print_freq=4),
        finetune=TrainConfig(epochs=1, lr=0.02, schedule="cosine", print_freq=4),
        batch_size=64,
        train_limit=512,
        eval_limit=256,
        latency_repeats=5,
        latency_warmup=1,
        # Near-random synthetic models have near-tie logits that any rounding flips: on a VNNI CPU, whose
        # kernels execute the grid exactly, 96.9-98.4 % of them agree. Saturation (< 92 %) still fails.
        min_agreement=0.95,
    ),
    "full": Profile(
        name="full",
        dataset="cifar10",
        # One-cycle SGD+Nesterov, label smoothing, batch 256, 40 epochs: the standard recipe that
        # takes CIFAR ResNet-18 to ~94-95% (not measured here: this machine has no GPU and no CIFAR-10).
        train=TrainConfig(epochs=40, lr=0.2, print_freq=50),
        finetune=TrainConfig(epochs=10, lr=0.02, schedule="cosine", warmup_fraction=0.0, print_freq=50),
        batch_size=256,
        latency_repeats=50,
        latency_warmup=5,
    ),
}


def get_profile(name: str, **overrides) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    profile = PROFILES[name]
    return replace(profile, **{k: v for k, v in overrides.items() if v is not None})
