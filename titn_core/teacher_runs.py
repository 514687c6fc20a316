"""A student's teacher: the teacher run it reuses (trained first if missing), the weights kept with that run's
results so a clean checkout distils from the same checkpoint, and the teacher's logits computed once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import storage
from .config import RunConfig
from .errors import TITNError
from .metrics import predict
from .profiles import build_config
from .teachers import ResNetTeacher

if TYPE_CHECKING:
    from .trainer import RunResult

# a teacher's best weights (2.7 MB for resnet-small), kept with its results: a clean checkout has no checkpoints/, and
# without them every distilled run would retrain the teacher, which on a CPU does not reproduce it bit for bit
TEACHER_WEIGHTS = "teacher_weights.pt"


def teacher_config(cfg: RunConfig) -> RunConfig:
    """The teacher run a student reuses: same dataset and profile, seed 0, so every student seed shares it; trained
    for `distill.teacher_epochs` where the student sets it (a run of its own)."""
    epochs = cfg.distill.teacher_epochs
    over = {"train.epochs": epochs} if epochs is not None else None
    t = build_config(cfg.data.dataset, cfg.profile, kind="teacher", teacher=cfg.distill.teacher, overrides=over)
    t.data.data_dir, t.results_dir, t.checkpoint_dir = cfg.data.data_dir, cfg.results_dir, cfg.checkpoint_dir
    t.device, t.progress = cfg.device, cfg.progress
    return t


def load_teacher(cfg: RunConfig, device: torch.device) -> tuple[ResNetTeacher, dict]:
    """Load the teacher checkpoint (given, or the profile's teacher run, trained first if it does not exist)."""
    from .trainer import model_from_checkpoint, train  # the teacher trains through the students' loop

    path = cfg.distill.teacher_checkpoint
    if path is None:
        tcfg = teacher_config(cfg)
        with torch.random.fork_rng():  # the student's initialisation must not depend on whether this trains
            run = train(tcfg, resume=True)
            if teacher_weights(run) is None:
                # results with neither checkpoint nor published weights: train the teacher again, with its old
                # metrics set aside so a killed retraining resumes instead of passing for complete
                aside = set_aside_results(run.run_dir, "before-retraining")
                print(f"[{run.run_id}] no teacher weights in {run.checkpoint_dir}; retraining it ({aside.name})")
                run = train(tcfg, resume=True)
        path = teacher_weights(run)
    state = storage.load_checkpoint(path)
    tcfg = RunConfig.from_dict(state["config"])
    if tcfg.kind != "teacher":
        raise TITNError(f"{path} is a {tcfg.kind} checkpoint, not a teacher; pass a checkpoint from `teacher`")
    if tcfg.data.dataset != cfg.data.dataset or tcfg.num_classes != cfg.num_classes:
        raise TITNError(
            f"teacher {path} was trained on {tcfg.data.dataset} ({tcfg.num_classes} classes) but the student "
            f"trains on {cfg.data.dataset} ({cfg.num_classes}); use a teacher of the same dataset"
        )
    if tcfg.distill.teacher != cfg.distill.teacher:
        raise TITNError(f"{path} holds a {tcfg.distill.teacher} teacher, not {cfg.distill.teacher}; fix --teacher")
    teacher, _ = model_from_checkpoint(state)
    teacher.to(device).eval().requires_grad_(False)
    info = {"teacher_run_id": state.get("run_id"), "teacher_checkpoint": str(path)}
    info["teacher_test_top1"] = state.get("metrics", {}).get("test_top1")
    return teacher, info


def set_aside_results(run_dir: Path, label: str) -> Path:
    """Rename a run's finished metrics and notebook records to `*.<label>.*`: kept for the record, but neither taken
    for the result of a run that trains again (a killed retraining would pass for complete) nor for a plan's done
    job (its notebook's figures are the old run's)."""
    aside = storage.set_aside(run_dir / "metrics.json", label)
    for record in run_dir.glob("*.job.json"):
        storage.set_aside(record, label)
    return aside


def teacher_weights(run: RunResult) -> Path | None:
    """The teacher's best.pt from this machine's checkpoints, else the copy kept with its results, else None."""
    return next((p for p in (run.checkpoint_dir / "best.pt", run.run_dir / TEACHER_WEIGHTS) if p.exists()), None)


def publish_teacher_weights(ckpt_dir: Path, run_dir: Path) -> None:
    """Copy a teacher's best.pt (weights, config, metrics: no optimiser) beside its results, once."""
    best, published = ckpt_dir / "best.pt", run_dir / TEACHER_WEIGHTS
    if best.exists() and not published.exists():
        storage.atomic_write_bytes(published, best.read_bytes())


def cached_teacher_logits(teacher: nn.Module, images: torch.Tensor, cfg: RunConfig, device, autocast) -> torch.Tensor:
    """The teacher's logits for every training image, averaged with its mirror image's where training flips (the
    mirror is then a view the student sees, and on fastcnn two views beat one; a mirrored digit is not a digit):
    computed once, they replace a teacher forward per step."""
    tta = "flip" if cfg.data.flip else "none"
    return predict(teacher, images, cfg.data.dataset, cfg.train.eval_batch_size, device, autocast, tta=tta)
