"""Ablation families: named lists of variants, each a set of config overrides on one base run.

The paper's own ablations (distillation on/off, its settings) and ours (inner transformer on/off, patch/word
size, depth/width, temperature and weights, teacher choice, training-data fraction at fixed epochs and at equal
steps). The notebook `ablation.ipynb` trains every variant of one family and plots them; all variants share
dataset, profile and seed.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

from .config import RunConfig
from .errors import TITNError
from .profiles import build_config

Variant = tuple[str, dict, dict]  # (label, build_config keyword arguments, overrides)

# Patch and word sizes must divide the image, so the patch family depends on it: (patch, word) per image size. The
# default is patch 4; the larger patch is the divisor nearest 8 (7 on 28px MNIST, whose words are then pixels) and
# 14 with 2px words on MNIST stands in for the coarser-word variant that 8/4 gives on 32px CIFAR.
PATCH_WORD_SIZES = {32: [(4, 1), (4, 2), (8, 2), (8, 4)], 28: [(4, 1), (4, 2), (7, 1), (14, 2)]}


def patch_variants(img_size: int) -> list[Variant]:
    if img_size not in PATCH_WORD_SIZES:
        raise TITNError(f"no patch family for {img_size}px images; add its (patch, word) sizes to PATCH_WORD_SIZES")
    return [
        (f"patch {p}, word {w}", dict(kd="none"), {"model.patch_size": p, "model.word_size": w})
        for p, w in PATCH_WORD_SIZES[img_size]
    ]


DATA_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
# at equal steps every variant costs a full-data run (~20 min each on MNIST on 2 CPU cores), so the smallest fraction
# against the full set only
DATA_STEPS_FRACTIONS = (0.1, 1.0)


_REGULARISERS_OFF = {
    "data.mixup_alpha": 0.0,
    "data.cutmix_alpha": 0.0,
    "data.randaugment": False,
    "model.drop_path": 0.0,
}


ROTATION_DEGREES = 15.0
TEACHER_EPOCHS_LONGER = 24  # twice the cpu profile's CIFAR-100 teacher (FASTCNN_EPOCHS), 1.5x its CIFAR-10 one


def _cumulative(steps: list[tuple[str, dict]]) -> list[Variant]:
    """Distilled variants that each add one step's overrides to every step before, all pinning every regulariser."""
    variants, pinned = [], dict(_REGULARISERS_OFF)
    for label, overrides in steps:
        pinned = {**pinned, **overrides}
        variants.append((label, dict(kd="paper"), pinned))
    return variants


def _data_label(fraction: float, kd: str) -> str:
    return f"{int(fraction * 100)}% data{', KD' if kd != 'none' else ''}"


# family -> its variants, or a function of the image size giving them
FAMILIES: dict[str, list[Variant] | Callable[[int], list[Variant]]] = {
    "distillation": [
        ("no KD", dict(kd="none"), {}),
        ("soft logits", dict(kd="soft"), {}),
        ("hard (dist. token)", dict(kd="hard"), {}),
        ("feature only", dict(kd="feature"), {}),
        ("soft + feature", dict(kd="soft+feature"), {}),
        ("paper: hard + feature", dict(kd="paper"), {}),
    ],
    "inner": [
        ("TITN (inner on)", dict(kd="none"), {}),
        ("ViT (inner off)", dict(kd="none"), {"model.inner": False}),
        ("TITN + KD", dict(kd="paper"), {}),
        ("ViT + KD", dict(kd="paper"), {"model.inner": False}),
    ],
    "patch": patch_variants,
    "size": [
        ("depth 4", dict(kd="none"), {"model.depth": 4}),
        ("depth 6", dict(kd="none"), {"model.depth": 6}),
        ("depth 8", dict(kd="none"), {"model.depth": 8}),
        ("width 96", dict(kd="none"), {"model.outer_dim": 96, "model.outer_heads": 3}),
        ("width 192", dict(kd="none"), {"model.outer_dim": 192, "model.outer_heads": 6}),
    ],
    # issue 20's student recipe against the profile's teacher, on a short schedule: which distillation, which
    # teacher stage for the feature term (fastcnn's layer3 is 3x3, layer2 7x7, nearer the 8x8 patch grid), whether
    # teacher logits computed once (no teacher forward per step) cost accuracy, and whether airbench's lookahead pays
    # for a transformer too. It ran before the regularization family; every variant pins the regularisers off, so a
    # regulariser the profile adopts later leaves its runs (and the cached-targets variant valid) as they were
    "recipe": [
        (label, kwargs, {**_REGULARISERS_OFF, **overrides})
        for label, kwargs, overrides in [
            ("no KD", dict(kd="none"), {}),
            ("hard (dist. token)", dict(kd="hard"), {}),
            ("hard, cached teacher targets", dict(kd="hard"), {"distill.teacher_targets": "cached"}),
            ("paper: hard + feature", dict(kd="paper"), {"distill.teacher_layer": "layer3"}),
            ("hard + feature, teacher layer2", dict(kd="paper"), {"distill.teacher_layer": "layer2"}),
            ("hard + lookahead", dict(kd="hard"), {"train.lookahead_every": 5}),
        ]
    ],
    # regularisers on the distilled recipe, at the main runs' full schedule: the 80-epoch CIFAR-10 run ended at 99.5
    # train against 87.7 test top-1 (train passed test by epoch 20), an overfitting no 6-epoch schedule shows. MixUp
    # and CutMix at DeiT's strengths, with the teacher seeing the same mixed image ("consistent" distillation,
    # Beyer et al. 2022); RandAugment at torchvision's defaults; stochastic depth as in DeiT-Ti. Cumulative, as a
    # recipe is searched greedily: each variant adds one regulariser to the one before, every variant pins all of
    # them, so the family keeps its runs when the profile adopts some (the adopted variant's run is then the main
    # distilled run itself: today '+ MixUp 0.8 / CutMix 1.0', run 7cf22a99)
    "regularization": _cumulative(
        [
            ("no regulariser", {}),
            ("+ MixUp 0.8 / CutMix 1.0", {"data.mixup_alpha": 0.8, "data.cutmix_alpha": 1.0}),
            ("+ RandAugment", {"data.randaugment": True}),
            ("+ stochastic depth 0.1", {"model.drop_path": 0.1}),
        ]
    ),
    # does a stronger teacher make a stronger student? The profile's distilled run against the same recipe taught by
    # the same teacher trained for more epochs (its own teacher run, TEACHER_EPOCHS_LONGER), at the main schedule: on
    # CIFAR-100 a distilled student rarely passes its teacher (the CRD / RepDistiller benchmark, Tian et al. 2020),
    # and the cpu profile's CIFAR-100 teacher sits below the paper's student number
    "teacher-epochs": [
        ("the profile's teacher", dict(kd="paper"), {}),
        (
            f"teacher trained {TEACHER_EPOCHS_LONGER} epochs",
            dict(kd="paper"),
            {"distill.teacher_epochs": TEACHER_EPOCHS_LONGER},
        ),
    ],
    # the distilled recipe taught by resnet-small and by the airbench-shaped fastcnn (airbench's recipe, without the
    # mirror on digits), at the main schedule. Run on MNIST, whose profile teacher is resnet-small (so that variant is
    # the main distilled run, reused) at 99.59 test top-1, level with issue 20's goal for the student (99.60), which a
    # distilled student seldom passes
    "fast-teacher": [
        ("resnet-small teacher", dict(kd="paper", teacher="resnet-small"), {}),
        ("fastcnn teacher", dict(kd="paper", teacher="fastcnn"), {}),
    ],
    # MNIST's missing few hundredths (issue 20's goal is 99.60): random rotation, which a third-party
    # re-implementation's configs attribute to the paper's MNIST recipe ("rotation 15"), on the distilled recipe at
    # the main schedule
    "rotation": [
        ("crop only (the profile)", dict(kd="paper"), {}),
        (f"+ rotation up to {ROTATION_DEGREES:g} degrees", dict(kd="paper"), {"data.rotate_degrees": ROTATION_DEGREES}),
    ],
    "temperature": [(f"T={t}", dict(kd="soft"), {"distill.temperature": t}) for t in (1.0, 2.0, 4.0, 8.0)],
    "weights": [
        *((f"alpha={a}", dict(kd="soft"), {"distill.alpha": a}) for a in (0.1, 0.5, 0.9)),
        *((f"feature x{w}", dict(kd="paper"), {"distill.feature_weight": w}) for w in (0.0, 0.5, 1.0, 2.0)),
    ],
    "teacher": [
        ("no teacher", dict(kd="none"), {}),
        ("resnet-small", dict(kd="paper", teacher="resnet-small"), {}),
        ("resnet18", dict(kd="paper", teacher="resnet18"), {}),
    ],
    # training-set fraction at a fixed epoch count (a smaller fraction also gets fewer optimizer steps) and at equal
    # steps (the fraction repeated to the full length): the second isolates scarcity from the shorter schedule
    "data": [
        (_data_label(f, kd), dict(kd=kd), {"data.train_fraction": f})
        for kd in ("none", "paper")
        for f in DATA_FRACTIONS
    ],
    "data-steps": [
        (_data_label(f, kd), dict(kd=kd), {"data.train_fraction": f, "data.repeat_subset": f < 1})
        for kd in ("none", "paper")
        for f in DATA_STEPS_FRACTIONS
    ],
}


def _kd_gain_per_size(fractions) -> tuple[str, dict]:
    """Does distillation matter more when labelled data is scarce? KD minus no KD at each training-set size."""
    pairs = {
        f"{int(f * 100)}% of the training set": (_data_label(f, "paper"), _data_label(f, "none")) for f in fractions
    }
    return "Distillation (KD minus no KD)", pairs


def _against_first(family: str) -> dict[str, tuple[str, str]]:
    """Every later variant of a family paired with its first, the profile's recipe."""
    (first, _, _), *rest = FAMILIES[family]
    return {label: (label, first) for label, _, _ in rest}


# families read as paired differences: family -> (what a difference measures, {condition: (variant, its control)})
CONTRASTS = {
    "inner": (  # the paper's question: what the inner transformer adds, per KD setting
        "Inner transformer (TITN minus ViT)",
        {"without KD": ("TITN (inner on)", "ViT (inner off)"), "with KD": ("TITN + KD", "ViT + KD")},
    ),
    "data": _kd_gain_per_size(DATA_FRACTIONS),
    "data-steps": _kd_gain_per_size(DATA_STEPS_FRACTIONS),
    "regularization": (  # cumulative: each regulariser against the recipe it was added to
        "Regulariser added (variant minus the one before)",
        {label: (label, before) for (before, _, _), (label, _, _) in pairwise(FAMILIES["regularization"])},
    ),
    "teacher-epochs": (
        "Longer-trained teacher (variant minus the profile's teacher)",
        _against_first("teacher-epochs"),
    ),
    "rotation": ("Rotation added (variant minus the profile's crop only)", _against_first("rotation")),
    "fast-teacher": ("fastcnn teacher (variant minus resnet-small)", _against_first("fast-teacher")),
}


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise TITNError(f"unknown ablation family {family!r}; choose one of: {', '.join(FAMILIES)}")
    return family


# families run at the main runs' schedule and scored like them (test-time augmentation beside the plain number), so
# the variant with the profile's current recipe is the main distilled run itself, reused rather than trained again
MAIN_SCHEDULE_FAMILIES = {"regularization", "teacher-epochs", "rotation", "fast-teacher"}


def family_configs(family: str, dataset: str, profile: str, seed: int = 0, epochs: int | None = None):
    """[(label, RunConfig)] for one family; raises with the known families if the name is wrong."""
    variants = FAMILIES[check_family(family)]
    if callable(variants):
        variants = variants(build_config(dataset, profile).image_shape[0])  # build_config names a bad dataset
    out: list[tuple[str, RunConfig]] = []
    for label, kwargs, overrides in variants:
        # variants are read by their plain top-1; test-time augmentation is the main runs' extra number
        scoring = {} if family in MAIN_SCHEDULE_FAMILIES else {"train.tta": "none"}
        over = {"train.seed": seed, **scoring, **overrides}
        if epochs:
            over["train.epochs"] = epochs
        out.append((label, build_config(dataset, profile, **kwargs, overrides=over)))
    return out
