"""Shared fixtures. Tests read the real data and never download it.

The data folder is $TITN_DATA_DIR, else ~/.cache/titn/data (outside the checkout). On this project's offline
machines the datasets arrive packed in ../shared/data; the first session on a machine unpacks them there once.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from titn_core.profiles import build_config

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATA_DIR = Path(os.environ.get("TITN_DATA_DIR") or Path("~/.cache/titn/data").expanduser())
NEEDED = ("mnist.npz", "cifar10.npz", "cifar100.npz")


def _unpack_shared_data() -> None:
    """Unpack ../shared/data's packed files into DATA_DIR (a few seconds; skipped when already there)."""
    if (SHARED / "unpack.py").is_file():
        subprocess.run([sys.executable, str(SHARED / "unpack.py"), str(DATA_DIR)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def data_dir() -> str:
    if not all((DATA_DIR / name).is_file() for name in NEEDED):
        _unpack_shared_data()
    missing = [name for name in NEEDED if not (DATA_DIR / name).is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not in {DATA_DIR}; set TITN_DATA_DIR to a folder holding them")
    return str(DATA_DIR)


@pytest.fixture
def smoke_config(tmp_path, data_dir):
    """A factory for smoke-profile configs writing into this test's temporary folder."""

    def make(dataset="mnist", kind="student", **kwargs):
        overrides = kwargs.pop("overrides", {})
        cfg = build_config(dataset, "smoke", kind=kind, overrides=overrides, **kwargs)
        cfg.data.data_dir = data_dir
        cfg.results_dir = str(tmp_path / "results")
        cfg.checkpoint_dir = str(tmp_path / "checkpoints")
        cfg.progress = False
        return cfg

    return make


@pytest.fixture(scope="session")
def smoke_plan(tmp_path_factory, data_dir):
    """The smoke plan run once per session through papermill: (locations, run summary)."""
    from titn_core.experiments import load_plan, run_plan

    root = tmp_path_factory.mktemp("smoke-plan")
    where = {"results_dir": str(root / "results"), "checkpoint_dir": str(root / "ckpt"), "data_dir": data_dir}
    return where, run_plan(load_plan("plans/smoke.yaml", where))
