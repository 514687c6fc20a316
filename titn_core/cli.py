"""Command line: `python -m titn_core {train,teacher,evaluate,models} ...`.

User mistakes (TITNError) print as one line `error: ...` with exit code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from .config import DATASETS, KD_MODES, PROFILES, TEACHERS
from .errors import TITNError
from .profiles import MODEL_PRESETS, build_config

EPILOG = """examples:
  python -m titn_core teacher --dataset mnist --teacher resnet-small --profile cpu
  python -m titn_core train --dataset cifar10 --profile cpu --teacher resnet-small --kd paper
  python -m titn_core train --dataset mnist --profile smoke --set train.epochs=3 --set model.inner=false
  python -m titn_core evaluate --checkpoint checkpoints/<run-id>/best.pt
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="mnist", choices=DATASETS, help="which dataset (default: mnist)")
    p.add_argument(
        "--profile",
        default="cpu",
        choices=PROFILES,
        help="budget: smoke = seconds on a subset (tests), cpu = what 2 cores afford, paper = the paper's recipe",
    )
    p.add_argument("--data-dir", help="folder with <dataset>.npz or torchvision folders (else $TITN_DATA_DIR, ...)")
    p.add_argument("--results-dir", default="results", help="where results/<run-id>/ is written (default: results)")
    p.add_argument("--checkpoint-dir", default="checkpoints", help="where checkpoints/<run-id>/ go")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the model (~1.16x for TITN-tiny in bf16 on 2 EPYC cores)"
    )
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--epochs", type=int, help="override the profile's epoch count")
    p.add_argument("--run-id", help="name of the run folder (default: derived from the config and its hash)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--force", action="store_true", help="start over even if results or a checkpoint exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they are off anyway when piped)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any config field, e.g. --set train.lr=1e-3 --set model.depth=4 --set distill.temperature=2",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m titn_core",
        description="Train and evaluate TITN (Transformer-in-Transformer with knowledge distillation).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a TITN / ViT student, optionally distilled from a teacher")
    _common(tr)
    tr.add_argument("--model", choices=MODEL_PRESETS, help="model preset (default: the profile's); vit-* = no inner")
    tr.add_argument(
        "--teacher",
        choices=TEACHERS,
        help="distil from this teacher (trained first with the same profile if no checkpoint exists)",
    )
    tr.add_argument(
        "--teacher-checkpoint",
        help="use this teacher checkpoint instead of the profile's teacher run "
        "(with --teacher naming its architecture; the run id gets the checkpoint's content hash)",
    )
    tr.add_argument(
        "--kd",
        choices=KD_MODES,
        help="distillation set-up (default: paper when --teacher is given, else none). paper = distillation token "
        "with hard teacher labels + feature matching at the last block",
    )

    te = sub.add_parser("teacher", help="train a CNN teacher with the same trainer")
    _common(te)
    te.add_argument(
        "--teacher",
        choices=TEACHERS,
        help="teacher architecture (default: resnet18 for paper; resnet-small for smoke, and for cpu on MNIST; "
        "fastcnn / fastcnn-wide for cpu on CIFAR-10 / CIFAR-100)",
    )

    ev = sub.add_parser("evaluate", help="test-split top-1/top-5 of a checkpoint")
    ev.add_argument("--checkpoint", required=True, help="a best.pt or last.pt written by train/teacher")
    ev.add_argument("--data-dir", help="data folder (default: as for training)")
    ev.add_argument("--device", default="auto")

    sub.add_parser("models", help="list model presets with parameter and FLOP counts")
    return parser


def _parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise TITNError(f"--set {item!r} needs the form section.field=value, e.g. train.lr=1e-3")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _config_from_args(args) -> object:
    overrides = _parse_sets(args.set)
    if args.seed is not None:
        overrides["train.seed"] = args.seed
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    kind = "teacher" if args.command == "teacher" else "student"
    cfg = build_config(
        dataset=args.dataset,
        profile=args.profile,
        kind=kind,
        model=getattr(args, "model", None),
        teacher=args.teacher,
        kd=getattr(args, "kd", None),
        overrides=overrides,
    )
    cfg.data.data_dir = args.data_dir
    cfg.results_dir, cfg.checkpoint_dir, cfg.device = args.results_dir, args.checkpoint_dir, args.device
    cfg.run_id, cfg.progress, cfg.compile = args.run_id, not args.no_progress, args.compile
    if getattr(args, "teacher_checkpoint", None):
        cfg.distill.teacher_checkpoint = args.teacher_checkpoint
        cfg.run_id = cfg.run_id or _run_id_with_teacher(cfg, Path(args.teacher_checkpoint))
    return cfg


def _run_id_with_teacher(cfg, checkpoint: Path) -> str:
    """The default run id plus the teacher checkpoint's content hash: the checkpoint is not part of the config hash
    (paths differ per machine), so without it two teachers' students would share one run and its cached result."""
    if not checkpoint.is_file():
        raise TITNError(f"teacher checkpoint {checkpoint} does not exist; pass a best.pt written by `teacher`")
    return f"{cfg.default_run_id()}-t{hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:8]}"


def _models_table() -> str:
    from .complexity import count_flops, count_params
    from .trainer import build_model

    lines = [f"{'preset':<12} {'dataset':<9} {'params':>10} {'GFLOPs':>8}"]
    for name in MODEL_PRESETS:
        for ds in ("mnist", "cifar10"):
            cfg = build_config(ds, "cpu", model=name)
            model = build_model(cfg)
            lines.append(
                f"{name:<12} {ds:<9} {count_params(model):>10,} {count_flops(model, cfg.image_shape) / 1e9:>8.3f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "models":
            print(_models_table())
            return 0
        if args.command == "evaluate":
            from .trainer import evaluate_checkpoint

            print(json.dumps(evaluate_checkpoint(args.checkpoint, args.data_dir, args.device), indent=2))
            return 0
        from .trainer import train

        cfg = _config_from_args(args)
        result = train(cfg, resume=args.resume, force=args.force)
        m = result.metrics
        print(
            f"{result.run_id}: test top-1 {m['test_top1']:.2f}% top-5 {m['test_top5']:.2f}% on {m['data_variant']} "
            f"({m['epochs']} epochs, {m['wall_seconds'] / 60:.1f} min on {m['device']}) -> {result.run_dir}"
        )
        return 0
    except TITNError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
