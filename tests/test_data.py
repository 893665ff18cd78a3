"""Tests for common/data.py: dataset loading/splitting, the on-device TensorLoader and its augmentations."""

from __future__ import annotations

import hashlib
import shutil
import tarfile

import pytest
import torch
import torch.nn.functional as F

from common.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DatasetNotFoundError,
    ImageSplits,
    TensorLoader,
    batch_crop,
    batch_flip_lr,
    load_splits,
    make_loaders,
)


def _source_index(fake, images: torch.Tensor) -> list[int]:
    """Map each loaded NCHW image back to its row in the fake train files (pixels are unique)."""
    lookup = {row.tobytes(): i for i, row in enumerate(fake.train_data)}
    return [lookup[img.reshape(-1).numpy().tobytes()] for img in images]


# ---------------------------------------------------------------------------------------------- cifar10


def test_cifar10_roundtrips_pixels_labels_and_classes(fake_cifar_dir):
    fake = fake_cifar_dir
    splits = load_splits("cifar10", fake.root, download=False, val_fraction=0.2)

    assert splits.train_images.dtype == torch.uint8 and splits.train_images.shape[1:] == (3, 32, 32)
    assert splits.train_labels.dtype == torch.int64
    assert splits.classes == tuple(fake.label_names) and splits.num_classes == 10
    assert (splits.mean, splits.std) == (CIFAR10_MEAN, CIFAR10_STD)

    # The un-limited test split is the test batch, unchanged and in file order.
    assert torch.equal(splits.test_images, torch.from_numpy(fake.test_data).view(-1, 3, 32, 32))
    assert torch.equal(splits.test_labels, torch.from_numpy(fake.test_labels))

    # Every train/val image is a written image with its written label.
    for images, labels in ((splits.train_images, splits.train_labels), (splits.val_images, splits.val_labels)):
        idx = _source_index(fake, images)
        assert labels.tolist() == fake.train_labels[idx].tolist()

    # Train image 0 stores pixel[c, y, x] = (c*1024 + y*32 + x) % 251: check orientation by hand.
    pool = torch.cat([splits.train_images, splits.val_images])
    marker = pool[_source_index(fake, pool).index(0)]
    assert marker[1, 2, 5].item() == 89  # (1024 + 64 + 5) % 251
    assert marker[1, 5, 2].item() == 182  # (1024 + 160 + 2) % 251: rows and columns not swapped
    assert marker[2, 31, 0].item() == 28  # (2048 + 992) % 251
    assert marker[0, 0, 31].item() == 31


def test_cifar10_val_is_a_stratified_partition_of_train(fake_cifar_dir):
    splits = load_splits("cifar10", fake_cifar_dir.root, download=False, val_fraction=0.2)
    train_idx = _source_index(fake_cifar_dir, splits.train_images)
    val_idx = _source_index(fake_cifar_dir, splits.val_images)

    assert len(val_idx) == 20 and len(train_idx) == 80
    assert set(train_idx).isdisjoint(val_idx)
    assert sorted(train_idx + val_idx) == list(range(100))
    assert splits.val_labels.bincount(minlength=10).tolist() == [2] * 10  # 10 per class in the fixture


def test_cifar10_split_is_deterministic_by_seed(fake_cifar_dir):
    def val_members(seed: int) -> list[int]:
        splits = load_splits("cifar10", fake_cifar_dir.root, download=False, val_fraction=0.2, seed=seed)
        return sorted(_source_index(fake_cifar_dir, splits.val_images))

    assert val_members(0) == val_members(0)
    assert val_members(0) != val_members(1)


def test_cifar10_limits_are_class_balanced_and_do_not_move_images(fake_cifar_dir):
    root = fake_cifar_dir.root
    full = load_splits("cifar10", root, download=False, val_fraction=0.2, seed=3)
    small = load_splits("cifar10", root, download=False, val_fraction=0.2, seed=3, train_limit=30, eval_limit=10)

    assert small.train_labels.bincount(minlength=10).tolist() == [3] * 10
    assert small.val_labels.bincount(minlength=10).tolist() == [1] * 10
    assert small.test_labels.bincount(minlength=10).tolist() == [1] * 10
    # Limits pick subsets of the un-limited splits; they never re-draw the val split.
    for part in ("train", "val"):
        assert set(_source_index(fake_cifar_dir, getattr(small, f"{part}_images"))) <= set(
            _source_index(fake_cifar_dir, getattr(full, f"{part}_images"))
        )
    # A limit above the split size is a no-op.
    big = load_splits("cifar10", root, download=False, val_fraction=0.2, seed=3, train_limit=10_000)
    assert torch.equal(big.train_images, full.train_images)


def test_cifar10_missing_dir_says_what_to_do(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        load_splits("cifar10", missing, download=False)
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message
    assert str(missing.resolve()) in message
    assert "--dataset synthetic" in message
    assert isinstance(info.value, FileNotFoundError)


def test_cifar10_failed_download_is_reported_not_raised_raw(tmp_path, offline):
    with pytest.raises(DatasetNotFoundError, match="downloading it failed") as info:
        load_splits("cifar10", tmp_path, download=True)
    assert "cifar-10-python.tar.gz" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)  # URLError, chained for debugging


@pytest.mark.parametrize("download", [False, True])
def test_cifar10_corrupt_file_is_named(fake_cifar_dir, download):
    path = fake_cifar_dir.folder / "data_batch_3"
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF  # inside the pixel array: still unpicklable-looking-fine, but the md5 changes
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetNotFoundError, match="md5") as info:
        load_splits("cifar10", fake_cifar_dir.root, download=download)
    assert "data_batch_3" in str(info.value)
    assert "data_batch_1" not in str(info.value)


def test_cifar10_hand_placed_archive_is_extracted_without_download(fake_cifar_dir, tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    target = tmp_path / "placed"
    target.mkdir()
    archive = target / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fake_cifar_dir.folder, arcname="cifar-10-batches-py")
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    shutil.rmtree(fake_cifar_dir.folder)  # only the archive exists now; the network is blocked

    splits = load_splits("cifar10", target, download=False)
    assert torch.equal(splits.test_labels, torch.from_numpy(fake_cifar_dir.test_labels))
    assert (target / "cifar-10-batches-py" / "data_batch_5").is_file()


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"dataset": "mnist"}, "mnist"),
        ({"val_fraction": 1.0}, "1.0"),
        ({"val_fraction": -0.1}, "-0.1"),
        ({"train_limit": 0}, "train_limit"),
        ({"eval_limit": -5}, "-5"),
    ],
)
def test_load_splits_rejects_bad_arguments(tmp_path, kwargs, bad):
    args = {"dataset": "synthetic", **kwargs}
    with pytest.raises(ValueError, match=bad) as info:
        load_splits(args.pop("dataset"), tmp_path, **args)
    if "dataset" in kwargs:
        assert all(name in str(info.value) for name in ("cifar10", "synthetic", "imagefolder"))


# -------------------------------------------------------------------------------------------- synthetic


def test_synthetic_default_sizes_types_and_stats(tmp_path):
    s = load_splits("synthetic", tmp_path)
    assert (len(s.train_images), len(s.val_images), len(s.test_images)) == (1800, 200, 500)
    assert s.train_images.shape[1:] == (3, 32, 32) and s.train_images.dtype == torch.uint8
    assert s.test_labels.dtype == torch.int64 and s.num_classes == 10
    assert s.classes == tuple(f"class{i}" for i in range(10))
    assert s.train_labels.bincount().tolist() == [180] * 10
    assert s.val_labels.bincount().tolist() == [20] * 10
    assert not any((tmp_path / name).exists() for name in ("train", "cifar-10-batches-py"))  # nothing written
    expected_mean = (s.train_images.double() / 255).mean(dim=(0, 2, 3))
    expected_std = (s.train_images.double() / 255).std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(torch.tensor(s.mean, dtype=torch.float64), expected_mean, atol=1e-9)
    assert torch.allclose(torch.tensor(s.std, dtype=torch.float64), expected_std, atol=1e-9)


def test_synthetic_limits_set_sizes(tmp_path):
    s = load_splits("synthetic", tmp_path, train_limit=50, eval_limit=20)
    assert (len(s.train_images), len(s.val_images), len(s.test_images)) == (50, 20, 20)
    no_val = load_splits("synthetic", tmp_path, train_limit=50, eval_limit=20, val_fraction=0.0)
    assert len(no_val.val_images) == 0 and len(no_val.train_images) == 50


def test_synthetic_is_deterministic_by_seed_with_an_independent_test_stream(tmp_path):
    a = load_splits("synthetic", tmp_path, train_limit=100, eval_limit=50, seed=7)
    b = load_splits("synthetic", tmp_path, train_limit=100, eval_limit=50, seed=7)
    c = load_splits("synthetic", tmp_path, train_limit=100, eval_limit=50, seed=8)
    for name in ("train_images", "train_labels", "val_images", "test_images", "test_labels"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.train_images, c.train_images)
    assert not torch.equal(a.test_images, c.test_images)
    # The test split comes from its own stream: resizing the train pool leaves it untouched.
    d = load_splits("synthetic", tmp_path, train_limit=300, eval_limit=50, seed=7)
    assert torch.equal(a.test_images, d.test_images)


def test_synthetic_is_learnable(tmp_path):
    torch.manual_seed(0)
    s = load_splits("synthetic", tmp_path, train_limit=500, eval_limit=500, seed=0)
    mean = torch.tensor(s.mean).view(1, 3, 1, 1)
    std = torch.tensor(s.std).view(1, 3, 1, 1)

    def features(images: torch.Tensor) -> torch.Tensor:
        return ((images.float() / 255 - mean) / std).flatten(1)

    x, y = features(s.train_images), s.train_labels
    model = torch.nn.Linear(x.shape[1], s.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(40):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model(features(s.test_images)).argmax(1) == s.test_labels).float().mean().item()
    assert accuracy > 0.5, accuracy  # chance is 0.1; measured ~0.99 over seeds 0-5


# ------------------------------------------------------------------------------------------ imagefolder


def test_imagefolder_loads_resized_images_with_train_class_ids(fake_imagefolder_dir):
    fake = fake_imagefolder_dir
    s = load_splits("imagefolder", fake.root, val_fraction=0.25)

    assert s.classes == fake.classes and s.num_classes == 3
    assert (len(s.train_images), len(s.val_images)) == (9, 3)
    assert s.val_labels.bincount(minlength=3).tolist() == [1, 1, 1]
    assert s.train_images.shape[1:] == (3, 32, 32) and s.test_images.shape[1:] == (3, 32, 32)
    # val/ has no "cat": its "dog"/"frog" must keep train's ids 1/2, not ImageFolder's 0/1.
    assert s.test_labels.tolist() == [1] * fake.val_counts["dog"] + [2] * fake.val_counts["frog"]

    grey = 0
    for images, labels in (
        (s.train_images, s.train_labels),
        (s.val_images, s.val_labels),
        (s.test_images, s.test_labels),
    ):
        for image, label in zip(images, labels, strict=True):
            colour = fake.colours[fake.classes[label]]
            pixel = tuple(image[:, 0, 0].tolist())
            assert (image == image[:, :1, :1]).all(), "a solid image stays solid after resizing"
            assert pixel in (colour, (max(colour),) * 3)
            grey += pixel != colour
    assert grey == 3 + 2  # one "L"-mode image per class folder, converted to RGB

    stats = (s.train_images.double() / 255).mean(dim=(0, 2, 3))
    assert torch.allclose(torch.tensor(s.mean, dtype=torch.float64), stats)


def test_imagefolder_image_size(fake_imagefolder_dir):
    s = load_splits("imagefolder", fake_imagefolder_dir.root, image_size=16, val_fraction=0.0)
    assert s.train_images.shape == (12, 3, 16, 16) and len(s.val_images) == 0


def test_imagefolder_names_every_unreadable_image(fake_imagefolder_dir, capsys):
    root = fake_imagefolder_dir.root
    bad = [root / "train" / "cat" / "1.png", root / "val" / "frog" / "2.png"]
    bad[0].write_bytes(b"not a png")
    bad[1].write_bytes(bad[1].read_bytes()[:30])  # truncated
    with pytest.raises(DatasetNotFoundError, match="2 unreadable image") as info:
        load_splits("imagefolder", root, val_fraction=0.0)
    assert all(str(p) in str(info.value) for p in bad) and "--skip-bad-images" in str(info.value)
    s = load_splits("imagefolder", root, val_fraction=0.0, skip_bad_images=True)
    assert len(s.train_labels) == 11 and len(s.test_labels) == 4  # 12 - 1 and 5 - 1
    assert s.train_labels.tolist().count(s.classes.index("cat")) == 3
    assert "skipped 2 unreadable image(s)" in capsys.readouterr().out


def test_imagefolder_missing_val_names_layout(fake_imagefolder_dir):
    shutil.rmtree(fake_imagefolder_dir.root / "val")
    with pytest.raises(DatasetNotFoundError, match="val") as info:
        load_splits("imagefolder", fake_imagefolder_dir.root)
    assert "train/<class>/<image>" in str(info.value)


# ----------------------------------------------------------------------------------------- augmentation


def _candidates(image: torch.Tensor, pad: int, mode: str) -> list[torch.Tensor]:
    """Every translation of one CHW image by up to ``pad`` px, via F.pad as the reference."""
    h, w = image.shape[-2:]
    padded = F.pad(image[None].float(), (pad,) * 4, mode="reflect" if mode == "reflect" else "constant")[0]
    return [padded[:, dy : dy + h, dx : dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_batch_crop_only_translates(mode):
    gen = torch.Generator().manual_seed(0)
    # Values >= 1 so zero padding is distinguishable from image content.
    images = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=gen)
    out = batch_crop(images, 2, torch.Generator().manual_seed(1), mode=mode)
    assert out.shape == images.shape and out.dtype == torch.uint8

    shifts = set()
    for img, res in zip(images, out, strict=True):
        matches = [k for k, cand in enumerate(_candidates(img, 2, mode)) if torch.equal(cand, res.float())]
        assert matches, "output is not a translation of its input"
        shifts.add(matches[0])
    assert len(shifts) > 10  # 25 possible shifts: the batch really is randomised per image

    assert torch.equal(batch_crop(images, 2, torch.Generator().manual_seed(1), mode=mode), out)
    assert torch.equal(batch_crop(images, 0), images)


def test_batch_crop_rejects_reflect_pad_beyond_image():
    with pytest.raises(ValueError, match="pad"):
        batch_crop(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), 4)


def test_batch_flip_lr_mirrors_exactly_about_half():
    images = torch.randint(0, 256, (200, 3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = batch_flip_lr(images, torch.Generator().manual_seed(2))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 60 < sum(flipped) < 140
    assert torch.equal(batch_flip_lr(images, torch.Generator().manual_seed(2)), out)


# ----------------------------------------------------------------------------------------- TensorLoader


def _data(n: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    return images, torch.arange(n)  # labels double as sample ids


def _stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    x = images.double() / 255
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3), correction=0).tolist()


def test_eval_loader_is_fixed_order_and_exactly_normalised():
    images, ids = _data(10)
    mean, std = _stats(images)
    loader = TensorLoader(images, ids, 4, train=False, mean=mean, std=std)
    batches = list(loader)

    assert len(loader) == 3 and loader.num_samples == 10
    assert [len(y) for _, y in batches] == [4, 4, 2]  # partial last batch kept
    assert torch.cat([y for _, y in batches]).tolist() == list(range(10))
    x = torch.cat([x for x, _ in batches])
    assert x.dtype == torch.float32 and batches[0][1].dtype == torch.int64
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-5)
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (x.std(dim=(0, 2, 3), correction=0) - 1).abs().max() < 1e-4
    assert torch.equal(torch.cat([x for x, _ in loader]), x)  # second pass identical


def test_train_loader_batches_and_drop_last():
    images, ids = _data(10)
    loader = TensorLoader(images, ids, 4, train=True, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    batches = list(loader)
    assert len(loader) == 2 and [len(y) for _, y in batches] == [4, 4]
    assert len(set(torch.cat([y for _, y in batches]).tolist())) == 8  # no sample twice in an epoch
    assert batches[0][0].shape == (4, 3, 8, 8) and batches[0][0].dtype == torch.float32

    small = TensorLoader(images[:3], ids[:3], 4, train=True, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    (x, y), *rest = list(small)
    assert len(small) == 1 and not rest and sorted(y.tolist()) == [0, 1, 2]  # whole set as one batch


def _epoch(loader: TensorLoader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_train_loader_reshuffles_each_epoch_deterministically():
    images, ids = _data(64)
    make = lambda seed: TensorLoader(images, ids, 16, train=True, mean=CIFAR10_MEAN, std=CIFAR10_STD, seed=seed)  # noqa: E731
    a, b, c = make(0), make(0), make(1)
    a1, a2 = _epoch(a), _epoch(a)
    b1, b2 = _epoch(b), _epoch(b)

    assert not torch.equal(a1[1], a2[1])  # new order every epoch
    assert torch.equal(a1[0], b1[0]) and torch.equal(a1[1], b1[1])  # reproducible, images included
    assert torch.equal(a2[0], b2[0]) and torch.equal(a2[1], b2[1])
    assert not torch.equal(_epoch(c)[1], a1[1])
    # Epoch e depends only on (seed, e): resuming at epoch 1 reproduces the second epoch.
    resumed = make(0)
    resumed.epoch = 1
    assert torch.equal(_epoch(resumed)[0], a2[0])


def test_train_loader_augments_with_crop_and_flip_only():
    images, ids = _data(64)
    mean, std = _stats(images)
    loader = TensorLoader(images, ids, 64, train=True, mean=mean, std=std, pad=2)
    x, y = _epoch(loader)
    # Undo normalisation to recover the exact uint8 pixels.
    raw = (x * torch.tensor(std).view(1, 3, 1, 1) * 255 + torch.tensor(mean).view(1, 3, 1, 1) * 255).round()

    changed = 0
    for res, i in zip(raw, y.tolist(), strict=True):
        src = images[i]
        allowed = _candidates(src, 2, "reflect") + _candidates(src.flip(-1), 2, "reflect")
        assert any(torch.equal(cand, res) for cand in allowed)
        changed += not torch.equal(res, src.float())
    assert changed > 48  # 1 in 50 combinations is the identity


def test_train_loader_channels_last_and_make_loaders():
    splits = load_splits("synthetic", "unused", train_limit=40, eval_limit=30)
    loaders = make_loaders(splits, 16, channels_last=True, eval_batch_size=25, seed=5)
    assert set(loaders) == {"train", "val", "test"}
    assert loaders["train"].train and not loaders["val"].train and not loaders["test"].train
    assert [len(loaders[k]) for k in ("train", "val", "test")] == [2, 2, 2]
    assert [loaders[k].num_samples for k in ("train", "val", "test")] == [40, 30, 30]
    x, y = next(iter(loaders["train"]))
    assert x.is_contiguous(memory_format=torch.channels_last) and y.device.type == "cpu"
    x_val, y_val = next(iter(loaders["val"]))
    assert torch.equal(y_val, splits.val_labels[:25])


def test_image_splits_rejects_malformed_tensors():
    images, labels = torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64)
    kwargs = dict(
        train_images=images, train_labels=labels, val_images=images, val_labels=labels,
        test_images=images.float(), test_labels=labels, num_classes=1, mean=(0.5,) * 3, std=(0.2,) * 3,
        classes=("a",),
    )  # fmt: skip
    with pytest.raises(ValueError, match="test_images"):
        ImageSplits(**kwargs)
