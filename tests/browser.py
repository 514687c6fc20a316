"""Headless Chromium for the browser tests (test_book, test_lab): Debian's `chromium` driven by playwright, which
downloads no browser of its own, and where the screenshots go."""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@contextmanager
def chromium() -> Iterator:
    """A playwright Browser on Debian's chromium, closed on exit."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e .[dev]")
    assert Path(CHROMIUM).exists(), "Debian chromium is missing: apt-get install chromium (done by .ci/run)"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir(tmp_path: Path) -> Path:
    """$TITN_SCREENSHOT_DIR (kept for a person to look at) or the test's temporary folder."""
    shots = Path(os.environ.get("TITN_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    return shots
