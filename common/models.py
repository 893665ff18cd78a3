"""The models every experiment compresses: CIFAR-style residual networks and a registry of models by name.

One `ResNet` class covers both the CIFAR ResNet-18 baseline and the candidates of the NAS macro
space (stages, blocks per stage, widths, activation, kernel size). `MODELS` holds one `ModelRecord` per
model a trial can name with `--model` (ResNet-18, the default, and torchvision's MobileNetV2 adapted to small
images); `--model package.module:factory` (or `path/to/file.py:factory`) names a user's own
`factory(num_classes, input_shape) -> nn.Module`. A record says how to build the model, how its layers group
into stages for the per-stage search (common/stagewise.py) and its key in cache entries and results.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from common import params

if TYPE_CHECKING:
    from common.train import TrainConfig

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


# ------------------------------------------------------------------------------------------ the registry

Arch = str | dict | ResNetSpec  # a model name or factory (`--model`), a NAS architecture dict, or a ResNet spec
_RESNET_STAGE = re.compile(r"^layer([1-9])\.")


@dataclass(frozen=True)
class ModelRecord:
    """What the suite needs to know about one model: how to build it for the data, how its layers group into the
    stages of the per-stage search, and its key in cache entries and results."""

    name: str  # what `--model` says
    build: Callable[[int, tuple[int, ...]], nn.Module]  # (num_classes, (channels, height, width)) -> module
    key: str  # in cache keys and as `arch_key` in results: equal keys, equal networks
    label: str  # in reports
    stage_of: Callable[[str], int | None] | None = None  # 0-based stage of a module name; None: stem/classifier
    stages: int = 0  # how many stages `stage_of` names (0: no per-stage search for this model)
    max_lr: float | None = None  # a cap on the profile's peak learning rate for the dense model (None: none)


def _resnet_stage(layer: str) -> int | None:
    """`layer3.1.conv2` → 2: the CIFAR ResNet's stage; None for the stem and the classifier."""
    match = _RESNET_STAGE.match(layer)
    return int(match.group(1)) - 1 if match else None


# torchvision's MobileNetV2 blocks (t, c, n, s) with the first stride-2 block at stride 1, and (below) a
# stride-1 stem: 32x32 images reach the classifier at 4x4 instead of 1x1, the usual CIFAR adaptation.
MOBILENET_V2_SMALL_INPUT = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                            (6, 160, 3, 2), (6, 320, 1, 1))


# BatchNorm's running statistics after a short run: at torchvision's momentum 0.1 they trail weights that still
# move fast, and 17 blocks compound the lag; after the smoke recipe's 24 steps the eval-mode model predicted one
# class (val 0.10) while the same weights with batch statistics scored 0.25-0.30. At 0.5 eval mode matches.
MOBILENET_V2_BN_MOMENTUM = 0.5


def mobilenet_v2(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision's MobileNetV2 for small images with `input_shape[0]` channels: stride-1 stem, 8x down-sampling;
    each residual block starts as the identity (its last BN's scale 0, as ResNet's), which trains faster."""
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2
    from torchvision.models.mobilenetv2 import InvertedResidual

    model = tv_mobilenet_v2(num_classes=num_classes, inverted_residual_setting=[list(b) for b in
                                                                                MOBILENET_V2_SMALL_INPUT])
    stem = model.features[0][0]
    model.features[0][0] = nn.Conv2d(input_shape[0], stem.out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.features[0][0].weight, mode="fan_out")  # torchvision's own conv init
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = MOBILENET_V2_BN_MOMENTUM
        elif isinstance(m, InvertedResidual) and m.use_res_connect:
            nn.init.zeros_(m.conv[-1].weight)  # conv[-1]: the BN after the projection
    return model


def _mobilenet_v2_stages() -> dict[int, int]:
    """`features.<i>` → stage: a new stage at each stride-2 block; the last 1x1 conv joins the last stage."""
    stage_of_block: dict[int, int] = {}
    index, stage = 1, 0
    for _, _, n, s in MOBILENET_V2_SMALL_INPUT:
        for j in range(n):
            stage += int(s == 2 and j == 0 and index > 1)
            stage_of_block[index] = stage
            index += 1
    stage_of_block[index] = stage  # features.<last>: the 1x1 conv to 1280 channels
    return stage_of_block


_MOBILENET_V2_STAGES = _mobilenet_v2_stages()


def _mobilenet_v2_stage(layer: str) -> int | None:
    match = re.match(r"^features\.(\d+)\.", layer)
    return _MOBILENET_V2_STAGES.get(int(match.group(1))) if match else None


DEFAULT_MODEL = "resnet18"
MODELS: dict[str, ModelRecord] = {r.name: r for r in (
    ModelRecord("resnet18", lambda n, shape: ResNet(ResNetSpec(num_classes=n, in_channels=shape[0])),
                key="b2-2-2-2_w64-128-256-512_relu_k3", label="ResNet-18", stage_of=_resnet_stage, stages=4),
    # max_lr: one SGD step moves the logits by ~lr * |features|^2, and MobileNetV2's classifier reads 1280
    # features (ResNet-18's 512): at the profiles' peak lr 0.2 the smoke loss rose from 2.3 to 12 in 8 steps.
    ModelRecord("mobilenet_v2", mobilenet_v2, key="mobilenet_v2", label="MobileNetV2",
                stage_of=_mobilenet_v2_stage, stages=4, max_lr=0.05),
)}


def _import_factory(spec: str) -> Callable[..., nn.Module]:
    """The callable `package.module:factory` or `path/to/file.py:factory` names; ValueError saying why not."""
    where, _, attr = spec.rpartition(":")
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser()
            loader = importlib.util.spec_from_file_location(f"user_model_{path.stem}", path)
            if loader is None or not path.is_file():
                raise FileNotFoundError(f"no such file {path}")
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(where)
    except Exception as err:  # noqa: BLE001 - any import failure is the user's model failing to import
        raise ValueError(f"--model {spec}: step import: cannot import {where} ({type(err).__name__}: {err})") from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"--model {spec}: step import: {where} has no callable {attr!r}")
    return factory


def _factory_record(spec: str) -> ModelRecord:
    factory = _import_factory(spec)
    try:
        source = inspect.getsourcefile(factory)
    except TypeError:  # a builtin or a C extension: no source file to fingerprint
        source = None
    # The key names the factory and its source file's bytes: an edited model trains again instead of loading.
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()[:8] if source and Path(source).is_file() else ""

    def build(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        try:
            model = factory(num_classes, tuple(input_shape))
        except Exception as err:  # noqa: BLE001 - the user's code: say which model and which step
            raise ValueError(f"--model {spec}: step build: factory({num_classes}, {tuple(input_shape)}) raised "
                             f"{type(err).__name__}: {err}") from err
        if not isinstance(model, nn.Module):
            raise ValueError(f"--model {spec}: step build: factory returned {type(model).__name__}, not a "
                             "torch.nn.Module")
        return model

    return ModelRecord(spec, build, key=f"{spec.rpartition(':')[2]}@{digest}" if digest else spec, label=spec)


def model_record(name: str) -> ModelRecord:
    """The record `--model name` means: a registered name or a user's factory; ValueError naming the model."""
    if name in MODELS:
        return MODELS[name]
    if ":" in name:
        return _factory_record(name)
    raise ValueError(f"--model {name!r}: unknown model; one of {', '.join(MODELS)}, or package.module:factory "
                     "(a callable(num_classes, input_shape) returning a torch.nn.Module)")


def dense_recipe(arch: Arch, cfg: TrainConfig) -> TrainConfig:
    """The profile's dense training recipe `cfg` for `arch`: its peak lr capped at the record's
    max_lr. Unchanged for ResNets and users' factories, so their cache keys stay."""
    cap = MODELS[arch].max_lr if isinstance(arch, str) and arch in MODELS else None
    return replace(cfg, lr=cap) if cap is not None and cfg.lr > cap else cfg


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """`--model`, which every trial's dense model comes from; an unknown name or a factory that does not import
    fails when the parameters are checked, before any data is loaded."""
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"one of {', '.join(MODELS)}, or package.module:factory / path/to/file.py:factory, a "
                             "callable(num_classes, input_shape) returning a torch.nn.Module")
    params.add_check(parser, lambda args: model_record(args.model))


def is_registered(name: str) -> bool:
    """A model of the registry (tested in the suite), not a user's factory (checked by `check_model` first)."""
    return name in MODELS


StageOf = Callable[[str], int | None]


def stage_function(arch: Arch) -> StageOf:
    """How `arch`'s module names group into the stages of the per-stage search (`--stage-sparsity`,
    `--stage-bits`); ValueError naming the model when its record names none (a user's factory)."""
    if is_resnet(arch):
        return _resnet_stage
    record = model_record(arch)
    if record.stage_of is None:
        raise ValueError(f"--model {arch}: step per-stage: its record names no stages, so --stage-sparsity and "
                         "--stage-bits do not apply (use --sparsity and --bits)")
    return record.stage_of


def is_resnet(arch: Arch) -> bool:
    """A member of the CIFAR ResNet family (ResNet-18, a NAS architecture): what NAS and `--arch` describe."""
    return not isinstance(arch, str) or arch == DEFAULT_MODEL


def to_spec(arch: Arch, num_classes: int = 10, in_channels: int = 3) -> ResNetSpec:
    """Resolve `resnet18`, an architecture dict (NAS export) or a spec into a ResNet spec."""
    if isinstance(arch, ResNetSpec):
        return arch
    if isinstance(arch, dict):
        return ResNetSpec.from_dict({"num_classes": num_classes, "in_channels": in_channels, **arch})
    if arch == DEFAULT_MODEL:
        return ResNetSpec(num_classes=num_classes, in_channels=in_channels)
    raise ValueError(f"unknown architecture {arch!r}; use {DEFAULT_MODEL!r} or an architecture dict")


def check_resolution(arch: Arch, image_size: int) -> None:
    """ValueError when `arch`'s stages would halve `image_size` px images below 2 px (its last stages would
    convolve 1x1 feature maps: padding, not image). Only the ResNet family's depth is known here."""
    if not is_resnet(arch):
        return
    stages = len(to_spec(arch).blocks)
    last = image_size
    for _ in range(stages - 1):
        last = (last + 1) // 2
    if last < 2:
        fits = next(n for n in range(1, stages + 1) if -(-image_size // 2 ** n) < 2)
        raise ValueError(f"architecture with {stages} stages on {image_size}x{image_size} images: the last stages "
                         f"would run at {last}x{last} px; use at most {fits} stages for this image size")


def build_model(arch: Arch, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """The network of `arch` for `image_size` px images with `in_channels` channels and `num_classes` classes."""
    if is_resnet(arch):
        return ResNet(to_spec(arch, num_classes, in_channels))
    return model_record(arch).build(num_classes, (in_channels, image_size, image_size))


def arch_key(arch: Arch) -> str:
    """A short stable identifier of an architecture (for cache keys and logs); equal nets, equal keys."""
    if not is_resnet(arch):
        return model_record(arch).key
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
            # A depthwise conv keeps one group per channel however many channels pruning left.
            depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
            groups = weight.shape[0] if depthwise else module.groups
            new: nn.Module = nn.Conv2d(
                weight.shape[1] * groups, weight.shape[0], module.kernel_size, module.stride,
                module.padding, module.dilation, groups, bias=module.bias is not None,
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
    if str(value) == DEFAULT_MODEL:
        return DEFAULT_MODEL
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"--arch {value!r}: no such file; give {DEFAULT_MODEL!r} or the JSON written by "
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


def check_model(arch: Arch, num_classes: int, input_shape: tuple[int, ...]) -> None:
    """What every later step needs of a model, tried on the untrained model in seconds: it builds, maps a batch of
    images to `num_classes` logits, traces with torch.fx (NNI's speed-up and the quantizers' activation points) and
    exports to ONNX (deployment). ValueError naming the model and the step that failed."""
    name = arch if isinstance(arch, str) else arch_key(arch)
    model = build_model(arch, num_classes, input_shape[0], input_shape[-1]).eval()
    x = torch.randn(2, *input_shape)
    step = "forward"
    try:
        with torch.no_grad():
            out = model(x)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"expected logits of shape (2, {num_classes}) for input {tuple(x.shape)}, got {got}")
        step = "trace (torch.fx, for NNI's pruning speed-up and quantization)"
        torch.fx.symbolic_trace(model)
        step = "export (ONNX, for int8 deployment)"
        from common.deploy import export_onnx  # the deployment's own exporter (imports onnx: only here)

        with tempfile.TemporaryDirectory(prefix="check-model-") as tmp:
            export_onnx(model, Path(tmp) / "model.onnx", x)
    except Exception as err:  # noqa: BLE001 - the user's model: one line naming it and the step
        first = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"--model {name}: step {step}: {type(err).__name__}: {first}") from err
