"""CIFAR-style residual networks.

One `ResNet` class covers both the CIFAR ResNet-18 baseline and the candidates of the NAS macro
space (stages, blocks per stage, widths, activation, kernel size), so every experiment prunes,
quantizes and deploys the same kind of module graph.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class ResNetSpec:
    """Architecture of a CIFAR ResNet; the defaults are ResNet-18 (11.17 M parameters)."""

    blocks: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    activation: str = "relu"
    kernel_size: int = 3
    num_classes: int = 10
    stem_width: int | None = None  # None: the first stage's width
    in_channels: int = 3  # image channels (1 for Fashion-MNIST); like num_classes, the data decides it

    def __post_init__(self) -> None:
        if len(self.blocks) != len(self.widths) or not self.blocks:
            raise ValueError(
                f"blocks {self.blocks} and widths {self.widths} must be non-empty and of equal length"
            )
        if any(b < 1 for b in self.blocks) or any(w < 1 for w in self.widths):
            raise ValueError(f"blocks {self.blocks} and widths {self.widths} must be positive")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose from {sorted(ACTIVATIONS)}")
        if isinstance(self.kernel_size, bool) or not isinstance(self.kernel_size, int) or \
                self.kernel_size not in (1, 3, 5, 7):
            raise ValueError(f"kernel_size must be an odd size in (1, 3, 5, 7), got {self.kernel_size}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"], d["widths"] = list(self.blocks), list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ResNetSpec:
        unknown = set(d) - {"blocks", "widths", "activation", "kernel_size", "num_classes", "stem_width", "in_channels"}
        if unknown:
            raise ValueError(f"unknown architecture keys {sorted(unknown)}")
        d = dict(d)
        for key in ("blocks", "widths"):
            if key in d:
                value = d[key]
                # A string ("11") or 16.5 would become (1, 1) or 16 through int(): say so instead.
                if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int)
                                                               for v in value):
                    raise ValueError(f"{key} must be a list of integers, got {value!r}")
                d[key] = tuple(value)
        return cls(**d)


class BasicBlock(nn.Module):
    """Two convolutions with a residual addition; a 1x1 projection when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, activation: str, kernel_size: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.act1 = ACTIVATIONS[activation]()
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        # Separate activation modules (not one shared) so quantizers and tracers see distinct call sites.
        self.act2 = ACTIVATIONS[activation]()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + identity)


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stride-1 stem and no max-pool (32x32 inputs), stages halve the resolution."""

    def __init__(self, spec: ResNetSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or ResNetSpec()
        s = self.spec
        stem = s.stem_width or s.widths[0]
        self.conv1 = nn.Conv2d(s.in_channels, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.act = ACTIVATIONS[s.activation]()
        stages: list[nn.Module] = []
        in_ch = stem
        for i, (n_blocks, width) in enumerate(zip(s.blocks, s.widths, strict=True)):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(in_ch, width, stride, s.activation, s.kernel_size))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        # Named layer1..layerN like torchvision, so op names in configs and logs read familiarly.
        for i, stage in enumerate(stages, start=1):
            self.add_module(f"layer{i}", stage)
        self.num_stages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, s.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero-init the last BN of each block: every block starts as identity, which trains faster.
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet18(num_classes: int = 10) -> ResNet:
    """The CIFAR variant of ResNet-18."""
    return ResNet(ResNetSpec(num_classes=num_classes))


def to_spec(arch: str | dict | ResNetSpec, num_classes: int = 10, in_channels: int = 3) -> ResNetSpec:
    """Resolve a name (`resnet18`), an architecture dict (NAS export) or a spec into a spec."""
    if isinstance(arch, ResNetSpec):
        return arch
    if isinstance(arch, dict):
        return ResNetSpec.from_dict({"num_classes": num_classes, "in_channels": in_channels, **arch})
    if arch == "resnet18":
        return ResNetSpec(num_classes=num_classes, in_channels=in_channels)
    raise ValueError(f"unknown architecture {arch!r}; use 'resnet18' or an architecture dict")


def check_resolution(arch: str | dict | ResNetSpec, image_size: int) -> None:
    """ValueError when `arch`'s stages would halve `image_size` px images below 2 px (its last stages would
    convolve 1x1 feature maps: padding, not image)."""
    stages = len(to_spec(arch).blocks)
    last = image_size
    for _ in range(stages - 1):
        last = (last + 1) // 2
    if last < 2:
        fits = next(n for n in range(1, stages + 1) if -(-image_size // 2 ** n) < 2)
        raise ValueError(f"architecture with {stages} stages on {image_size}x{image_size} images: the last stages "
                         f"would run at {last}x{last} px; use at most {fits} stages for this image size")


def build_model(arch: str | dict | ResNetSpec, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """The network of `arch` for images with `in_channels` channels and `num_classes` classes."""
    return ResNet(to_spec(arch, num_classes, in_channels))


def arch_key(arch: str | dict | ResNetSpec) -> str:
    """A short stable identifier of an architecture (for cache keys and logs); equal nets, equal keys."""
    spec = to_spec(arch)
    return (
        f"b{'-'.join(map(str, spec.blocks))}_w{'-'.join(map(str, spec.widths))}"
        f"_{spec.activation}_k{spec.kernel_size}"
    )


def load_resized(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Load a checkpoint whose layers may be narrower than `model`'s (a pruned model), in place.

    Pruned models are stored as plain state dicts (safe to load with `weights_only=True`) plus
    the architecture; this rebuilds each Conv2d/BatchNorm2d/Linear with the stored shapes first.
    """
    for name, module in list(model.named_modules()):
        weight = state_dict.get(f"{name}.weight")
        if weight is None:
            continue
        if isinstance(module, nn.Conv2d):
            new: nn.Module = nn.Conv2d(
                weight.shape[1] * module.groups, weight.shape[0], module.kernel_size, module.stride,
                module.padding, module.dilation, module.groups, bias=module.bias is not None,
            )
        elif isinstance(module, nn.BatchNorm2d):
            new = nn.BatchNorm2d(weight.shape[0], eps=module.eps, momentum=module.momentum)
        elif isinstance(module, nn.Linear):
            new = nn.Linear(weight.shape[1], weight.shape[0], bias=module.bias is not None)
        else:
            continue
        model.set_submodule(name, new)
    model.load_state_dict(state_dict)
    return model


def load_arch(value: str | os.PathLike) -> str | dict:
    """`resnet18`, or the architecture JSON that `python3 -m common.cli.nas export` wrote, checked to build."""
    if str(value) == "resnet18":
        return "resnet18"
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"--arch {value!r}: no such file; give 'resnet18' or the JSON written by "
                         "`python3 -m common.cli.nas export <experiment-id> --out best_arch.json`")
    try:
        arch = json.loads(path.read_text())
        if not isinstance(arch, dict):
            raise TypeError(f"expected a JSON object, got {type(arch).__name__}")
        to_spec(arch)
    except (json.JSONDecodeError, TypeError, ValueError, KeyError) as err:
        raise ValueError(f"--arch {path}: not an architecture JSON from `python3 -m common.cli.nas export` "
                         f"({err})") from err
    return arch
