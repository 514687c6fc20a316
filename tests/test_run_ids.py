"""Committed results are found by their config hash, so a new setting must not change the hash of runs without it."""

import json
from pathlib import Path

import pytest

from titn_core.config import RunConfig

RESULTS = Path(__file__).resolve().parents[1] / "results"
CONFIGS = sorted(RESULTS.glob("*/config.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.parent.name for p in CONFIGS])
def test_committed_run_config_still_hashes_to_its_run_id(path):
    saved = json.loads(path.read_text())
    stored = saved.pop("config_hash")
    assert RunConfig.from_dict(saved).hash() == stored
    assert path.parent.name.endswith(stored[:8])


def test_results_hold_committed_runs():
    assert len(CONFIGS) > 10
