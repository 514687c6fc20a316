"""One plain training loop for students (TITN/ViT, with or without a teacher) and for the CNN teachers.

Reproducible by construction: every epoch re-seeds the global and data RNGs from (seed, epoch), so a run resumed
from the checkpoint written at the end of epoch k continues exactly as if it had never stopped.

Outputs of a run `results/<run-id>/`: config.json (with its hash), history.csv (one row per epoch, rewritten
every epoch) and, only when the run is complete, metrics.json. Checkpoints (`checkpoints/<run-id>/last.pt` to
resume, `best.pt` chosen on the validation split) are not committed.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from . import attention, distributed, hardware, host_probe, storage
from .complexity import count_flops, count_params
from .config import DistillConfig, RunConfig, kd_label, validate
from .data import BatchAugment, Splits, batches, load_arrays, make_splits, normalize
from .distill import DistillationLoss, StudentOutput, TeacherOutput, teacher_forward
from .errors import TITNError
from .lookahead import Lookahead
from .metrics import as_percent, count_hits, evaluate, predict, top_classes
from .model import TITN, build_titn
from .optim import lr_lambda, make_optimizer
from .teacher_runs import (
    TEACHER_WEIGHTS,
    cached_teacher_logits,
    load_teacher,
    publish_teacher_weights,
    set_aside_results,
)
from .teachers import build_teacher

PREDICTIONS_FILE = "test_predictions.npz"  # top-5 classes of the final model for every test image
# epochs at least this long measure the host's speed again (`update_host_speed`, ~5 s: 2% of a 250 s CIFAR epoch)
HOST_SPEED_MIN_EPOCH_SECONDS = 60.0


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    checkpoint_dir: Path
    config: RunConfig
    metrics: dict
    history: pd.DataFrame

    @property
    def complete(self) -> bool:
        return bool(self.metrics.get("complete"))


def pick_device(requested: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU. Asking for CUDA on a machine without it is an error, not a fallback."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise TITNError(f"device {requested!r} requested but CUDA is not available; use --device cpu or auto")
    if not requested.startswith(("cpu", "cuda")):
        raise TITNError(f"unknown device {requested!r}; use auto, cpu or cuda[:N]")
    return torch.device(requested)


def autocast_factory(device: torch.device, amp: str):
    """bf16 autocast on CUDA by default; on CPU when asked for ("bf16"): about 2x faster on cores with native bf16
    (avx512_bf16/AMX, as on this project's machine), but emulated and ~12x slower elsewhere, which gets a warning."""
    enabled = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if enabled and device.type == "cpu" and not hardware.native_bf16():
        warnings.warn(
            f"bf16 is emulated on this CPU ({hardware.label(hardware.describe())}): training will be about 12x "
            "slower than fp32; pass --set train.amp=off (the cpu profile does so by itself on such machines)",
            stacklevel=2,
        )
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def compiler_ready(device: torch.device) -> bool:
    """Whether torch.compile can build this device's kernels. A CPU machine without a C++ compiler gets a warning
    and trains eagerly: the same model and hash, only slower (1.06-1.4x on the CPUs this project measured)."""
    if device.type == "cpu" and hardware.cpu_compiler() is None:
        warnings.warn(
            "no C++ compiler for torch.compile on this machine: training eagerly (the same model, only slower); "
            "install g++ or clang++, or point CXX at one",
            stacklevel=2,
        )
        return False
    return True


def build_model(cfg: RunConfig) -> nn.Module:
    size, chans, classes = cfg.image_shape
    if cfg.kind == "teacher":
        return build_teacher(cfg.distill.teacher, chans, classes)
    return build_titn(cfg.model, size, chans, classes)


def model_from_checkpoint(state: dict) -> tuple[nn.Module, RunConfig]:
    cfg = RunConfig.from_dict(state["config"])
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    return model, cfg


def student_step_output(model: nn.Module, x: torch.Tensor, distill: DistillConfig, need_tokens: bool):
    """Run the model being trained; for TITN keep the patch tokens of the distillation block if needed."""
    if not isinstance(model, TITN):
        return StudentOutput(model(x), None, None)
    feats = model.forward_features(x, keep_hidden=need_tokens)
    cls, dist = model.forward_head(feats.tokens)
    tokens = feats.hidden[distill.student_layer][:, model.num_prefix :] if need_tokens else None
    return StudentOutput(cls, dist, tokens)


class TrainStep(nn.Module):
    """The trained model and its loss in one module, so DDP also averages the feature projector's gradients."""

    def __init__(self, model: nn.Module, criterion: DistillationLoss, distill: DistillConfig):
        super().__init__()
        self.model, self.criterion, self.distill = model, criterion, distill

    def forward(self, x: torch.Tensor, y: torch.Tensor, teacher_out: TeacherOutput | None):
        out = student_step_output(self.model, x, self.distill, self.criterion.projector is not None)
        loss, terms = self.criterion(out, y, teacher_out)
        return loss, terms, out.cls_logits


def _epoch_seeds(seed: int, epoch: int) -> tuple[int, int]:
    """(global, data) seeds of an epoch. The data stream (order, crops, flips) keeps the seeds every committed run
    used; the global one (DropPath, RandAugment, MixUp/CutMix, which the cpu profile's CIFAR students use) is offset
    so it never replays another epoch's data stream, as it did while it was the next epoch's data seed."""
    data = seed * 1_000_003 + epoch + 1
    return data + 2**40, data


def _load_cached(cfg: RunConfig, run_dir: Path, ckpt_dir: Path) -> RunResult | None:
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists():
        return None
    metrics = storage.read_json(metrics_path)  # a torn file raises: reported, never taken for a result
    if metrics.get("config_hash") != cfg.hash() or not metrics.get("complete"):
        return None
    history = pd.read_csv(run_dir / "history.csv")
    return RunResult(run_dir.name, run_dir, ckpt_dir, cfg, metrics, history)


def _accuracy(model, x, y, cfg: RunConfig, device, autocast, ctx: distributed.Context, tta: str = "none") -> dict:
    """top-1/top-5 in percent over a split, each process scoring every world_size-th image."""
    x, y, data = ctx.spread(x), ctx.spread(y), cfg.data.dataset
    return as_percent(ctx.sum(count_hits(model, x, y, data, cfg.train.eval_batch_size, device, autocast, tta)))


def _nan_message(loss: torch.Tensor, epoch: int, step: int, last_path: Path, start_epoch: int) -> str:
    kept = f"the last good checkpoint {last_path} (epoch {start_epoch})" if last_path.exists() else "no checkpoint"
    return (
        f"loss became {loss.item()} at epoch {epoch + 1} step {step}; stopped, {kept} is kept; "
        "start a new run with a lower train.lr or a train.grad_clip (both change the run's config, so resuming "
        "this one cannot apply them)"
    )


def selected_epoch(history: list[dict], select: str) -> dict:
    """The history entry best.pt holds: the final epoch for train.select "last", else the first with the best
    validation top-1. One rule for the checkpoint saved and the best_* metrics reported."""
    return history[-1] if select == "last" else max(history, key=lambda h: h["val_top1"])


def _save_epoch(run: Run) -> None:
    """After each epoch: best.pt when this epoch is the selected one (`selected_epoch`), last.pt to resume from, and
    history.csv."""
    cfg, history = run.cfg, run.progress["history"]
    latest = history[-1]
    if selected_epoch(history, cfg.train.select)["epoch"] == latest["epoch"]:
        best_state = {"model": run.model.state_dict(), "config": cfg.to_dict(), "run_id": run.run_id,
                      "epoch": latest["epoch"], "metrics": {k: latest[k] for k in ("val_top1", "test_top1",
                                                                                    "test_top5")}}  # fmt: skip
        storage.save_checkpoint(run.ckpt_dir / "best.pt", best_state)
    last_state = {name: getattr(run, name).state_dict() for name in ("model", "criterion", "optimizer", "scheduler")}
    if run.lookahead is not None:
        last_state["lookahead"] = run.lookahead.state_dict()
    last_state |= {**run.progress, "config": cfg.to_dict(), "config_hash": cfg.hash(), "run_id": run.run_id}
    storage.save_checkpoint(run.last_path, last_state)
    storage.atomic_write_text(run.run_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))


@dataclass
class Run:
    """What the epoch loop needs, built once by `set_up`: the data, the model and its teacher, the loss, the
    optimiser and its schedule, and the progress so far (restored from `last.pt` when resuming)."""

    cfg: RunConfig
    ctx: distributed.Context
    device: torch.device
    run_id: str
    run_dir: Path
    ckpt_dir: Path
    splits: Splits
    model: nn.Module
    teacher: nn.Module | None
    teacher_info: dict
    criterion: DistillationLoss
    step_module: nn.Module
    named: list
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    augment: BatchAugment
    autocast: object
    lookahead: Lookahead | None
    steps_per_epoch: int
    teacher_logits: torch.Tensor | None  # distill.teacher_targets == "cached": one row per training image
    host_gflops: float | None = None  # this host's matmul speed (CPU runs), recorded per epoch: a run can span hosts
    host_titn_images_per_s: float | None = None  # this host's speed on TITN-tiny (`host_probe`), after long epochs
    progress: dict = field(default_factory=lambda: {"epoch": 0, "history": [], "train_seconds": 0.0,
                                                    "wall_seconds": 0.0})  # fmt: skip

    @property
    def last_path(self) -> Path:
        return self.ckpt_dir / "last.pt"

    def accuracy(self, x, y, tta: str = "none") -> dict:
        return _accuracy(self.model, x, y, self.cfg, self.device, self.autocast, self.ctx, tta)


def train(cfg: RunConfig, resume: bool = False, force: bool = False, stop_after: int | None = None) -> RunResult:
    """Train (or return the cached result of) one run; under `torchrun`, one data-parallel process of it.

    resume: continue from `last.pt` if present. force: start over even if results or a checkpoint exist.
    stop_after: stop after this many epochs in this call (simulates an interruption, for tests).
    """
    validate(cfg)
    ctx, device = distributed.setup(pick_device(cfg.device))
    cfg.compile = cfg.compile and compiler_ready(device)  # config.json then says how the run really trained
    distributed.check_batch(ctx, cfg.train.batch_size)
    run_id = cfg.run_id or cfg.default_run_id()
    run_dir, ckpt_dir = Path(cfg.results_dir) / run_id, Path(cfg.checkpoint_dir) / run_id
    if not force and (cached := _load_cached(cfg, run_dir, ckpt_dir)) is not None:
        if cfg.kind == "teacher":
            publish_teacher_weights(ckpt_dir, run_dir)  # a teacher finished before its weights were kept
        return cached
    if (ckpt_dir / "last.pt").exists() and not (resume or force):
        raise TITNError(f"run {run_id} already has a checkpoint ({ckpt_dir / 'last.pt'}); pass --resume to continue "
                        "it or --force")  # fmt: skip
    if ctx.is_main:  # fail now, not after the first hour of training
        storage.check_writable(cfg.results_dir, "--results-dir")
        storage.check_writable(cfg.checkpoint_dir, "--checkpoint-dir")

    run = set_up(cfg, ctx, device, run_id, run_dir, ckpt_dir)
    if resume and run.last_path.exists() and not force:
        restore(run)
    elif ctx.is_main and (run_dir / "metrics.json").exists():  # a finished run (--force), or a stale one
        print(f"[{run_id}] starting over; the old result is kept as {set_aside_results(run_dir, 'superseded').name}")
    if ctx.is_main:
        storage.atomic_write_json(run_dir / "config.json", {"config_hash": cfg.hash(), "run_id": run_id,
                                                            **cfg.to_dict()})  # fmt: skip
    size = {"params": count_params(run.model), "flops": count_flops(run.model, cfg.image_shape)}
    if cfg.compile:
        run.model.compile()  # in place: parameter names and checkpoints stay those of the eager model
    env = storage.environment()  # captured now: it names the code that starts (or resumes) the run
    if device.type == "cpu":
        run.host_gflops = hardware.speed_in(env["cpu_speed"], hardware.cpu_precision_of(cfg.train.amp))
    start_epoch = run.progress["epoch"]
    for epoch in range(start_epoch, cfg.train.epochs):
        run_epoch(run, epoch)
        if stop_after is not None and epoch + 1 - start_epoch >= stop_after and epoch + 1 < cfg.train.epochs:
            ctx.barrier()
            return RunResult(run_id, run_dir, ckpt_dir, cfg, {"complete": False}, pd.DataFrame(run.progress["history"]))
    return finish(run, size, env)


def set_up(cfg: RunConfig, ctx, device, run_id: str, run_dir: Path, ckpt_dir: Path) -> Run:
    """Data, model (seeded), teacher, loss, optimiser and schedule: everything before the first step, built in an
    order that fixes what the seed initialises (model, then the loss's projector)."""
    splits = make_splits(load_arrays(cfg.data.dataset, cfg.data.data_dir), cfg.data)
    model = _seeded_model(cfg, splits, device)
    teacher, teacher_info = load_teacher(cfg, device) if cfg.kind == "student" and cfg.distill.teacher else (None, {})
    criterion = _loss(cfg, model, teacher, device)
    named = list(model.named_parameters()) + [("distill." + n, p) for n, p in criterion.named_parameters()]
    optimizer = make_optimizer(named, cfg)
    steps, every = max(1, len(splits.y_train) // cfg.train.batch_size), cfg.train.lookahead_every
    autocast = autocast_factory(device, cfg.train.amp)
    cached = teacher is not None and cfg.distill.teacher_targets == "cached"
    return Run(
        cfg=cfg, ctx=ctx, device=device, run_id=run_id, run_dir=run_dir, ckpt_dir=ckpt_dir, splits=splits,
        model=model, teacher=teacher, teacher_info=teacher_info, criterion=criterion,
        step_module=ctx.wrap(TrainStep(model, criterion, cfg.distill), device), named=named, optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, steps)),
        augment=BatchAugment(cfg.data, cfg.num_classes), autocast=autocast,
        lookahead=Lookahead(model, every, cfg.train.epochs * steps) if every else None, steps_per_epoch=steps,
        teacher_logits=cached_teacher_logits(teacher, splits.x_train, cfg, device, autocast) if cached else None,
    )  # fmt: skip


def _seeded_model(cfg: RunConfig, splits: Splits, device) -> nn.Module:
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg).to(device)
    if hasattr(model, "init_from_data"):  # data-dependent initialisation (fastcnn's whitening layer)
        model.init_from_data(normalize(splits.x_train[:5000].to(device), cfg.data.dataset))
    return model


def _loss(cfg: RunConfig, model: nn.Module, teacher: nn.Module | None, device) -> DistillationLoss:
    """The run's loss; a student's feature term projects its tokens to the teacher stage's channels."""
    d = cfg.distill
    teacher_dim = teacher.stage_channels.get(d.teacher_layer) if teacher is not None else None
    if teacher is not None and d.feature_weight > 0 and teacher_dim is None:
        raise TITNError(f"teacher {d.teacher} has no stage {d.teacher_layer!r}; use one of {teacher.stage_names}")
    distill_cfg = d if cfg.kind == "student" else DistillConfig()
    grid, smoothing = getattr(model, "grid", 1), cfg.data.label_smoothing
    return DistillationLoss(distill_cfg, cfg.model.outer_dim, teacher_dim, grid, smoothing).to(device)


def restore(run: Run) -> None:
    """Continue from `last.pt`: weights, optimiser, schedule, lookahead and progress, as they were saved."""
    state = storage.load_checkpoint(run.last_path)
    if state.get("config_hash") != run.cfg.hash():
        raise TITNError(
            f"{run.last_path} belongs to a different config (hash {state.get('config_hash', '?')[:8]} vs "
            f"{run.cfg.hash()[:8]}); use another --run-id or --force to start over"
        )
    for name in ("model", "criterion", "optimizer", "scheduler"):
        getattr(run, name).load_state_dict(state[name])
    if run.lookahead is not None:
        run.lookahead.load_state_dict(state["lookahead"])
    run.progress = {k: state[k] for k in ("epoch", "history", "train_seconds", "wall_seconds")}
    if run.ctx.is_main:
        print(f"[{run.run_id}] resuming after epoch {run.progress['epoch']} from {run.last_path}", flush=True)


def update_host_speed(run: Run, epoch_seconds: float) -> None:
    """Measure the host's matmul speed and its TITN-tiny training speed (`host_probe`, ~5 s: matmul speed alone
    misjudges AMX hosts) again after a long epoch, and keep the fastest seen in this process.

    Other work on the machine only ever slows a measurement, so one taken at (re)start while the cores were busy
    would stamp every later epoch with too slow a host and understate its hours at reference speed; the maximum
    converges on the host's own speed. Short epochs (tests, smoke runs) skip the ~5 s it costs. Probing only at a new
    matmul high was tried and dropped: on a noisy AMX host a restart's first probe read 161 TITN images/s where the
    process before had reached 250, and such a low probe, left standing until a new matmul high, understates a run's
    hours at reference speed; every long epoch pays the ~2%.
    """
    if run.host_gflops is None or epoch_seconds < HOST_SPEED_MIN_EPOCH_SECONDS:
        return
    precision = hardware.cpu_precision_of(run.cfg.train.amp)
    run.host_gflops = max(run.host_gflops, hardware.cpu_speed_in(precision))
    run.host_titn_images_per_s = max(run.host_titn_images_per_s or 0.0, host_probe.titn_train_speed(precision))


def run_epoch(run: Run, epoch: int) -> None:
    """One epoch: train, evaluate on the validation and test splits, record it and checkpoint."""
    t_wall = time.perf_counter()
    sums, seconds = train_epoch(run, epoch)
    if run.lookahead is not None and epoch + 1 == run.cfg.train.epochs:
        run.lookahead.finish(run.model)
    val = run.accuracy(run.splits.x_val, run.splits.y_val)
    test = run.accuracy(run.splits.x_test, run.splits.y_test)
    progress = run.progress
    progress["train_seconds"] += seconds
    progress["wall_seconds"] += time.perf_counter() - t_wall
    update_host_speed(run, seconds)
    seen = max(sums["seen"], 1)
    row = {
        "epoch": epoch + 1,
        "lr": run.optimizer.param_groups[0]["lr"],
        "train_loss": sums["loss"] / seen,
        "train_top1": 100.0 * sums["correct"] / seen,
        **{f"train_{k[5:]}": v / seen for k, v in sorted(sums.items()) if k.startswith("term_")},
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "test_top1": test["top1"],
        "test_top5": test["top5"],
        "epoch_train_seconds": seconds,
        "train_images_per_s": sums["seen"] / seconds,
        "wall_seconds": progress["wall_seconds"],
        **({"host_gflops": run.host_gflops} if run.host_gflops is not None else {}),
        **({"host_titn_images_per_s": run.host_titn_images_per_s} if run.host_titn_images_per_s else {}),
    }
    progress["history"].append(row)
    progress["epoch"] = epoch + 1
    if run.ctx.is_main:
        print(f"[{run.run_id}] epoch {epoch + 1}/{run.cfg.train.epochs} loss {row['train_loss']:.4f} "
              f"val {val['top1']:.2f} test {test['top1']:.2f}/{test['top5']:.2f} "
              f"({row['train_images_per_s']:.0f} img/s)", flush=True)  # fmt: skip
        _save_epoch(run)


def train_epoch(run: Run, epoch: int) -> tuple[dict, float]:
    """The optimiser steps of one epoch, re-seeded from (seed, epoch) so a resumed run repeats them exactly.
    Returns the loss/accuracy sums over all processes and the seconds spent."""
    cfg, ctx = run.cfg, run.ctx
    global_seed, data_seed = _epoch_seeds(cfg.train.seed, epoch)
    torch.manual_seed(global_seed)
    gen = torch.Generator().manual_seed(data_seed)
    run.step_module.train()
    if hasattr(run.model, "start_epoch"):  # per-epoch schedules inside the model (fastcnn freezes its whitening bias)
        run.model.start_epoch(epoch)
    feature_layer = cfg.distill.teacher_layer if run.criterion.projector is not None else None
    sums: dict[str, float] = {"loss": 0.0, "correct": 0, "seen": 0}
    t_train = time.perf_counter()
    bar = tqdm(
        batches(len(run.splits.y_train), cfg.train.batch_size, gen, drop_last=True),
        total=run.steps_per_epoch,
        desc=f"{run.run_id} epoch {epoch + 1}/{cfg.train.epochs}",
        disable=None if cfg.progress and ctx.is_main else True,
        leave=False,
    )
    for step, idx in enumerate(bar):
        x, y = run.augment(run.splits.x_train[idx].to(run.device), run.splits.y_train[idx].to(run.device), gen)
        x, y = ctx.shard(x), ctx.shard(y)  # the same global batch everywhere; each process takes its slice
        with run.autocast():
            t_out = teacher_output(run, idx, x, feature_layer)
            loss, terms, cls_logits = run.step_module(x, y, t_out)
        if not ctx.all_finite(loss):
            raise TITNError(_nan_message(loss, epoch, step, run.last_path, run.progress["epoch"]))
        optimizer_step(run, loss)
        hard = y if y.ndim == 1 else y.argmax(dim=1)
        sums["loss"] += loss.item() * len(y)
        sums["correct"] += int((cls_logits.argmax(dim=1) == hard).sum())
        sums["seen"] += len(y)
        for k, v in terms.items():
            sums[f"term_{k}"] = sums.get(f"term_{k}", 0.0) + v.item() * len(y)
        bar.set_postfix(loss=f"{sums['loss'] / sums['seen']:.3f}")
    return ctx.sum(sums), time.perf_counter() - t_train


def teacher_output(run: Run, idx: torch.Tensor, x: torch.Tensor, feature_layer: str | None) -> TeacherOutput | None:
    """What the teacher says about this batch: looked up when cached, else a forward pass on the augmented batch."""
    if run.teacher_logits is not None:
        return TeacherOutput(run.ctx.shard(run.teacher_logits[idx].to(run.device)), None)
    return teacher_forward(run.teacher, x, feature_layer) if run.teacher is not None else None


def optimizer_step(run: Run, loss: torch.Tensor) -> None:
    """Backward, clip, step, schedule, and the lookahead pull every few steps."""
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.cfg.train.grad_clip > 0:
        nn.utils.clip_grad_norm_([p for _, p in run.named], run.cfg.train.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    if run.lookahead is not None:
        run.lookahead.after_step(run.model, run.scheduler.last_epoch)


def finish(run: Run, size: dict, env: dict) -> RunResult:
    """The final metrics (last epoch and validation-selected best), test predictions, a teacher's published
    weights, and metrics.json last: its presence is what marks a run complete."""
    cfg, ctx = run.cfg, run.ctx
    hist = pd.DataFrame(run.progress["history"])
    metrics = final_metrics(run, hist, size, env)
    if cfg.train.tta != "none":  # scored once, on the final model, and reported beside the plain number
        tta = run.accuracy(run.splits.x_test, run.splits.y_test, cfg.train.tta)
        metrics |= {"tta": cfg.train.tta, "test_top1_tta": tta["top1"], "test_top5_tta": tta["top5"]}
    if ctx.is_main:
        # the final model's test predictions, so confusion matrices and prediction grids need no checkpoint
        logits = predict(run.model, run.splits.x_test, cfg.data.dataset, cfg.train.eval_batch_size, run.device,
                         run.autocast)  # fmt: skip
        storage.atomic_write_npz(run.run_dir / PREDICTIONS_FILE, top5=top_classes(logits).numpy())
        if cfg.kind == "student" and cfg.model.inner:
            save_attention_maps(run)
        if cfg.kind == "teacher":
            (run.run_dir / TEACHER_WEIGHTS).unlink(missing_ok=True)  # a retrained teacher replaces the old weights
            publish_teacher_weights(run.ckpt_dir, run.run_dir)
        storage.atomic_write_json(run.run_dir / "metrics.json", metrics)  # written last: its presence means complete
    ctx.barrier()
    return RunResult(run.run_id, run.run_dir, run.ckpt_dir, cfg, metrics, hist)


def save_attention_maps(run: Run) -> None:
    """The final model's attention maps of a few test images, saved while its checkpoint is on this machine: the
    attention chapter and notebook draw them from results/ once the checkpoint is gone (checkpoints stay local).
    Optional: a failure here warns and leaves the finished run complete."""
    try:
        model, cfg = model_from_checkpoint(storage.load_checkpoint(run.ckpt_dir / "last.pt"))
        splits, path = run.splits, run.run_dir / attention.FILE
        attention.save_test_maps(model, splits.x_test, splits.y_test, cfg.data.dataset, path, attention.DEFAULT_IMAGES)
    except Exception as e:  # noqa: BLE001 - the maps are a convenience; the run's metrics must still be written
        message = f"attention maps not saved ({e}); notebooks/attention.ipynb computes them from the checkpoint"
        warnings.warn(message, stacklevel=2)


def final_metrics(run: Run, hist: pd.DataFrame, size: dict, env: dict) -> dict:
    """metrics.json: what the run was, its final and best-on-validation accuracy, its cost and its machine."""
    cfg, splits, device = run.cfg, run.splits, run.device
    student = cfg.kind == "student"
    last, best = hist.iloc[-1], selected_epoch(hist.to_dict("records"), cfg.train.select)  # best: what best.pt holds
    return {
        "run_id": run.run_id,
        "config_hash": cfg.hash(),
        "complete": True,
        "kind": cfg.kind,
        "dataset": cfg.data.dataset,
        "data_variant": splits.variant,
        "data_sha256": splits.sha256,
        "model": cfg.model.preset if student else cfg.distill.teacher,
        "inner": cfg.model.inner if student else None,
        "kd": kd_label(cfg.distill) if student else None,
        "teacher": cfg.distill.teacher if student else None,
        **run.teacher_info,
        "profile": cfg.profile,
        "seed": cfg.train.seed,
        "epochs": cfg.train.epochs,
        "train_images": splits.train_images,
        "test_images": len(splits.y_test),
        "approximate_test_images": splits.approximate_test_images,  # each can move test top-1 by 100/test_images
        "test_top1": float(last["test_top1"]),
        "test_top5": float(last["test_top5"]),
        "val_top1": float(last["val_top1"]),
        "best_epoch": int(best["epoch"]),
        "best_val_top1": float(best["val_top1"]),
        "best_test_top1": float(best["test_top1"]),
        "best_test_top5": float(best["test_top5"]),
        **size,
        "train_seconds": run.progress["train_seconds"],
        "wall_seconds": run.progress["wall_seconds"],
        "train_images_per_s": float(hist["train_images_per_s"].mean()),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "hardware": hardware.describe(device),
        "amp": cfg.train.amp,
        "world_size": run.ctx.world_size,
        "environment": env,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def evaluate_checkpoint(path: str | Path, data_dir: str | None = None, device: str = "auto") -> dict:
    """Test-split top-1/top-5 of a saved model (best.pt or last.pt) on its own dataset."""
    state = storage.load_checkpoint(path)
    model, cfg = model_from_checkpoint(state)
    dev = pick_device(device)
    arrays = load_arrays(cfg.data.dataset, data_dir or cfg.data.data_dir)
    splits = make_splits(arrays, cfg.data)
    model.to(dev)
    autocast = autocast_factory(dev, cfg.train.amp)  # the run's precision: scores match its metrics.json
    result = evaluate(model, splits.x_test, splits.y_test, cfg.data.dataset, cfg.train.eval_batch_size, dev, autocast)
    return {
        "checkpoint": str(path),
        "run_id": state.get("run_id"),
        "epoch": state.get("epoch"),
        "dataset": cfg.data.dataset,
        "data_variant": splits.variant,
        **result,
    }
