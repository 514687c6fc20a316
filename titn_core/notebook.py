"""Helpers for the papermill notebooks: parameter checking and the one-call analyses they display.

Notebooks hold presentation only; what they compute lives here so it is tested and reused by the book.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from . import storage
from .data import load_arrays, make_splits
from .errors import TITNError
from .metrics import confusion_matrix, predict
from .trainer import RunResult, model_from_checkpoint

PYTHON_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


def check_parameters(namespace: dict, names_before_injection: set[str]) -> dict:
    """Validate papermill parameters against the annotations of the notebook's `parameters` cell.

    Unknown names (injected but never declared) and wrong types fail with one line naming the parameter, the
    expected type and, where known, the accepted values. Returns the parameters as a dict.
    """
    declared = dict(namespace.get("__annotations__", {}))
    new = set(namespace) - names_before_injection
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
                f"pass e.g. -p {name} {_example(expected)}"
            )
        values[name] = value
    return values


def _example(t: type) -> str:
    return {str: "mnist", int: "3", float: "0.5", bool: "True", list: "'[1, 2]'", dict: "'{}'"}[t]


CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "cifar100": [str(i) for i in range(100)],
}


def load_trained(run: RunResult, which: str = "last") -> torch.nn.Module:
    """The run's model: `last` (the reported final model) or `best` (selected on validation)."""
    state = storage.load_checkpoint(Path(run.checkpoint_dir) / f"{which}.pt")
    model, _ = model_from_checkpoint(state)
    return model.eval()


def test_predictions(run: RunResult, which: str = "last") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(uint8 test images, labels, logits) for the run's model on its test split."""
    cfg = run.config
    splits = make_splits(load_arrays(cfg.data.dataset, cfg.data.data_dir), cfg.data)
    model = load_trained(run, which)
    logits = predict(model, splits.x_test, cfg.data.dataset, cfg.train.eval_batch_size, "cpu")
    return splits.x_test, splits.y_test, logits


def per_class_report(labels: torch.Tensor, logits: torch.Tensor, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(confusion matrix as a labelled DataFrame, per-class accuracy table)."""
    names = CLASS_NAMES[dataset]
    cm = confusion_matrix(logits.argmax(1), labels, len(names))
    cm_df = pd.DataFrame(cm.numpy(), index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))
    support = cm.sum(1)
    per_class = pd.DataFrame(
        {"class": names, "images": support.numpy(), "top1": (100.0 * cm.diag() / support.clamp(min=1)).numpy()}
    )
    return cm_df, per_class
