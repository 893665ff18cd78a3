"""Compute budgets, defined once: every trial and benchmark takes its sizes from a profile.

- `smoke`: synthetic 16x16 images, a few hundred, a few epochs, CPU-friendly: a trial in well under
  a minute, offline. Its accuracies say the pipeline works, nothing about CIFAR-10.
- `full`: CIFAR-10, the recipe expected to take CIFAR ResNet-18 to >= 93% test accuracy on a GPU.
- `cpu`: Fashion-MNIST (real images) on a 2-core CPU: the dense ResNet-18 once in <= 30 min (bf16 where the
  CPU has it natively), every compression trial after it in <= 10 min, sized from measured throughput
  (CPU_THROUGHPUT, at the idle rates).
- `ci`: Fashion-MNIST at 16x16, 1,024 images: real data end to end in about a minute (CI).
- `search`: `cpu`'s data and cached dense model, a short fine-tune and QAT, accuracy on a fixed subset: a search
  trial in <= 4 min (estimated below, to be measured), whose picked points are re-trained at `cpu`.
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
    finetune: TrainConfig  # recovery after pruning (and quantization-aware training unless `qat` is set)
    batch_size: int
    train_limit: int | None = None  # cap on training images (None: all)
    eval_limit: int | None = None  # cap on validation and test images
    val_fraction: float = 0.1
    latency_repeats: int = 20
    latency_warmup: int = 3
    image_size: int | None = None  # None: the data set's own (Fashion-MNIST 28, the others 32)
    crop_pad: int = 4  # random-crop translation of training images, px (0: none; flips stay)
    # Deployed vs simulated top-1 (validation) below this fails a quantization trial (common/stages.py).
    min_agreement: float = MIN_AGREEMENT
    qat: TrainConfig | None = None  # quantization-aware training (QAT, LSQ, DoReFa); None: `finetune`
    # Run each deployed int8 file on an emulated AVX2-only CPU too (common/portability.py): "avx2" or "none".
    portability_check: str = "none"
    # Measure val and test accuracy on a fixed class-stratified subset of this many images each (None: all of
    # eval_limit). The data loaded, and so every cache key, stay the profile's: a search profile derived from
    # another reuses its cached dense model.
    measure_limit: int | None = None


# ResNet-18 (CIFAR variant) images/s measured on this project's CPU machine, 1x28x28 inputs, batch 128, 2 threads
# ("Intel(R) Xeon(R) Processor", AVX-512 VNNI + AMX, 2 cores). idle: the machine to ourselves (fp32 with
# `python3 -m common.cli.bench train`; bf16 + channels-last, TrainConfig.cpu_bf16, from torch.profiler over fit());
# shared: two other engineers' trials running; qat: NNI's QATQuantizer fine-tuning the dense model in fp32
# (measured shared: 10 images/s, 0.65 of plain training per core-second). In a trial beside other processes the
# bf16 dense model trained at 85-88 images/s (10-11 min per pass over 54,000 images).
CPU_THROUGHPUT = {
    "idle": {"train": 55.0, "train_bf16": 122.0, "eval": 170.0, "qat": 36.0},
    "shared": {"train": 15.0, "train_bf16": 85.0, "eval": 60.0, "qat": 10.0},
}

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
        # Smoke latencies are never cited (synthetic data); 2 timed calls keep the measurement, at b64 half a
        # trial's time with 5 (measured on an AMD EPYC Zen 3: 27 s of a 56 s pipeline trial).
        latency_repeats=2,
        latency_warmup=1,
        # 16x16 synthetic images: a quarter of 32x32's compute, so a smoke trial (and the test suite, made of
        # them) takes half the time (a cached pipeline trial 28 s instead of 56 s on an AMD EPYC Zen 3); the
        # baseline still learns well above chance (~0.4, chance 0.1).
        image_size=16,
        # Near-random synthetic models have near-tie logits that any float rounding difference between torch's
        # simulation and the runtime flips: on CPUs whose kernels execute the grid exactly (their own QDQ graph
        # agrees 100 %) 94.5-98.4 % of them agree (DoReFa 4-bit lowest, on an AMD EPYC with VNNI: its identity
        # branches stay float in the simulation). The gate here catches gross deployment errors; the real-data
        # profiles gate at 0.99, where saturating kernels fail.
        min_agreement=0.90,
    ),
    "cpu": Profile(
        name="cpu",
        dataset="fashion-mnist",
        # 3 passes over the 54,000 training images (162,000, one-cycle to lr 0.2, flips, no crop: translation
        # only slows a short run's learning). In bf16 on an AMX CPU ~20 min idle (CPU_THROUGHPUT); a CPU without
        # native bf16 trains in fp32 at less than half that rate (~50 min), once per cache.
        train=TrainConfig(epochs=3, lr=0.2, print_freq=50, cpu_bf16=True),
        # Recovery after pruning: one pass (2 x 211 steps, fresh images each epoch, so NNI gets 2 intermediate
        # results); a 50 %-pruned ResNet-18 trains ~2.5x faster than the dense one, ~3 min idle in bf16.
        finetune=TrainConfig(epochs=2, lr=0.04, schedule="cosine", warmup_fraction=0.0, steps_per_epoch=211,
                             print_freq=50, cpu_bf16=True),
        # Quantization-aware training runs fp32 (fake quantization needs it) at the qat rate: 2 x 32 steps.
        qat=TrainConfig(epochs=2, lr=0.02, schedule="cosine", warmup_fraction=0.0, steps_per_epoch=32,
                        print_freq=8),
        batch_size=128,
        crop_pad=0,
        eval_limit=5000,  # 5,000 val + 5,000 test (stratified): +-0.4 % at 90 %, ~30 s per fp32 ResNet-18
        latency_repeats=10,
        latency_warmup=2,
        portability_check="avx2",
    ),
    "ci": Profile(
        name="ci",
        dataset="fashion-mnist",
        # Real images in well under a minute of training (tests/test_e2e_realdata.py): 1,024 Fashion-MNIST
        # images at 16x16 (a third of 28x28's cost), 2 epochs of 32 steps; measured 0.63 test accuracy.
        train=TrainConfig(epochs=2, lr=0.05, print_freq=8),
        finetune=TrainConfig(epochs=1, lr=0.02, schedule="cosine", print_freq=8),
        batch_size=32,
        train_limit=1024,
        eval_limit=256,
        latency_repeats=2,  # as `smoke`: what the test of this profile checks is the pipeline, not its speed
        latency_warmup=1,
        image_size=16,
        crop_pad=0,
        # A 2-epoch model (~65 % accurate) on 256 validation images has near-ties that float rounding flips
        # between torch's simulation and the runtime, whose int8 kernels agree 100 % with their own QDQ graph:
        # measured on an AMD EPYC with VNNI, 3 of 256 flipped (98.8 %), in a rerun 2, with top-2 margins < 0.007.
        min_agreement=0.97,
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
        portability_check="avx2",
    ),
}


# A search trial (issue #29): the `cpu` profile's data, dense recipe and latency timing, so the cached dense model
# is reused and the ratios are measured alike, with a short fine-tune and QAT, accuracy on a fixed subset, and no
# portability check (the grid is portable by construction; the picked points get it when re-trained at `cpu`).
# ~3 min a trial estimated (search_trial_seconds), measured by each result's `trial_seconds`.
PROFILES["search"] = replace(
    PROFILES["cpu"],
    name="search",
    finetune=replace(PROFILES["cpu"].finetune, steps_per_epoch=40, print_freq=20),  # 2 x 40 steps of 128
    qat=replace(PROFILES["cpu"].qat, steps_per_epoch=8, print_freq=4),  # 2 x 8 steps of 128, fp32
    measure_limit=1000,  # +-0.95 pt at 90 % for one model; trials are compared on the same images
    portability_check="none",
)


# Per search trial, besides training and evaluation: start-up and the cached dense model (~15 s), pruning (~10 s),
# ONNX export and deployment (~10 s), latency timing of 6 models x 2 batch sizes x 12 calls (~20 s).
SEARCH_FIXED_S = 55.0


def search_trial_seconds(p: Profile, rate: dict[str, float], speedup: float = 1.0) -> float:
    """A pipeline trial's estimated wall time at `rate` (CPU_THROUGHPUT), its pruned model training and evaluating
    `speedup` x faster than the dense one (1: the worst case, no sparsity; ~2 at the space's mean sparsity 0.4, as a
    50 %-pruned model trains ~2.5x faster). Images: the fine-tune in bf16 with a val pass before it and after each
    epoch; QAT at the QAT rate with a val pass per epoch in fake quantization (forward at the eval rate slowed like
    training); val + test of the simulation, 2 int8 runtimes (at least the fp32 rate) and the dense and pruned fp32
    models."""
    qat, n = p.qat or p.finetune, p.measure_limit or p.eval_limit or 0
    fake_quant = rate["eval"] * rate["qat"] / rate["train"]
    pruned = (p.finetune.epochs * p.finetune.steps_per_epoch * p.batch_size / rate["train_bf16"]
              + (1 + p.finetune.epochs + 6) * n / rate["eval"]
              + qat.epochs * qat.steps_per_epoch * p.batch_size / rate["qat"] + (qat.epochs + 2) * n / fake_quant)
    return SEARCH_FIXED_S + 2 * n / rate["eval"] + pruned / speedup


def get_profile(name: str, **overrides) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    profile = PROFILES[name]
    return replace(profile, **{k: v for k, v in overrides.items() if v is not None})
