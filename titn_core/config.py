"""Every knob of a run as small dataclasses, their hash, and the checks a run must pass before it starts.

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

DATASETS = {
    # name: (image size, channels, classes)
    "mnist": (28, 1, 10),
    "cifar10": (32, 3, 10),
    "cifar100": (32, 3, 100),
}
PROFILES = ("smoke", "cpu", "paper")
TEACHERS = ("resnet-small", "resnet18", "fastcnn", "fastcnn-wide")

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
    # None: the profile's teacher schedule; a number: the same teacher recipe trained that many epochs, its own run
    # (does a stronger teacher make a stronger student?); hashed only when set
    teacher_epochs: int | None = None


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
    rotate_degrees: float = 0.0  # per-image rotation up to this angle (0: none); hashed only when set
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
    tta: str = "none"  # test-time augmentation scored at the end, beside the plain number: none|flip|shift|flip+shift
    # the epoch best.pt keeps, the weights students distil from: "val" (best validation top-1) or "last" (the final
    # epoch, for a recipe whose schedule ends on its best weights and a validation split too small to rank epochs)
    select: str = "val"


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
    "distill": {"teacher_targets": "online", "teacher_epochs": None},
    "data": {"repeat_subset": False, "rotate_degrees": 0.0},
    "train": {"optimizer": "adamw", "momentum": 0.9, "schedule": "cosine", "norm_bias_lr_scale": 1.0,
              "lookahead_every": 0, "tta": "none", "select": "val"},
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
    tta = ("none", "flip", "shift", "flip+shift")
    _check_choices(t, "train", optimizer=("adamw", "sgd"), schedule=("cosine", "linear"), tta=tta,
                   select=("val", "last"))  # fmt: skip
    if t.lookahead_every < 0:
        raise TITNError(f"train.lookahead_every must be >= 0 (0 = off), got {t.lookahead_every}")


def _check_choices(section, name: str, **allowed: tuple[str, ...]) -> None:
    for key, choices in allowed.items():
        if (value := getattr(section, key)) not in choices:
            raise TITNError(f"{name}.{key} must be one of {', '.join(choices)}; got {value!r}")


def _validate_data(data: DataConfig) -> None:
    if not 0 < data.train_fraction <= 1:
        raise TITNError(f"data.train_fraction must be in (0, 1], got {data.train_fraction}")
    if not 0 <= data.rotate_degrees <= 180:
        raise TITNError(
            f"data.rotate_degrees must be in [0, 180] (a rotation up to that angle), got {data.rotate_degrees}"
        )
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
    if d.teacher_epochs is not None and (d.teacher is None or d.teacher_checkpoint is not None or d.teacher_epochs < 1):
        raise TITNError(f"distill.teacher_epochs={d.teacher_epochs} picks how long the profile's teacher trains: give "
                        "a positive number with a teacher and no --teacher-checkpoint, or leave it unset")  # fmt: skip
    mixing = cfg.data.mixup_alpha > 0 or cfg.data.cutmix_alpha > 0
    if d.teacher_targets == "cached" and (d.feature_weight > 0 or mixing):
        raise TITNError(
            "distill.teacher_targets=cached holds one logit vector per image: it cannot serve the feature "
            "term or MixUp/CutMix; set distill.feature_weight=0 and no mixing, or teacher_targets=online"
        )
    if d.teacher is None and (d.logit != "none" or d.feature_weight > 0):
        raise TITNError("distillation terms are on but no teacher is set: pass --teacher resnet18 (or --kd none)")
