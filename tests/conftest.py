"""Shared fixtures: offline stand-ins for the datasets, so tests never need the real CIFAR-10 or a network."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# One intra-op thread in this process, its xdist workers and every trial they start (the variable reaches torch,
# ONNX Runtime's and OpenVINO's OpenMP pools and nnictl's trials): pyproject.toml runs the suite on 2 workers, and
# two processes of two spinning OpenMP threads each on 2 cores thrash (a training step 6x slower, measured).
os.environ.setdefault("OMP_NUM_THREADS", "1")

CIFAR10_LABEL_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


@dataclass(frozen=True)
class FakeCifar:
    """What ``fake_cifar_dir`` wrote: pass ``root`` as ``data_dir``; arrays are in file order."""

    root: Path
    train_data: np.ndarray  # (N, 3072) uint8, each row channel-major CHW exactly as in the pickles
    train_labels: np.ndarray  # (N,) int64
    test_data: np.ndarray
    test_labels: np.ndarray
    label_names: list[str]

    @property
    def folder(self) -> Path:
        return self.root / "cifar-10-batches-py"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every torchvision download fail as it would without internet, even on a networked machine."""
    from torchvision.datasets import utils

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled by the offline fixture")

    monkeypatch.setattr(utils, "_urlretrieve", refuse)
    monkeypatch.setattr(utils, "_get_redirect_url", refuse)
    monkeypatch.setattr(utils, "_is_remote_location_available", lambda: False)


@pytest.fixture
def fake_cifar_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None) -> FakeCifar:
    """A tiny dataset in the real CIFAR-10 python format that torchvision's CIFAR10 loads and verifies.

    5 train batches x 20 images (10 per class overall) and a 30-image test batch (3 per class), random
    pixels from a fixed seed. Train image 0 holds the pattern ``pixel[c, y, x] = (c*1024 + y*32 + x) % 251``
    so orientation bugs are visible. The class md5 tables are patched to these files' md5s, so
    torchvision's real integrity check runs (and catches later corruption).
    """
    from torchvision.datasets import CIFAR10

    rng = np.random.default_rng(1234)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    def write(name: str, payload: dict) -> list[str]:
        path = folder / name
        # Protocol 2 and str keys: what the original Python 2 pickles decode to under encoding="latin1".
        path.write_bytes(pickle.dumps(payload, protocol=2))
        return [name, hashlib.md5(path.read_bytes()).hexdigest()]

    def batch(n: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.repeat(np.arange(10), per_class))[:n]
        return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), labels.astype(np.int64)

    train_parts, train_list = [], []
    for i in range(1, 6):
        data, labels = batch(20, 2)
        if i == 1:
            data[0] = np.arange(3072) % 251
        train_parts.append((data, labels))
        train_list.append(
            write(
                f"data_batch_{i}",
                {
                    "batch_label": f"training batch {i} of 5",
                    "labels": labels.tolist(),
                    "data": data,
                    "filenames": [f"img_{i}_{j}.png" for j in range(len(labels))],
                },
            )
        )
    test_data, test_labels = batch(30, 3)
    test_list = [
        write(
            "test_batch",
            {
                "batch_label": "testing batch 1 of 1",
                "labels": test_labels.tolist(),
                "data": test_data,
                "filenames": [f"test_{j}.png" for j in range(len(test_labels))],
            },
        )
    ]
    _, meta_md5 = write(
        "batches.meta", {"label_names": CIFAR10_LABEL_NAMES, "num_cases_per_batch": 20, "num_vis": 3072}
    )

    monkeypatch.setattr(CIFAR10, "train_list", train_list)
    monkeypatch.setattr(CIFAR10, "test_list", test_list)
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": meta_md5})
    return FakeCifar(
        root=tmp_path,
        train_data=np.concatenate([d for d, _ in train_parts]),
        train_labels=np.concatenate([lab for _, lab in train_parts]),
        test_data=test_data,
        test_labels=test_labels,
        label_names=list(CIFAR10_LABEL_NAMES),
    )


@dataclass(frozen=True)
class FakeImageFolder:
    root: Path
    classes: tuple[str, ...]  # sorted, as ImageFolder indexes them
    colours: dict[str, tuple[int, int, int]]  # every image of a class is this solid RGB colour
    train_per_class: int
    val_counts: dict[str, int]  # val/ deliberately lacks the first class


@pytest.fixture
def fake_imagefolder_dir(tmp_path: Path) -> FakeImageFolder:
    """``train/<class>/*.png`` and ``val/<class>/*.png`` with solid-colour images of assorted sizes/modes.

    Solid colours survive any resize exactly, so loaded pixels can be checked. ``val/`` omits the first
    class, which exercises label re-indexing; one image per class is greyscale ("L") to exercise the RGB
    conversion.
    """
    from PIL import Image

    colours = {"cat": (200, 30, 30), "dog": (30, 200, 30), "frog": (30, 30, 200)}
    sizes = [(20, 30), (40, 40), (33, 17), (64, 48)]
    val_counts = {"dog": 2, "frog": 3}

    def write(split: str, name: str, count: int) -> None:
        directory = tmp_path / split / name
        directory.mkdir(parents=True)
        for j in range(count):
            colour = colours[name]
            size = sizes[j % len(sizes)]
            # Image 1 is greyscale (the class's dominant channel value): loads as (v, v, v).
            image = Image.new("L", size, max(colour)) if j == 1 else Image.new("RGB", size, colour)
            image.save(directory / f"{j}.png")

    for name in colours:
        write("train", name, 4)
    for name, count in val_counts.items():
        write("val", name, count)
    return FakeImageFolder(tmp_path, tuple(sorted(colours)), colours, 4, val_counts)


@pytest.fixture
def tuner(monkeypatch: pytest.MonkeyPatch):
    """Pretend to run inside an NNI trial whose tuner sends `params` (call the fixture with them)."""

    def send(params: dict) -> None:
        import nni

        from common import trial

        monkeypatch.setattr(trial, "in_nni_trial", lambda: True)
        monkeypatch.setattr(nni, "get_next_parameter", lambda: params)

    return send


@dataclass(frozen=True)
class FakeFashionMnist:
    """What ``fake_fashion_mnist`` wrote: the four gzipped IDX files in ``gz_dir`` (like Debian's package)."""

    gz_dir: Path
    train_images: np.ndarray  # (N, 28, 28) uint8, file order
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray
    test_labels: np.ndarray


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (LeCun's MNIST format), gzipped: magic 0x0000 0x08 (uint8) ndim, big-endian int32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture
def fake_fashion_mnist(tmp_path: Path, offline: None) -> FakeFashionMnist:
    """A tiny Fashion-MNIST in the original gzipped IDX format: 100 train (10 per class), 30 test (3 per class).

    Train image 0 holds ``pixel[y, x] = (y * 28 + x) % 251`` so orientation bugs are visible. Nothing points the
    loader at it: tests patch ``common.data.FASHION_MNIST_SYSTEM_DIR`` or copy the files where they need them.
    """
    rng = np.random.default_rng(4321)
    gz_dir = tmp_path / "fashion-mnist-gz"
    gz_dir.mkdir()

    def split(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.int64)
        return rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8), labels

    train_x, train_y = split(10)
    train_x[0] = (np.arange(28 * 28) % 251).reshape(28, 28)
    test_x, test_y = split(3)
    for prefix, x, y in (("train", train_x, train_y), ("t10k", test_x, test_y)):
        write_idx(gz_dir / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(gz_dir / f"{prefix}-labels-idx1-ubyte.gz", y.astype(np.uint8))
    return FakeFashionMnist(gz_dir, train_x, train_y, test_x, test_y)


# The small CIFAR-style ResNet both real-image int8 test modules quantize (blocks [1, 1], widths [16, 32]).
SMALL_RESNET = {"blocks": [1, 1], "widths": [16, 32]}


@dataclass(frozen=True)
class SmallFashionResnet:
    """`small_fashion_resnet`'s model, trained once per pytest run, and the data folder it was trained from."""

    state: dict
    num_classes: int
    in_channels: int
    data_dir: Path

    def model(self):
        """A fresh copy in eval mode: a test may quantize or fine-tune it without touching the others'."""
        from common.models import build_model

        model = build_model(SMALL_RESNET, self.num_classes, in_channels=self.in_channels)
        model.load_state_dict(self.state)
        return model.eval()


@pytest.fixture(scope="session")
def small_fashion_resnet(tmp_path_factory: pytest.TempPathFactory) -> SmallFashionResnet:
    """A small ResNet trained briefly on 3,000 real Fashion-MNIST images (seed 0; ~0.55 validation accuracy):
    real, confident predictions, unlike the synthetic smoke data. The validation split depends on the seed only,
    so every test may load its own number of held-out images from `data_dir`."""
    import torch

    from common.data import load_splits, make_loaders
    from common.models import build_model
    from common.train import TrainConfig, fit

    data_dir = tmp_path_factory.mktemp("fmnist") / "data"
    splits = load_splits("fashion-mnist", data_dir, train_limit=3000, eval_limit=256)
    torch.manual_seed(0)
    in_channels = splits.train_images.shape[1]
    model = build_model(SMALL_RESNET, splits.num_classes, in_channels=in_channels)
    fit(model, make_loaders(splits, 64)["train"], TrainConfig(epochs=4, lr=0.05, print_freq=1000),
        print_fn=lambda s: None)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return SmallFashionResnet(state, splits.num_classes, in_channels, data_dir)
