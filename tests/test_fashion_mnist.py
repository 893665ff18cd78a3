"""`--dataset fashion-mnist`: found in torchvision's layout, in Debian's dataset-fashion-mnist package or downloaded,
split like CIFAR-10, one 28x28 channel all the way through the models (build, prune, FLOPs, ONNX export)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from common import data, stages, trial
from common.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, DatasetNotFoundError, load_splits
from common.metrics import size_measurement
from common.models import ResNetSpec, build_model, to_spec
from common.record import LATENCY_BATCHES

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TINY = {"blocks": [1, 1], "widths": [8, 16], "activation": "relu", "kernel_size": 3}


@pytest.fixture
def system_dir(fake_fashion_mnist, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake data set where Debian's package would put it."""
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", fake_fashion_mnist.gz_dir)
    return fake_fashion_mnist.gz_dir


@pytest.fixture
def no_system_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "not-installed")


def _rows(images: torch.Tensor) -> list[bytes]:
    return [img.numpy().tobytes() for img in images]


def test_debian_package_is_decompressed_into_torchvisions_layout_once(fake_fashion_mnist, system_dir, tmp_path,
                                                                       monkeypatch):
    fake, root = fake_fashion_mnist, tmp_path / "data"
    s = load_splits("fashion-mnist", root, download=False, val_fraction=0.1, seed=3)

    assert s.train_images.dtype == torch.uint8 and s.train_images.shape[1:] == (1, 28, 28)
    assert (s.mean, s.std) == (FASHION_MNIST_MEAN, FASHION_MNIST_STD) and len(s.mean) == 1
    assert s.classes[0] == "T-shirt/top" and s.num_classes == 10
    # The test split is the t10k files, whole and in file order.
    assert torch.equal(s.test_images[:, 0], torch.from_numpy(fake.test_images))
    assert torch.equal(s.test_labels, torch.from_numpy(fake.test_labels))
    # Validation is held out from the 100 training images: 10 %, one per class, disjoint from train, labels kept.
    assert len(s.val_labels) == 10 and sorted(s.val_labels.tolist()) == list(range(10)) and len(s.train_labels) == 90
    lookup = {img.tobytes(): i for i, img in enumerate(fake.train_images)}
    train_idx = [lookup[r] for r in _rows(s.train_images[:, 0])]
    val_idx = [lookup[r] for r in _rows(s.val_images[:, 0])]
    assert sorted(train_idx + val_idx) == list(range(100))
    assert s.train_labels.tolist() == fake.train_labels[train_idx].tolist()
    # Orientation: image 0 stores pixel[y, x] = (y * 28 + x) % 251.
    pool = torch.cat([s.train_images, s.val_images])
    marker = pool[(train_idx + val_idx).index(0), 0]
    assert marker[2, 5].item() == 61 and marker[5, 2].item() == 142

    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(FILES)  # no temporary files left behind
    # Once decompressed, the package is no longer needed; the same seed gives the same split.
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "uninstalled")
    again = load_splits("fashion-mnist", root, download=False, val_fraction=0.1, seed=3)
    assert again.fingerprint == s.fingerprint
    other_seed = load_splits("fashion-mnist", root, download=False, val_fraction=0.1, seed=4)
    assert not torch.equal(other_seed.val_images, s.val_images)


def test_limits_cap_train_val_test_without_moving_images(system_dir, tmp_path):
    full = load_splits("fashion-mnist", tmp_path, download=False, seed=0)
    capped = load_splits("fashion-mnist", tmp_path, download=False, seed=0, train_limit=20, eval_limit=10)
    assert (len(capped.train_labels), len(capped.val_labels), len(capped.test_labels)) == (20, 10, 10)
    assert set(_rows(capped.train_images)) <= set(_rows(full.train_images))
    assert set(_rows(capped.val_images)) == set(_rows(full.val_images))  # 10 of 10: val is unchanged
    assert sorted(capped.train_labels.tolist()) == sorted(list(range(10)) * 2)  # stratified


def test_gz_files_put_into_raw_by_hand_are_used(fake_fashion_mnist, no_system_dir, tmp_path):
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    shutil.copytree(fake_fashion_mnist.gz_dir, raw)
    s = load_splits("fashion-mnist", tmp_path / "data", download=False)
    assert len(s.test_labels) == 30 and (raw / FILES[0]).is_file()


@pytest.mark.parametrize("download", [True, False])
def test_absent_data_set_names_both_remedies_in_one_line(no_system_dir, offline, tmp_path, download):
    # `offline`: torchvision's download fails as it does without internet.
    with pytest.raises(DatasetNotFoundError) as err:
        load_splits("fashion-mnist", tmp_path / "data", download=download)
    message = str(err.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message and "internet" in message
    assert str(tmp_path / "data" / "FashionMNIST" / "raw") in message and "missing train-images-idx3-ubyte" in message
    assert ("downloading it failed" in message) is download


def test_unreadable_files_are_reported(fake_fashion_mnist, system_dir, tmp_path):
    root = tmp_path / "data"
    load_splits("fashion-mnist", root, download=False)
    (root / "FashionMNIST" / "raw" / FILES[0]).write_bytes(b"\x00\x00\x08\x03truncated")
    with pytest.raises(DatasetNotFoundError, match="could not be read .*delete it and retry"):
        load_splits("fashion-mnist", root, download=False)

    (system_dir / f"{FILES[2]}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetNotFoundError, match=f"could not decompress .*{FILES[2]}.gz"):
        load_splits("fashion-mnist", tmp_path / "elsewhere", download=False)


def test_image_size_resizes_on_request(system_dir, tmp_path):
    s = load_splits("fashion-mnist", tmp_path, download=False, image_size=32)
    assert s.train_images.shape[1:] == (1, 32, 32) and s.test_images.shape[1:] == (1, 32, 32)


def test_models_take_their_input_channels_from_the_data():
    model = build_model("resnet18", 10, in_channels=1)
    assert model.conv1.in_channels == 1 and model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # 1 channel instead of 3 removes 2 x 64 x 3 x 3 stem weights; nothing else changes.
    assert sum(p.numel() for p in build_model("resnet18").parameters()) - sum(
        p.numel() for p in model.parameters()) == 2 * 64 * 9
    assert to_spec(TINY, in_channels=1).in_channels == 1 and to_spec({**TINY, "in_channels": 2}).in_channels == 2
    assert ResNetSpec.from_dict(ResNetSpec(in_channels=1).to_dict()).in_channels == 1
    with pytest.raises(ValueError, match="in_channels"):
        ResNetSpec(in_channels=0)


def test_session_builds_prunes_measures_and_exports_one_channel_models(fake_fashion_mnist, system_dir, tmp_path):
    from common.deploy import OrtModule, export_fp32

    flags = ["--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "d"), "--cache-dir", str(tmp_path / "cache")]
    args = trial.parse_params(trial.base_parser("t"), [*flags, "--finetune-epochs", "1"])
    ctx = trial.stage_context(trial.start_session(args))
    # The default (smoke) profile trains at 16x16 whatever the data set; the cpu profile keeps Fashion-MNIST's 28x28.
    assert ctx.image_shape == (1, 16, 16) and tuple(ctx.example_input.shape) == (1, 1, 16, 16)
    assert args.dataset == "fashion-mnist"  # echoed as used
    dense, _ = stages.dense_stage(ctx, TINY)
    pruned, info = stages.pruned_stage(ctx, TINY, "fpgm", 0.5)
    assert dense.conv1.in_channels == pruned.conv1.in_channels == 1
    assert pruned.conv1.out_channels < dense.conv1.out_channels
    assert 0 < size_measurement(pruned, ctx.image_shape).flops < size_measurement(dense, ctx.image_shape).flops
    assert set(trial.eager_latency(ctx, {"pruned": pruned})[0]["pruned"].ms) == set(LATENCY_BATCHES)
    ort = OrtModule(export_fp32(pruned, tmp_path / "pruned.onnx", ctx.example_input))
    x = ctx.example_input.repeat(3, 1, 1, 1)
    torch.testing.assert_close(ort(x), pruned(x), atol=1e-4, rtol=1e-4)


def test_profile_image_size_and_crop_reach_the_data_and_the_cache_key(system_dir, tmp_path):
    flags = ["--data-dir", str(tmp_path / "d"), "--cache-dir", str(tmp_path / "cache")]
    ci = trial.start_session(trial.parse_params(trial.base_parser("t"), ["--profile", "ci", *flags]))
    assert ci.profile.dataset == "fashion-mnist" and ci.splits.train_images.shape[1:] == (1, 16, 16)
    assert ci.loaders["train"].pad == 0 and stages.dense_key(trial.stage_context(ci), "resnet18")["crop_pad"] == 0
    smoke = trial.start_session(trial.parse_params(trial.base_parser("t"), ["--profile", "smoke", *flags]))
    smoke_key = stages.dense_key(trial.stage_context(smoke), "resnet18")
    assert smoke.loaders["train"].pad == 4 and "crop_pad" not in smoke_key  # the default: older entries hold


def test_an_out_of_range_label_is_named_with_its_file_at_load(fake_fashion_mnist, no_system_dir, tmp_path):
    from tests.conftest import write_idx

    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    shutil.copytree(fake_fashion_mnist.gz_dir, raw)
    labels = fake_fashion_mnist.train_labels.astype(np.uint8)
    labels[3] = 200
    write_idx(raw / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DatasetNotFoundError, match=r"labels-idx1-ubyte: 1 label\(s\) outside 0..9 \(first: 200\)"):
        load_splits("fashion-mnist", tmp_path / "data", download=False)


def test_a_data_dir_that_is_a_file_says_so(no_system_dir, offline, tmp_path):
    not_a_folder = tmp_path / "data.txt"
    not_a_folder.write_text("")
    with pytest.raises(DatasetNotFoundError, match="is a file, not a folder"):
        load_splits("fashion-mnist", not_a_folder, download=False)
