"""Every knob of a run as small dataclasses, plus the named profiles and presets that fill them.

A run is fully described by `RunConfig`; its hash (`config_hash`) names the run and is written into every result
file, so two results with the same hash came from the same settings. Fields that only say *where* things live
(data dir, output dirs, device, progress bars) are left out of the hash: moving a checkout must not change it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field

from .errors import TITNError
from .hardware import cpu_precision

DATASETS = {
    # name: (image size, channels, classes)
    "mnist": (28, 1, 10),
    "cifar10": (32, 3, 10),
    "cifar100": (32, 3, 100),
}
PROFILES = ("smoke", "cpu", "paper")
TEACHERS = ("resnet-small", "resnet18", "fastcnn", "fastcnn-wide")
# resnet18 is the "larger teacher" of the paper's wording; on 2 CPU cores it costs ~4x the student per image, so the
# smoke profile defaults to resnet-small. The cpu profile's CIFAR teachers are the airbench-shaped fastcnn (94% on
# CIFAR-10 in minutes) and its wider twin for CIFAR-100; MNIST keeps resnet-small (99.6%, its runs' teacher).
DEFAULT_TEACHER = {"smoke": "resnet-small", "cpu": "resnet-small", "paper": "resnet18"}
CPU_TEACHER = {"cifar10": "fastcnn", "cifar100": "fastcnn-wide"}


def default_teacher(profile: str, dataset: str) -> str:
    return CPU_TEACHER.get(dataset, DEFAULT_TEACHER[profile]) if profile == "cpu" else DEFAULT_TEACHER[profile]


KD_MODES = ("none", "soft", "hard", "feature", "soft+feature", "paper")


@dataclass
class ModelConfig:
    """TITN / ViT shape. `inner=False` removes the inner transformer, giving a plain ViT of the same width."""

    preset: str = "titn-tiny"
    patch_size: int = 4
    word_size: int = 1  # 1 = pixel-level words, the paper's "pixel-level" reading
    outer_dim: int = 128
    inner_dim: int = 16
    depth: int = 6
    outer_heads: int = 4
    inner_heads: int = 2
    mlp_ratio: float = 4.0
    inner: bool = True
    distill_token: bool = False
    drop_path: float = 0.0


@dataclass
class DistillConfig:
    """Knowledge distillation; every term has its own weight so ablations can switch it off.

    loss = (1 - alpha) * CE(y, student) + alpha * logit_term + feature_weight * feature_term
    """

    teacher: str | None = None  # one of TEACHERS, or None for no distillation
    teacher_checkpoint: str | None = None  # None: reuse (or train) the teacher run of the same dataset/profile
    logit: str = "none"  # "none" | "soft" (Hinton) | "hard" (DeiT, needs the distillation token)
    alpha: float = 0.5
    temperature: float = 4.0
    feature_weight: float = 0.0
    feature_loss: str = "mse"  # "mse" on standardised features | "cosine"
    student_layer: int = -1  # outer block whose patch tokens are matched (-1 = last)
    teacher_layer: str = "layer3"  # teacher stage whose feature map is pooled to the student's patch grid
    # "online": the teacher sees every augmented batch (one teacher forward per step); "cached": its logits for each
    # training image (averaged with the mirror image's where data.flip) are computed once before the first step and
    # stand for every augmented view of it (logit terms only; hashed only when set)
    teacher_targets: str = "online"


@dataclass
class DataConfig:
    dataset: str = "mnist"
    data_dir: str | None = None  # not hashed: where the files live does not change the run
    val_size: int = 5000
    train_subset: int | None = None  # first N training images (after the val split), for smoke runs
    train_fraction: float = 1.0  # data-efficiency ablation
    # tile the kept fraction back to the full training-set length, so a smaller fraction gets as many optimizer steps
    # per epoch: data scarcity without the shorter schedule a fixed epoch count would also give it
    repeat_subset: bool = False
    test_subset: int | None = None
    crop_padding: int = 2
    flip: bool = False
    randaugment: bool = False
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    label_smoothing: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    amp: str = "auto"  # "auto" (bf16 on CUDA only) | "bf16" | "off"
    seed: int = 0
    eval_batch_size: int = 500
    # added later, hashed only when changed from these defaults (HASHED_WHEN_SET), so earlier run ids stay valid
    optimizer: str = "adamw"  # "adamw" | "sgd" (Nesterov; weight decay decoupled: each step shrinks by lr-factor*wd)
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # after the linear warm-up: "cosine" or "linear" decay to min_lr_ratio
    norm_bias_lr_scale: float = 1.0  # sgd: norm biases learn this much faster (airbench: 64), same decay per step
    lookahead_every: int = 0  # >0: every k steps pull the weights to a slow average and back (airbench's lookahead)
    tta: str = "none"  # test-time augmentation scored at the end, beside the plain number: "none"|"flip"|"flip+shift"


@dataclass
class RunConfig:
    kind: str = "student"  # "student" (TITN/ViT) or "teacher" (CNN)
    profile: str = "cpu"
    model: ModelConfig = field(default_factory=ModelConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # --- not hashed: location and presentation only ---
    run_id: str | None = None
    results_dir: str = "results"
    checkpoint_dir: str = "checkpoints"
    device: str = "auto"
    compile: bool = False  # torch.compile the student: ~1.16x in bf16 on 2 EPYC cores, minus ~1 min of compiling
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        sections = {"model": ModelConfig, "distill": DistillConfig, "data": DataConfig, "train": TrainConfig}
        kwargs = {k: (sections[k](**v) if k in sections else v) for k, v in d.items()}
        return cls(**kwargs)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return DATASETS[self.data.dataset]

    @property
    def num_classes(self) -> int:
        return DATASETS[self.data.dataset][2]

    def hash(self) -> str:
        return config_hash(self)

    def default_run_id(self) -> str:
        arch = self.distill.teacher if self.kind == "teacher" else self.model.preset
        kd = "" if self.kind == "teacher" else f"-kd_{kd_label(self.distill)}"
        return f"{self.kind}-{self.data.dataset}-{arch}{kd}-{self.profile}-s{self.train.seed}-{self.hash()[:8]}"


UNHASHED = {"run_id", "results_dir", "checkpoint_dir", "device", "compile", "progress"}
UNHASHED_DATA = {"data_dir"}
UNHASHED_DISTILL = {"teacher_checkpoint"}
# settings added after results were committed: hashed only when set, so the earlier runs keep their ids
HASHED_WHEN_SET = {
    "distill": {"teacher_targets": "online"},
    "data": {"repeat_subset": False},
    "train": {"optimizer": "adamw", "momentum": 0.9, "schedule": "cosine", "norm_bias_lr_scale": 1.0,
              "lookahead_every": 0, "tta": "none"},
}  # fmt: skip


def config_hash(cfg: RunConfig) -> str:
    """sha256 over the settings that change the result (sorted JSON), so equal hashes mean equal runs."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in UNHASHED}
    d["data"] = {k: v for k, v in d["data"].items() if k not in UNHASHED_DATA}
    for section, defaults in HASHED_WHEN_SET.items():
        d[section] = {k: v for k, v in d[section].items() if not (k in defaults and v == defaults[k])}
    d["distill"] = {k: v for k, v in d["distill"].items() if k not in UNHASHED_DISTILL}
    if cfg.kind == "teacher":
        d.pop("model")  # the teacher's architecture is distill.teacher; student shape is irrelevant
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def kd_label(d: DistillConfig) -> str:
    if d.teacher is None:
        return "none"
    parts = [d.logit] if d.logit != "none" else []
    if d.feature_weight > 0:
        parts.append("feature")
    return "+".join(parts) or "none"


# ----------------------------------------------------------------------------------------------- presets
MODEL_PRESETS: dict[str, dict] = {
    # tests and CI: a 2x2 grid of half-image patches (patch size set per dataset) whose inner transformer over
    # 2x2-pixel words learns MNIST in seconds
    "titn-smoke": dict(word_size=2, outer_dim=48, inner_dim=16, depth=2, outer_heads=2, inner_heads=2),
    # CPU budget runs (2 cores)
    "titn-tiny": dict(word_size=2, outer_dim=128, inner_dim=32, depth=6, outer_heads=4, inner_heads=2),
    "titn-small": dict(outer_dim=192, inner_dim=24, depth=8, outer_heads=6, inner_heads=3),
    # TNT-S widths (Han et al. 2021: d=384, c=24, depth 12, heads 6/4), the size the paper builds on
    "titn-paper": dict(outer_dim=384, inner_dim=24, depth=12, outer_heads=6, inner_heads=4, drop_path=0.1),
}
for _name in list(MODEL_PRESETS):
    MODEL_PRESETS["vit-" + _name.split("-", 1)[1]] = dict(MODEL_PRESETS[_name], inner=False)


def model_preset(name: str, img_size: int) -> ModelConfig:
    if name not in MODEL_PRESETS:
        raise TITNError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_PRESETS)}")
    cfg = ModelConfig(preset=name, **MODEL_PRESETS[name])
    if name.endswith("-smoke"):
        cfg.patch_size = img_size // 2
    return cfg


def distill_preset(kd: str, teacher: str) -> DistillConfig:
    """Named distillation set-ups. "paper" = DeiT distillation token (hard) + feature term, our reading of the
    paper's "distillation token" plus "distillation conducted within the feature extraction layer"."""
    if kd not in KD_MODES:
        raise TITNError(f"unknown distillation mode {kd!r}; choose one of: {', '.join(KD_MODES)}")
    if kd == "none":
        return DistillConfig(teacher=None)
    return {
        "soft": DistillConfig(teacher=teacher, logit="soft"),
        "hard": DistillConfig(teacher=teacher, logit="hard"),
        "feature": DistillConfig(teacher=teacher, logit="none", alpha=0.0, feature_weight=1.0),
        "soft+feature": DistillConfig(teacher=teacher, logit="soft", feature_weight=1.0),
        "paper": DistillConfig(teacher=teacher, logit="hard", feature_weight=1.0),
    }[kd]


# The cpu profile's student epochs, set from measured speed so a distilled CIFAR run fits 3 h of the reference machine
# (2-core EPYC, bf16 matmuls at 887 GFLOP/s): the recipe family's distilled TITN-tiny, compiled, trained 205 images/s
# with the fastcnn teacher online on a host with 2.2x slower matmuls (402 GFLOP/s), i.e. ~450 at reference speed, so
# an epoch of 45,000 images plus its evaluation takes ~115 s there: 80 epochs ~2.6 h. The teacher's forward is ~10 s
# of that epoch (online minus cached targets); CIFAR-100's 2.6x costlier fastcnn-wide makes it ~26: 70 epochs ~2.6 h.
# (The earlier recipe ran 30; it stays reachable as a shorter schedule, `--epochs 30`.)
CPU_STUDENT_EPOCHS = {"mnist": 12, "cifar10": 80, "cifar100": 70}


def _profile_settings(profile: str, dataset: str, kind: str) -> tuple[str, dict, dict]:
    """(model preset, data overrides, train overrides) for a profile; see the book's "how to reproduce"."""
    cifar = dataset.startswith("cifar")
    aug = dict(crop_padding=4, flip=True) if cifar else dict(crop_padding=2, flip=False)
    if profile == "smoke":
        data = dict(aug, val_size=500, train_subset=4096, test_subset=1000)
        train = dict(epochs=1 if kind == "teacher" else 3, batch_size=64, lr=3e-3, warmup_epochs=0.2)
        return "titn-smoke", data, train
    if profile == "cpu":
        # precision follows the machine: bf16 autocast where the CPU has it natively (2.1x the student's fp32 speed,
        # 1.9x the teacher's on avx512_bf16 cores), fp32 where bf16 would be emulated (~12x slower). It is part of
        # the config, so runs on the two kinds of CPU never share a hash.
        # CIFAR students: what 3 h of the reference machine buys (CPU_STUDENT_EPOCHS); MNIST: the earlier 12 epochs
        epochs = CPU_STUDENT_EPOCHS[dataset]
        if kind == "teacher":
            epochs = {"mnist": 4, "cifar10": 15, "cifar100": 15}[dataset]
        data = dict(aug, label_smoothing=0.1 if cifar else 0.0)
        train = dict(epochs=epochs, batch_size=128, lr=2e-3, amp=cpu_precision())
        if cifar and kind == "student":
            train["tta"] = "flip"  # the mirror-averaged test top-1, reported beside the plain number
        return "titn-tiny", data, train
    if profile == "paper":
        data = dict(aug, randaugment=cifar, mixup_alpha=0.8 if cifar else 0.0, cutmix_alpha=1.0 if cifar else 0.0)
        data["label_smoothing"] = 0.1
        train = dict(epochs=300, batch_size=128, lr=5e-4, warmup_epochs=5)
        return "titn-paper", data, train
    raise TITNError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")


# airbench94's recipe (Jordan 2024, arXiv 2404.00498) in this trainer's terms: batch 1024, Nesterov SGD with momentum
# 0.85, lr 11.5 per 1024 examples of summed loss (= 1.5 on the mean loss here) and decay 0.0153 per 1024 examples
# decoupled from it (= 0.002 per step at peak), norm biases 64x faster, label smoothing 0.2, flip + 2 px shift, a
# linear warm-up to 23% of the run and decay to 7%, lookahead every 5 steps, mirror + shift at test time (reported
# separately). Its 9.9 epochs become `epochs`; the CPU recipe trains longer because an hour buys it.
FASTCNN_RECIPE = {
    "data": dict(crop_padding=2, flip=True, label_smoothing=0.2, val_size=2000),
    "train": dict(batch_size=1024, optimizer="sgd", lr=1.5, momentum=0.85, weight_decay=0.002,
                  schedule="linear", min_lr_ratio=0.07, norm_bias_lr_scale=64.0, grad_clip=0.0, lookahead_every=5,
                  tta="flip+shift", eval_batch_size=1000),
}  # fmt: skip
# cpu: what an hour of 2 EPYC cores buys (benchmarks/teacher_throughput.py projects it): fastcnn 16 epochs in ~0.5 h,
# the 2.6x costlier fastcnn-wide 12 epochs in ~0.9 h
FASTCNN_WARMUP_SHARE = 0.23  # of the run's epochs, as airbench94 warms up
FASTCNN_EPOCHS = {"cpu": {"mnist": 8, "cifar10": 16, "cifar100": 12}, "smoke": 1, "paper": 40}


def _apply_teacher_recipe(cfg: RunConfig) -> None:
    """A fastcnn teacher trains with airbench's recipe on every profile (the profile sets its epochs)."""
    for section, values in FASTCNN_RECIPE.items():
        for key, value in values.items():
            setattr(getattr(cfg, section), key, value)
    epochs = FASTCNN_EPOCHS[cfg.profile]
    cfg.train.epochs = epochs[cfg.data.dataset] if isinstance(epochs, dict) else epochs
    if cfg.profile == "smoke":
        cfg.train.batch_size = 256


def build_config(
    dataset: str = "mnist",
    profile: str = "cpu",
    kind: str = "student",
    model: str | None = None,
    teacher: str | None = None,
    kd: str | None = None,
    overrides: dict | None = None,
) -> RunConfig:
    """Compose a RunConfig from a profile, named presets and `section.field` overrides."""
    if dataset not in DATASETS:
        raise TITNError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    if kind not in ("student", "teacher"):
        raise TITNError(f"unknown run kind {kind!r}; use 'student' or 'teacher'")
    preset, data_over, train_over = _profile_settings(profile, dataset, kind)
    if teacher is None and (kind == "teacher" or kd not in (None, "none")):
        teacher = default_teacher(profile, dataset)
    if teacher is not None and teacher not in TEACHERS:
        raise TITNError(f"unknown teacher {teacher!r}; choose one of: {', '.join(TEACHERS)}")
    if kind == "teacher":
        distill = DistillConfig(teacher=teacher)
    else:
        distill = distill_preset(kd or ("paper" if teacher else "none"), teacher)
    cfg = RunConfig(
        kind=kind,
        profile=profile,
        model=model_preset(model or preset, DATASETS[dataset][0]),
        distill=distill,
        data=DataConfig(dataset=dataset, **data_over),
        train=TrainConfig(**train_over),
    )
    if cfg.distill.logit == "hard":
        cfg.model.distill_token = True
    if profile == "cpu" and cfg.distill.feature_weight > 0 and (teacher or "").startswith("fastcnn"):
        # the recipe family (6 epochs, CIFAR-10): the feature term read from fastcnn's middle stage (7x7, near the 8x8
        # patch grid) beat its last (3x3) by a wide margin
        cfg.distill.teacher_layer = "layer2"
    if kind == "teacher" and teacher.startswith("fastcnn"):
        _apply_teacher_recipe(cfg)
    for key, value in (overrides or {}).items():
        set_field(cfg, key, value)
    if kind == "teacher" and teacher.startswith("fastcnn") and "train.warmup_epochs" not in (overrides or {}):
        cfg.train.warmup_epochs = FASTCNN_WARMUP_SHARE * cfg.train.epochs  # after overrides: follows --epochs
    validate(cfg)
    return cfg


def set_field(cfg: RunConfig, key: str, value) -> None:
    """Set `section.field` (or a top-level field) from a value or a CLI string, checking the type."""
    obj, name = cfg, key
    if "." in key:
        section, name = key.split(".", 1)
        if section not in ("model", "distill", "data", "train"):
            raise TITNError(f"unknown config section in {key!r}; use model., distill., data. or train.")
        obj = getattr(cfg, section)
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if name not in fields:
        raise TITNError(f"unknown config field {key!r}; known: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(type(obj))
    setattr(obj, name, coerce(value, hints[name], key))


def coerce(value, annotation, key: str):
    """Convert `value` to the annotated type (accepting CLI strings), or fail naming the field and type."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), annotation) if args else annotation
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        if optional:
            return None
        raise TITNError(f"{key} cannot be None; give a {base.__name__}")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except ValueError:
        pass
    raise TITNError(f"{key} must be {base.__name__}{' or None' if optional else ''}, got {value!r}")


def validate(cfg: RunConfig) -> None:
    """Reject settings that cannot run, before anything is written."""
    if cfg.profile not in PROFILES:
        raise TITNError(f"unknown profile {cfg.profile!r}; choose one of: {', '.join(PROFILES)}")
    _validate_model(cfg)
    _validate_train(cfg.train)
    _validate_data(cfg.data)
    _validate_distill(cfg)


def _validate_model(cfg: RunConfig) -> None:
    size, _, _ = cfg.image_shape
    m = cfg.model
    if m.patch_size <= 0 or size % m.patch_size:
        raise TITNError(
            f"patch size {m.patch_size} does not divide the {size}px images of {cfg.data.dataset}; "
            f"use a divisor of {size} (e.g. {', '.join(str(p) for p in (2, 4, 7, 8) if size % p == 0)})"
        )
    if m.word_size <= 0 or m.patch_size % m.word_size:
        raise TITNError(f"word size {m.word_size} does not divide patch size {m.patch_size}; use a divisor of it")
    if m.outer_dim % m.outer_heads or m.inner_dim % m.inner_heads:
        raise TITNError("model dims must be divisible by their head counts (outer_dim/outer_heads, inner_dim/...)")


def _validate_train(t: TrainConfig) -> None:
    if t.epochs <= 0:
        raise TITNError(f"epochs must be a positive integer, got {t.epochs}")
    if t.batch_size <= 0 or t.lr <= 0 or t.eval_batch_size <= 0:
        raise TITNError("train.batch_size, train.eval_batch_size and train.lr must be positive")
    if t.amp not in ("auto", "bf16", "off"):
        raise TITNError(f"train.amp must be 'auto', 'bf16' or 'off', got {t.amp!r}")
    tta = ("none", "flip", "flip+shift")
    _check_choices(t, "train", optimizer=("adamw", "sgd"), schedule=("cosine", "linear"), tta=tta)
    if t.lookahead_every < 0:
        raise TITNError(f"train.lookahead_every must be >= 0 (0 = off), got {t.lookahead_every}")


def _check_choices(section, name: str, **allowed: tuple[str, ...]) -> None:
    for key, choices in allowed.items():
        if (value := getattr(section, key)) not in choices:
            raise TITNError(f"{name}.{key} must be one of {', '.join(choices)}; got {value!r}")


def _validate_data(data: DataConfig) -> None:
    if not 0 < data.train_fraction <= 1:
        raise TITNError(f"data.train_fraction must be in (0, 1], got {data.train_fraction}")
    if data.val_size < 1:  # the held-out split picks the best checkpoint
        raise TITNError(f"data.val_size must be at least 1 (images held out for validation), got {data.val_size}")


def _validate_distill(cfg: RunConfig) -> None:
    d, m = cfg.distill, cfg.model
    if d.teacher is not None and d.teacher not in TEACHERS:
        raise TITNError(f"unknown teacher {d.teacher!r}; choose one of: {', '.join(TEACHERS)}")
    _check_choices(d, "distill", logit=("none", "soft", "hard"), feature_loss=("mse", "cosine"),
                   teacher_targets=("online", "cached"))  # fmt: skip
    if d.temperature <= 0 or not 0 <= d.alpha <= 1:
        raise TITNError(f"distill.temperature must be positive and distill.alpha in [0, 1]: {d.temperature}, {d.alpha}")
    if not -m.depth <= d.student_layer < m.depth:
        raise TITNError(f"distill.student_layer {d.student_layer} is not a block of the {m.depth}-block model; "
                        f"use one in [-{m.depth}, {m.depth - 1}]")  # fmt: skip
    if cfg.kind != "student":
        return
    if d.logit == "hard" and not m.distill_token:
        raise TITNError("hard distillation needs the distillation token: set model.distill_token=true")
    if m.distill_token and d.teacher is not None and d.logit == "none":  # its head would learn nothing yet vote
        raise TITNError("model.distill_token with a teacher needs a logit term to train its head: "
                        "set distill.logit=hard (or soft), or model.distill_token=false")  # fmt: skip
    if d.teacher_checkpoint is not None and d.teacher is None:
        raise TITNError("--teacher-checkpoint needs --teacher naming its architecture (e.g. --teacher fastcnn)")
    mixing = cfg.data.mixup_alpha > 0 or cfg.data.cutmix_alpha > 0
    if d.teacher_targets == "cached" and (d.feature_weight > 0 or mixing):
        raise TITNError(
            "distill.teacher_targets=cached holds one logit vector per image: it cannot serve the feature "
            "term or MixUp/CutMix; set distill.feature_weight=0 and no mixing, or teacher_targets=online"
        )
    if d.teacher is None and (d.logit != "none" or d.feature_weight > 0):
        raise TITNError("distillation terms are on but no teacher is set: pass --teacher resnet18 (or --kd none)")
