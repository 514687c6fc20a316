from pathlib import Path

import pytest
import torch

from titn_core.config import DataConfig
from titn_core.data import (
    BatchAugment,
    balanced_order,
    load_arrays,
    make_splits,
    random_crop,
    random_flip,
    random_rotate,
)
from titn_core.errors import TITNError


def test_shared_files_are_identified_by_checksum(data_dir):
    mnist = load_arrays("mnist", data_dir)
    assert mnist.variant == "MNIST (exact)"
    assert mnist.x_train.shape == (60000, 1, 28, 28) and mnist.x_train.dtype == torch.uint8
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    cifar = load_arrays("cifar10", data_dir)
    assert cifar.variant == "CIFAR-10"
    assert cifar.x_test.shape == (10000, 3, 32, 32) and cifar.y_train[:5].tolist() == [6, 9, 9, 4, 1]
    assert int((~cifar.exact_test).sum()) == 21, "SOURCES.md: 21 test images are JPEG approximations"
    cifar100 = load_arrays("cifar100", data_dir)
    assert cifar100.variant == "CIFAR-100" and cifar100.exact_test is None
    assert torch.bincount(cifar100.y_train).tolist() == [500] * 100


def test_approximate_test_images_are_counted_in_the_split(data_dir):
    full = make_splits(load_arrays("cifar10", data_dir), DataConfig(dataset="cifar10"))
    assert full.approximate_test_images == 21
    assert make_splits(load_arrays("mnist", data_dir), DataConfig()).approximate_test_images == 0


def test_packed_data_gets_the_unpack_command(tmp_path):
    (tmp_path / "cifar100.webp.npz").write_bytes(b"packed")
    with pytest.raises(TITNError, match="is packed; unpack it once with `python .*unpack.py"):
        load_arrays("cifar100", str(tmp_path), download=False)


def test_data_dir_from_environment(monkeypatch, data_dir):
    monkeypatch.setenv("TITN_DATA_DIR", data_dir)
    load_arrays.cache_clear()
    assert load_arrays("mnist").source.startswith(data_dir)


def test_validation_split_is_disjoint_and_seed_independent(data_dir):
    arrays = load_arrays("mnist", data_dir)
    s = make_splits(arrays, DataConfig(val_size=5000))
    assert len(s.y_train) == 55000 and len(s.y_val) == 5000 and len(s.y_test) == 10000
    train_keys = {bytes(x.numpy()) for x in s.x_train[:2000]}
    assert not any(bytes(x.numpy()) in train_keys for x in s.x_val[:500])
    again = make_splits(arrays, DataConfig(val_size=5000))
    assert torch.equal(again.y_val, s.y_val)
    half = make_splits(arrays, DataConfig(val_size=5000, train_fraction=0.5))
    assert len(half.y_train) == 27500 and half.train_images == 27500


def test_repeated_fraction_keeps_the_full_epoch_length_with_only_the_fractions_images(data_dir):
    """The data-steps ablation: 10% of the images, as many steps per epoch as the full set."""
    arrays = load_arrays("mnist", data_dir)
    tenth = make_splits(arrays, DataConfig(val_size=5000, train_fraction=0.1))
    repeated = make_splits(arrays, DataConfig(val_size=5000, train_fraction=0.1, repeat_subset=True))
    assert len(repeated.y_train) == 55000 and repeated.train_images == tenth.train_images == 5500
    assert torch.equal(repeated.x_train[:5500], tenth.x_train) and torch.equal(
        repeated.x_train[5500:11000], tenth.x_train
    )
    assert torch.equal(repeated.y_val, tenth.y_val)


def test_subsets_are_class_balanced_even_when_the_file_is_grouped_by_class(data_dir):
    """CIFAR-100's test set is stored class by class: the first 200 images would be two classes."""
    arrays = load_arrays("cifar100", data_dir)
    assert arrays.y_test[:200].unique().tolist() == [0, 1], "the file is grouped, so this test means something"
    s = make_splits(arrays, DataConfig(dataset="cifar100", val_size=500, train_subset=1000, test_subset=200))
    assert torch.bincount(s.y_test, minlength=100).tolist() == [2] * 100
    assert torch.bincount(s.y_train, minlength=100).tolist() == [10] * 100


def test_balanced_order_is_seeded_and_each_prefix_balanced():
    labels = torch.tensor([0] * 6 + [1] * 6 + [2] * 3)  # grouped, with a small class
    order = balanced_order(labels, torch.Generator().manual_seed(1))
    assert sorted(order.tolist()) == list(range(15))
    assert torch.bincount(labels[order[:9]]).tolist() == [3, 3, 3]
    assert torch.bincount(labels[order[:11]]).tolist() == [4, 4, 3], "the small class runs out, the others go on"
    assert torch.equal(order, balanced_order(labels, torch.Generator().manual_seed(1)))


def test_batched_crop_and_flip_are_per_image():
    x = torch.arange(2 * 8 * 8, dtype=torch.uint8).reshape(1, 2, 8, 8).repeat(64, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    cropped = random_crop(x, 2, g)
    assert cropped.shape == x.shape
    assert len({bytes(c.numpy()) for c in cropped}) > 10  # different offsets per image
    flipped = random_flip(x, g)
    n_flipped = sum(torch.equal(f, x[0].flip(-1)) for f in flipped)
    assert 10 < n_flipped < 54


def _bar_angles(images: torch.Tensor) -> torch.Tensor:
    """Each image's ink orientation in degrees (principal axis of the ink's pixel coordinates, y pointing down)."""
    h, w = images.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float), torch.arange(w, dtype=torch.float), indexing="ij")
    ink = images.float().flatten(1) / images.float().flatten(1).sum(1, keepdim=True)
    mx, my = (ink * xs.flatten()).sum(1), (ink * ys.flatten()).sum(1)
    dx, dy = xs.flatten() - mx[:, None], ys.flatten() - my[:, None]
    vxx, vyy, vxy = (ink * dx * dx).sum(1), (ink * dy * dy).sum(1), (ink * dx * dy).sum(1)
    return torch.rad2deg(0.5 * torch.atan2(2 * vxy, vxx - vyy))


def test_batched_rotation_turns_each_image_by_its_own_angle_within_the_bound():
    bar = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    bar[..., 13:15, 4:24] = 255  # a horizontal bar through the centre: its tilt is the angle
    x = bar.repeat(256, 1, 1, 1)
    rotated = random_rotate(x, 15.0, torch.Generator().manual_seed(0))
    assert rotated.dtype == torch.uint8 and rotated.shape == x.shape
    assert torch.equal(rotated, random_rotate(x, 15.0, torch.Generator().manual_seed(0))), "seeded: repeatable"
    angles = _bar_angles(rotated)
    assert angles.abs().max() <= 15.5, "never past the bound"
    assert angles.min() < -12 and angles.max() > 12, "both directions, out to the bound"
    assert len({bytes(r.numpy()) for r in rotated}) > 200, "one angle per image"
    assert torch.equal(random_rotate(x, 1e-6, torch.Generator().manual_seed(0)), x), "no angle: the image itself"
    wide = torch.zeros(1, 1, 28, 56, dtype=torch.uint8)
    wide[..., 13:15, 18:38] = 255
    tilted = _bar_angles(random_rotate(wide.repeat(256, 1, 1, 1), 15.0, torch.Generator().manual_seed(0)))
    assert tilted.abs().max() <= 15.5 and tilted.max() > 12, "non-square images are rotated, not sheared"


def test_augment_applies_rotation_only_when_asked():
    x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    plain, turned = (BatchAugment(DataConfig(dataset="mnist", rotate_degrees=d), 10) for d in (0.0, 15.0))
    same_seed = [aug(x, torch.arange(8), torch.Generator().manual_seed(0))[0] for aug in (plain, plain, turned)]
    assert torch.equal(same_seed[0], same_seed[1]) and not torch.equal(same_seed[0], same_seed[2])


def test_augment_with_cutmix_returns_probabilities():
    aug = BatchAugment(DataConfig(dataset="cifar10", flip=True, crop_padding=4, cutmix_alpha=1.0), num_classes=10)
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    out, y = aug(x, torch.arange(8), torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert y.shape == (8, 10) and torch.allclose(y.sum(1), torch.ones(8))


def test_a_missing_dataset_downloads_into_the_named_folder_else_the_user_cache(tmp_path, monkeypatch):
    from titn_core.data import download_dir

    monkeypatch.delenv("TITN_DATA_DIR", raising=False)
    assert download_dir(None) == Path("~/.cache/titn/data").expanduser(), "not ../shared/data beside the checkout"
    assert download_dir(str(tmp_path)) == tmp_path
    monkeypatch.setenv("TITN_DATA_DIR", str(tmp_path / "env"))
    assert download_dir(None) == tmp_path / "env"
