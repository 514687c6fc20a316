"""Datasets as whole uint8 tensors in memory, splits, and batched on-device augmentation.

Why tensors: on 2 CPU cores a DataLoader with per-image PIL transforms costs more than the model; indexing one
big uint8 tensor and augmenting a whole batch at once costs almost nothing (the airbench approach).

Where data comes from, in order: `--data-dir` / `TITN_DATA_DIR` (or, when neither is set, `./data`,
`~/.cache/titn/data` and `../shared/data`), holding `<name>.npz` (uint8 keys x_train, y_train, x_test, y_test)
or torchvision's own folder layout; else torchvision's download (online machines). A folder holding only the packed
`<name>.webp.npz` of this project's offline machines is named in the error, with the command that unpacks it.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

from .config import DATASETS, DataConfig
from .errors import TITNError

DISPLAY = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
# sha256 of known .npz files -> the honest name of what they hold (see ../shared/data/SOURCES.md)
KNOWN_NPZ = {
    "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64": "MNIST (exact)",
    "81b8af92bc76caa2376c04b1b05b9f5a58b1bf71ee223d713bcb15c38316f7b3": "CIFAR-10 (JPEG-q75)",
    # rebuilt from lossless copies with the official split; 103 of CIFAR-10's 60,000 images are JPEG approximations,
    # flagged False in the file's exact_train / exact_test masks (counted into every result's metrics)
    "753d9c89e841715b12602a3e8d3c245d0f8f6751de6f0b984773e6e19fc49e12": "CIFAR-10",
    "cdc6e1e8784c096aa4f11115062fff94f50bfabcd357e10d525e6cd2577e8bf4": "CIFAR-100",
}
MEAN_STD = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
SPLIT_SEED = 20250224  # fixed, so the validation split is the same for every run seed


@dataclass
class DatasetArrays:
    """A dataset as NCHW uint8 / int64 tensors plus where it came from."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    variant: str  # e.g. "CIFAR-10 (JPEG-q75)": put this next to every number measured on it
    source: str
    sha256: str | None
    exact_test: Tensor | None = None  # False for a test image that is only an approximation of the original


CACHE_DIR = Path("~/.cache/titn/data")  # searched by default; downloads and `make data` go here


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def candidate_dirs(data_dir: str | None) -> list[Path]:
    if data_dir:
        return [Path(data_dir).expanduser()]
    if os.environ.get("TITN_DATA_DIR"):
        return [Path(os.environ["TITN_DATA_DIR"]).expanduser()]
    root = project_root()
    return [root / "data", CACHE_DIR.expanduser(), root.parent / "shared" / "data"]


def download_dir(data_dir: str | None) -> Path:
    """Where a missing dataset is downloaded: the folder the user named, else the per-user cache (never the
    checkout, nor a shared folder beside it)."""
    named = data_dir or os.environ.get("TITN_DATA_DIR")
    return Path(named).expanduser() if named else CACHE_DIR.expanduser()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _to_nchw(x: np.ndarray) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


def _from_npz(name: str, path: Path) -> DatasetArrays:
    digest = sha256_of(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            y_tr = "y_train" if "y_train" in keys else "y_train_fine"
            y_te = "y_test" if "y_test" in keys else "y_test_fine"
            missing = {"x_train", y_tr, "x_test", y_te} - keys
            if missing:
                raise TITNError(f"{path} lacks arrays {sorted(missing)}; it needs x_train, y_train, x_test, y_test")
            arrays = {k: z[k] for k in ("x_train", y_tr, "x_test", y_te)}
            exact_test = z["exact_test"] if "exact_test" in keys else None
    except (OSError, ValueError) as e:
        raise TITNError(f"{path} is not a readable .npz ({e}); replace it or point --data-dir elsewhere") from e
    variant = KNOWN_NPZ.get(digest, f"{DISPLAY[name]} (npz, unverified sha256)")
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    found = _checked(name, x_train, arrays[y_tr], x_test, arrays[y_te], variant, str(path), digest)
    if exact_test is not None:
        if exact_test.shape != (len(x_test),) or exact_test.dtype != np.bool_:
            raise TITNError(f"{path}: exact_test must be one bool per test image; re-export the file")
        found.exact_test = torch.from_numpy(exact_test)
    return found


def _from_torchvision(name: str, root: Path, download: bool) -> DatasetArrays | None:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except (RuntimeError, OSError, ValueError):
        return None
    # torchvision checks the archives' md5 itself when it downloads / opens CIFAR
    arrays = [np.asarray(d.data) for d in (train, test)]
    labels = [np.asarray(d.targets) for d in (train, test)]
    return _checked(name, arrays[0], labels[0], arrays[1], labels[1], f"{DISPLAY[name]} (official)", str(root), None)


def _checked(name, x_train, y_train, x_test, y_test, variant, source, digest) -> DatasetArrays:
    """Reject arrays with the wrong dtype, shape or label range before they reach a model."""
    size, chans, classes = DATASETS[name]
    want = (size, size) if chans == 1 else (size, size, chans)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.dtype != np.uint8 or tuple(x.shape[1:]) != want:
            raise TITNError(
                f"{source}: x_{split} is {x.dtype}{tuple(x.shape)}, expected uint8 (N, {', '.join(map(str, want))}) "
                f"for {name}; re-export it in that layout"
            )
        if len(y) != len(x) or y.ndim != 1:
            raise TITNError(f"{source}: y_{split} has {len(y)} labels for {len(x)} images; they must match")
        if len(y) and (y.min() < 0 or y.max() >= classes):
            raise TITNError(f"{source}: y_{split} has labels outside 0..{classes - 1} for {name}; fix the labels")
    return DatasetArrays(
        name,
        _to_nchw(x_train),
        torch.from_numpy(y_train.astype(np.int64)),
        _to_nchw(x_test),
        torch.from_numpy(y_test.astype(np.int64)),
        variant,
        source,
        digest,
    )


@functools.lru_cache(maxsize=4)
def load_arrays(name: str, data_dir: str | None = None, download: bool = True) -> DatasetArrays:
    """Find `name` in the data folders (npz first, then torchvision layout), else download it."""
    if name not in DATASETS:
        raise TITNError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    dirs = candidate_dirs(data_dir)
    if data_dir and not dirs[0].is_dir():
        raise TITNError(f"data dir {dirs[0]} does not exist; pass an existing folder with --data-dir / TITN_DATA_DIR")
    for d in dirs:
        if (d / f"{name}.npz").is_file():
            return _from_npz(name, d / f"{name}.npz")
        if d.is_dir() and (found := _from_torchvision(name, d, download=False)) is not None:
            return found
    if packed := next((d / f"{name}.webp.npz" for d in dirs if (d / f"{name}.webp.npz").is_file()), None):
        raise TITNError(
            f"{packed} is packed; unpack it once with `python {packed.parent / 'unpack.py'} {CACHE_DIR}` "
            "(searched by default) or pass that folder as --data-dir / TITN_DATA_DIR"
        )
    if download and (found := _from_torchvision(name, download_dir(data_dir), download=True)) is not None:
        return found
    looked = ", ".join(str(d) for d in dirs)
    raise TITNError(
        f"dataset {name} not found (looked for {name}.npz or torchvision folders in: {looked}; download "
        f"{'failed' if download else 'disabled'}); put it in one of them or pass --data-dir DIR / set TITN_DATA_DIR"
    )


@dataclass
class Splits:
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    variant: str
    source: str
    sha256: str | None
    train_images: int  # distinct training images: fewer than len(y_train) when a fraction is repeated
    approximate_test_images: int = 0  # test images that are not exact copies (bounds their effect on test top-1)


def balanced_order(labels: Tensor, generator: torch.Generator) -> Tensor:
    """A seeded order of all indices whose every prefix is as class-balanced as the data allows: a shuffled round
    robin over the classes. Some files store images grouped by class (CIFAR-100's test set), where "the first N"
    would be a few classes and even a random draw leaves small classes short."""
    perm = torch.randperm(len(labels), generator=generator)
    shuffled = labels[perm]
    by_class = torch.argsort(shuffled, stable=True)
    counts = torch.bincount(shuffled)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(perm)
    rank[by_class] = torch.arange(len(perm)) - starts[shuffled[by_class]]  # place of each image within its class
    return perm[torch.argsort(rank, stable=True)]


def make_splits(arrays: DatasetArrays, cfg: DataConfig) -> Splits:
    """Hold out `val_size` training images for model selection; optional subsets for smoke/data-efficiency runs
    (a fraction, optionally repeated to the full length).

    Permutations use a fixed seed, so the split never depends on the run seed. `train_subset` and `test_subset` are
    class-balanced samples (`balanced_order`), never "the first N", because some files are grouped by class.
    """
    g = torch.Generator().manual_seed(SPLIT_SEED)
    n = len(arrays.y_train)
    if not 0 <= cfg.val_size < n:
        raise TITNError(f"data.val_size must be in [0, {n}), got {cfg.val_size}")
    perm = torch.randperm(n, generator=g)
    val_idx, train_idx = perm[: cfg.val_size], perm[cfg.val_size :]
    if cfg.train_subset:
        train_idx = train_idx[balanced_order(arrays.y_train[train_idx], g)][: cfg.train_subset]
    full = len(train_idx)  # what the run trains on at fraction 1
    train_idx = train_idx[: max(1, round(full * cfg.train_fraction))]
    distinct = len(train_idx)
    if cfg.repeat_subset:  # same images, as many per epoch as at fraction 1: equal steps per epoch
        train_idx = train_idx.repeat(-(-full // distinct))[:full]
    test_idx = torch.arange(len(arrays.y_test))
    if cfg.test_subset:
        test_idx = balanced_order(arrays.y_test, g)[: cfg.test_subset]
    a = arrays
    approximate = 0 if a.exact_test is None else int((~a.exact_test[test_idx]).sum())
    return Splits(
        a.x_train[train_idx],
        a.y_train[train_idx],
        a.x_train[val_idx],
        a.y_train[val_idx],
        a.x_test[test_idx],
        a.y_test[test_idx],
        a.variant,
        a.source,
        a.sha256,
        distinct,
        approximate,
    )


def normalize(x: Tensor, dataset: str) -> Tensor:
    """uint8 NCHW -> float, standardised with the dataset's usual channel statistics."""
    mean, std = (torch.tensor(v, device=x.device).view(1, -1, 1, 1) for v in MEAN_STD[dataset])
    return (x.float() / 255 - mean) / std


def random_crop(x: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Per-image random translation by up to `padding` px (zero fill) for a whole batch in one gather."""
    if padding == 0:
        return x
    B, C, H, W = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=generator.device).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=generator.device).to(x.device)
    rows = (dy[:, None] + torch.arange(H, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(W, device=x.device))[:, None, None, :]
    batch = torch.arange(B, device=x.device)[:, None, None, None]
    chans = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_rotate(x: Tensor, degrees: float, generator: torch.Generator) -> Tensor:
    """Per-image rotation by a uniform angle in [-degrees, degrees] about the centre (zero fill, bilinear, where
    torchvision's RandomRotation defaults to nearest) for a whole uint8 batch in one `grid_sample`: the MNIST
    augmentation a re-implementation attributes to the paper. `affine_grid` works in coordinates normalised per axis,
    so the off-diagonal terms carry the aspect ratio (a rotation, not a shear, on non-square images)."""
    angles = (torch.rand(x.shape[0], generator=generator, device=generator.device) * 2 - 1) * torch.pi * degrees / 180
    cos, sin, zero = angles.cos(), angles.sin(), torch.zeros_like(angles)
    h, w = x.shape[-2:]
    rows = [torch.stack([cos, -sin * h / w, zero], 1), torch.stack([sin * w / h, cos, zero], 1)]
    theta = torch.stack(rows, 1).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    rotated = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return rotated.round().clamp(0, 255).to(x.dtype)


class BatchAugment:
    """Training-time augmentation of a uint8 batch -> (normalised float batch, targets).

    Crop, rotation and flip are batched tensor ops; RandAugment, MixUp and CutMix come from torchvision.transforms.v2
    (RandAugment per image on uint8 tensors, never PIL). Targets become class probabilities when MixUp/CutMix is on.
    """

    def __init__(self, cfg: DataConfig, num_classes: int):
        self.cfg = cfg
        self.randaugment = v2.RandAugment() if cfg.randaugment else None
        mixers = []
        if cfg.mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=cfg.mixup_alpha, num_classes=num_classes))
        if cfg.cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=cfg.cutmix_alpha, num_classes=num_classes))
        self.mix = v2.RandomChoice(mixers) if mixers else None

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = random_crop(x, self.cfg.crop_padding, generator)
        if self.cfg.rotate_degrees > 0:
            x = random_rotate(x, self.cfg.rotate_degrees, generator)
        if self.cfg.flip:
            x = random_flip(x, generator)
        if self.randaugment is not None:
            x = torch.stack([self.randaugment(img) for img in x])
        x = normalize(x, self.cfg.dataset)
        if self.mix is not None:
            x, y = self.mix(x, y)
        return x, y


def batches(n: int, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False):
    """Index tensors for one pass; shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        yield order[i : i + batch_size]
