"""Where the book's numbers come from: the data each run saw and the settings each profile trains with. Data
only; the chapters write the prose."""

from __future__ import annotations

import pandas as pd

from .book import DATASET_TITLES
from .profiles import build_config
from .teacher_runs import teacher_config


def data_provenance(datasets=tuple(DATASET_TITLES)) -> pd.DataFrame:
    """What data each dataset's runs see on this machine: its label, file checksum, and how many images are only
    approximations of the originals (from the file's own masks), with the most they can move a test top-1."""
    from .data import load_arrays
    from .errors import TITNError

    rows = []
    for dataset in datasets:
        try:
            a = load_arrays(dataset, download=False)
        except TITNError:
            rows.append({"dataset": DATASET_TITLES[dataset], "data": "not on this machine"})
            continue
        approx = 0 if a.exact_test is None else int((~a.exact_test).sum())
        rows.append({"dataset": DATASET_TITLES[dataset], "data": a.variant, "sha256": (a.sha256 or "-")[:12],
                     "train images": len(a.y_train), "test images": len(a.y_test), "approximate test images": approx,
                     "most they can move test top-1 (points)": round(100 * approx / len(a.y_test), 2)})  # fmt: skip
    return pd.DataFrame(rows)


def profile_table() -> pd.DataFrame:
    """The settings each profile trains with, read from the config code (so the book cannot drift from it)."""
    rows = []
    for profile in ("smoke", "cpu", "paper"):
        for dataset in DATASET_TITLES:
            s = build_config(dataset, profile, kd="paper")
            t = teacher_config(s)  # the teacher run the student learns from (distill.teacher_epochs included)
            m = s.model
            precision = {"bf16": "bf16 autocast", "off": "fp32"}.get(s.train.amp, "bf16 on CUDA, else fp32")
            teacher = f"{s.distill.teacher} ({t.train.epochs} epochs, {t.data.val_size} held out)"
            rows.append({"profile": profile, "dataset": DATASET_TITLES[dataset],
                         "student": f"{m.preset}: patch {m.patch_size}, word {m.word_size}, d={m.outer_dim}, "
                                    f"c={m.inner_dim}, depth {m.depth}, heads {m.outer_heads}/{m.inner_heads}",
                         "epochs": s.train.epochs, "batch": s.train.batch_size, "lr (AdamW)": s.train.lr,
                         "precision": precision, "augmentation": augmentation(s.data),
                         "train images": _training_images(s.data),
                         "teacher": teacher})  # fmt: skip
    return pd.DataFrame(rows)


def budget_gap() -> pd.DataFrame:
    """Why a gap to the paper is expected on a CPU: the `cpu` profile's student, schedule, augmentation and teachers
    beside the `paper` profile's (our GPU reading of the paper), read from the config code."""
    from .complexity import count_params
    from .trainer import build_model

    rows = []
    for profile in ("cpu", "paper"):
        configs = {dataset: build_config(dataset, profile, kd="paper") for dataset in DATASET_TITLES}
        cifar = configs["cifar10"]
        rows.append({"profile": profile, "student": cifar.model.preset,
                     "params (M)": round(count_params(build_model(cifar)) / 1e6, 2),
                     "epochs (MNIST / CIFAR-10 / CIFAR-100)": " / ".join(str(c.train.epochs) for c in configs.values()),
                     "CIFAR augmentation": augmentation(cifar.data),
                     "teachers": " / ".join(c.distill.teacher for c in configs.values())})  # fmt: skip
    return pd.DataFrame(rows)


def augmentation(d) -> str:
    """A data config's augmentation and label smoothing in a few words, as the tables and chapters name a recipe."""
    aug = [f"crop±{d.crop_padding}"] + [f"rotation±{d.rotate_degrees:g}°"] * bool(d.rotate_degrees)
    aug += ["flip"] * d.flip + ["RandAugment"] * d.randaugment
    aug += [f"mixup {d.mixup_alpha}"] * bool(d.mixup_alpha) + [f"cutmix {d.cutmix_alpha}"] * bool(d.cutmix_alpha)
    return ", ".join(aug + [f"label smoothing {d.label_smoothing}"] * bool(d.label_smoothing))


def _training_images(d) -> str:
    subset = f"a {d.train_subset}-image subset" if d.train_subset else "the training split"
    return f"{subset}, {d.val_size} held out for validation"
