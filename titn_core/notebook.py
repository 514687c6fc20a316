"""Helpers for the papermill notebooks: parameter checking and the one-call analyses they display.

Notebooks hold presentation only; what they compute lives here so it is tested and reused by the book.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import attention, storage
from .classes import CLASS_NAMES
from .data import load_arrays, make_splits
from .errors import TITNError
from .metrics import confusion_matrix, predict, top_classes
from .trainer import PREDICTIONS_FILE, RunResult, autocast_factory, model_from_checkpoint, pick_device

PYTHON_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


def check_parameters(namespace: dict, names_before_parameters: set[str]) -> dict:
    """Validate papermill parameters against the annotations of the notebook's `parameters` cell.

    `names_before_parameters` is the notebook's namespace just before that cell (taken there, not inside it, so
    papermill's `--help-notebook` lists only real parameters). Unknown names (injected but never declared) and wrong
    types fail with one line naming the parameter, the expected type and, where known, the accepted values.
    Returns the parameters as a dict. A kernel Jupyter started in notebooks/ first moves to the repository root.
    """
    work_from_repository_root()
    declared = dict(namespace.get("__annotations__", {}))
    new = set(namespace) - names_before_parameters - set(declared)
    unknown = sorted(n for n in new if not n.startswith("_") and not callable(namespace[n]) and n != "params")
    if unknown:
        raise TITNError(f"unknown notebook parameter(s) {', '.join(unknown)}; accepted: {', '.join(sorted(declared))}")
    values = {}
    for name, annotation in declared.items():
        expected = PYTHON_TYPES.get(annotation if isinstance(annotation, str) else annotation.__name__)
        value = namespace[name]
        ok = isinstance(value, expected) and not (expected in (int, float) and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise TITNError(
                f"notebook parameter {name!r} must be {expected.__name__}, got {type(value).__name__} {value!r}; "
                f"pass e.g. {_example(name, expected)}"
            )
        values[name] = value
    return values


def work_from_repository_root() -> None:
    """Jupyter(Lab) starts a kernel in the notebook's folder, but the parameters' relative folders (`results`,
    `checkpoints`) mean the repository root, where the CLI and papermill run: a kernel in a checkout's notebooks/
    moves up to that checkout, so a notebook run from JupyterLab finds and writes the same results/."""
    here = Path.cwd()
    if here.name == "notebooks" and (here.parent / "titn_core").is_dir():
        os.chdir(here.parent)
        print(f"working folder: {here.parent} (the repository root, as for the CLI)")


def _example(name: str, t: type) -> str:
    """papermill's -p reads only numbers, booleans and None, so a list or dict goes in as YAML with -y."""
    if t in (list, dict):
        return f'-y "{name}: {"[0, 1]" if t is list else "{}"}"'
    return f"-p {name} " + {str: "mnist", int: "3", float: "0.5", bool: "True"}[t]


def load_trained(run: RunResult, which: str = "last") -> torch.nn.Module:
    """The run's model: `last` (the reported final model) or `best` (selected on validation)."""
    state = storage.load_checkpoint(Path(run.checkpoint_dir) / f"{which}.pt")
    model, _ = model_from_checkpoint(state)
    return model.eval()


def attention_of(run: RunResult, n_images: int):
    """(uint8 test images, AttentionMaps) of the run's final model: computed from its checkpoint and saved into
    results/ when the checkpoint is here; otherwise the saved maps (a clean checkout has results, no checkpoints)."""
    saved = Path(run.run_dir) / attention.FILE
    if not (Path(run.checkpoint_dir) / "last.pt").exists():
        if saved.exists():
            print(f"no checkpoint for {run.run_id} here; showing the maps saved in {saved}")
            return attention.load(saved)
        raise TITNError(f"{run.run_id} has neither a checkpoint nor {saved}; retrain it with --force")
    cfg = run.config
    splits = make_splits(load_arrays(cfg.data.dataset, cfg.data.data_dir), cfg.data)
    return attention.save_test_maps(load_trained(run), splits.x_test, splits.y_test, cfg.data.dataset, saved, n_images)


def saved_test_predictions(run: RunResult) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(uint8 test images, labels, top-5 predicted classes of the final model), read from the run's results folder
    (the trainer writes them), so a clean checkout draws confusion matrices without checkpoints. A run that predates
    the file gets it from its final checkpoint, once, if that is still on disk."""
    path = Path(run.run_dir) / PREDICTIONS_FILE
    cfg = run.config
    splits = make_splits(load_arrays(cfg.data.dataset, cfg.data.data_dir), cfg.data)
    if not path.exists():
        _predict_from_checkpoint(run, splits.x_test, path)
    with np.load(path) as saved:
        top5 = torch.from_numpy(saved["top5"]).long()
    return splits.x_test, splits.y_test, top5


def _predict_from_checkpoint(run: RunResult, x_test: torch.Tensor, path: Path) -> None:
    last = Path(run.checkpoint_dir) / "last.pt"
    if not last.exists():
        raise TITNError(
            f"{path} is missing (the run predates it) and so is {last}; "
            "retrain it with `python -m titn_core train --force`"
        )
    cfg, device = run.config, pick_device(run.config.device)
    logits = predict(load_trained(run).to(device), x_test, cfg.data.dataset, cfg.train.eval_batch_size, device,
                     autocast_factory(device, cfg.train.amp))  # fmt: skip
    storage.atomic_write_npz(path, top5=top_classes(logits).numpy())


def per_class_report(labels: torch.Tensor, preds: torch.Tensor, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(confusion matrix as a labelled DataFrame, per-class accuracy table) from top-1 predicted classes."""
    names = CLASS_NAMES[dataset]
    cm = confusion_matrix(preds, labels, len(names))
    cm_df = pd.DataFrame(cm.numpy(), index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))
    support = cm.sum(1)
    per_class = pd.DataFrame(
        {"class": names, "images": support.numpy(), "top1": (100.0 * cm.diag() / support.clamp(min=1)).numpy()}
    )
    return cm_df, per_class
