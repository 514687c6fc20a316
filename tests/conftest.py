"""Shared fixtures. Tests read the real data from ../shared/data (or $TITN_DATA_DIR); they never download."""

import os
from pathlib import Path

import pytest

from titn_core.config import build_config

SHARED_DATA = Path(os.environ.get("TITN_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> str:
    if not (SHARED_DATA / "mnist.npz").is_file():
        pytest.fail(f"real MNIST not found at {SHARED_DATA}; set TITN_DATA_DIR to a folder holding mnist.npz")
    return str(SHARED_DATA)


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
