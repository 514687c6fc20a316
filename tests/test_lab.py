"""The notebooks as a person runs them: `make lab` in a clean checkout (results/, no checkpoints/), a notebook opened
in JupyterLab in headless Chromium, its `parameters` cell edited as the README says, Run > Run All Cells."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import Request, urlopen

import pytest
from browser import chromium, screenshot_dir
from jupyter_client.kernelspec import find_kernel_specs

from titn_core.experiments import titn_config
from titn_core.notebook import work_from_repository_root

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
KERNEL_IDLE = "TITN Book (.venv) | Idle"  # the status bar once the project's kernel has started
# done: kernel idle, nothing queued, and every code cell ran or one failed; `errors` are the outputs of failures
RUN_STATE = """panel => {
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
  const errors = [...panel.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent)
    .filter(t => /Traceback \\(most recent call last\\)|^\\w+Error: /m.test(t));
  const idle = !!panel.querySelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]');
  const ran = prompts.length > 0 && prompts.every(t => /\\d/.test(t));
  return {done: idle && !prompts.some(t => t.includes('*')) && (ran || errors.length > 0), ran, errors};
}"""


def test_a_kernel_started_in_notebooks_works_from_the_repository_root(tmp_path, monkeypatch):
    (tmp_path / "titn_core").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    work_from_repository_root()
    assert Path.cwd() == tmp_path, "results/ and checkpoints/ then mean the checkout's, as for the CLI"
    elsewhere = tmp_path / "other" / "notebooks"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    work_from_repository_root()
    assert Path.cwd() == elsewhere, "a notebooks/ folder outside a checkout is left alone"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The repository's tracked files, as a clone has them: every committed result, no checkpoints."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    dest = tmp_path_factory.mktemp("checkout")
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():  # a file deleted but not yet committed is not in a clone either
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab_command(checkout: Path, port: int, token: str) -> list[str]:
    """`make lab` as the README gives it, plus what a test needs: loopback, a token, no network, a self-stop."""
    flags = [
        "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", "--LabApp.extension_manager=readonly",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ServerApp.shutdown_no_activity_timeout=600", "--MappingKernelManager.cull_idle_timeout=600",
    ] + (["--allow-root"] if os.geteuid() == 0 else [])  # fmt: skip
    # -o: use this environment as installed (make test has just done it), never reinstall inside a test
    return ["make", "-s", "-C", str(checkout), "-o", f"{VENV}/.installed", "lab", f"VENV={VENV}",
            "LAB_FLAGS=" + " ".join(flags)]  # fmt: skip


def _api(url: str, token: str, path: str, method: str = "GET") -> dict:
    request = Request(f"{url}/api/{path}", method=method, headers={"Authorization": f"token {token}"})
    with urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else {}


def _wait_until_serving(proc: subprocess.Popen, url: str, token: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"make lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            _api(url, token, "status")
            return
        except OSError:  # not listening yet
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within 60 s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen, url: str, token: str, runtime: Path) -> None:
    """Shut the server and its kernels down; then kill whatever of ours is left (the kernels' command lines name
    this test's runtime folder)."""
    try:
        _api(url, token, "shutdown", method="POST")
        proc.wait(timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(runtime).encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except OSError:
            continue  # ended meanwhile


def _no_news_popup(config_dir: Path) -> None:
    """No "Jupyter news?" pop-up over the screenshots (JupyterLab's user settings live in the config folder)."""
    settings = config_dir / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')


@pytest.fixture(scope="module")
def lab(checkout, data_dir, tmp_path_factory):
    """(url, token) of `make lab` serving the clean checkout, with Jupyter folders of its own; stopped at the end."""
    assert "titn-book" in find_kernel_specs(), "the project's kernel is not registered: run `make env`"
    home = tmp_path_factory.mktemp("jupyter")
    env = {**os.environ, "TITN_DATA_DIR": data_dir, "IPYTHONDIR": str(home / "ipython")}
    # one torch thread: the smoke model gains nothing from two, and on a busy 2-core machine two threads wait on
    # each other (its epoch took 138 s instead of 25 s here while other jobs ran)
    env["OMP_NUM_THREADS"] = "1"
    env |= {f"JUPYTER_{kind}_DIR": str(home / kind.lower()) for kind in ("CONFIG", "DATA", "RUNTIME")}
    _no_news_popup(home / "config")
    port, token = _free_port(), secrets.token_hex(16)
    url, log = f"http://127.0.0.1:{port}", home / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(_lab_command(checkout, port, token), env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        _wait_until_serving(proc, url, token, log)
        yield url, token
    finally:
        _stop(proc, url, token, home / "runtime")


@pytest.fixture
def page():
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        yield page


def open_notebook(page, lab, stem: str):
    """Open notebooks/<stem>.ipynb (its own workspace, so no other tab) and wait for its kernel: the visible panel."""
    url, token = lab
    page.goto(f"{url}/lab/workspaces/{stem}/tree/notebooks/{stem}.ipynb?token={token}")
    page.get_by_text(KERNEL_IDLE).wait_for()
    return page.locator(".jp-NotebookPanel").locator("visible=true")


def edit_parameters(page, panel, lines: list[str]) -> None:
    """As the README says: edit the cell tagged `parameters` (here, assignments added at its end)."""
    panel.locator(".jp-CodeCell", has_text="checkpoint_dir: str =").locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.insert_text("".join(f"\n{line}" for line in lines))
    page.keyboard.press("Escape")


def run_all(page, panel, seconds: int) -> None:
    """Run > Run All Cells, then wait (at most `seconds`) for the kernel to go idle; fail naming any error output."""
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-item[data-command='runmenu:run-all']")
    deadline = time.monotonic() + seconds
    while not (state := panel.evaluate(RUN_STATE))["done"]:
        assert time.monotonic() < deadline, f"the notebook was still running after {seconds} s"
        time.sleep(0.5)
    assert state["errors"] == [], "error output:\n" + "\n".join(state["errors"])[-3000:]
    assert state["ran"], "not every code cell ran"


def shown_figure(panel, code: str):
    """The image output of the code cell containing `code`, scrolled into view; fails unless it has loaded."""
    image = panel.locator(".jp-CodeCell", has_text=code).locator(".jp-OutputArea-output img").first
    image.scroll_into_view_if_needed()
    assert image.evaluate("i => i.complete && i.naturalWidth > 100"), f"the figure of `{code}` did not render"
    return image


def test_train_titn_runs_from_jupyterlab_and_writes_its_results(lab, page, tmp_path):
    results, checkpoints = tmp_path / "results", tmp_path / "checkpoints"
    panel = open_notebook(page, lab, "train_titn")
    # the notebook's defaults are the smoke profile; one epoch keeps it to seconds
    edit_parameters(page, panel, [f'results_dir = "{results}"', f'checkpoint_dir = "{checkpoints}"', "epochs = 1"])
    run_all(page, panel, seconds=150)
    shown_figure(panel, "report.curves")
    page.screenshot(path=str(screenshot_dir(tmp_path) / "lab-train_titn.png"))
    run_dir = results / titn_config(epochs=1).default_run_id()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["profile"], metrics["epochs"], metrics["data_variant"]) == ("smoke", 1, "MNIST (exact)")
    assert (run_dir / "confusion.csv").is_file() and (run_dir / "history.csv").is_file()


def test_attention_shows_the_committed_maps_in_a_clean_checkout(lab, page, checkout, tmp_path):
    run_id = titn_config(profile="cpu", kd="paper").default_run_id()  # the notebook's run for profile cpu
    assert (checkout / "results" / run_id / "attention.npz").is_file(), f"commit results/{run_id}/attention.npz"
    panel = open_notebook(page, lab, "attention")
    edit_parameters(page, panel, ['profile = "cpu"'])  # the committed runs; results_dir stays "results"
    run_all(page, panel, seconds=90)
    assert panel.get_by_text(f"no checkpoint for {run_id} here; showing the maps saved").is_visible()
    shown_figure(panel, "report.attention_overlays")
    page.screenshot(path=str(screenshot_dir(tmp_path) / "lab-attention.png"))
    assert not (checkout / "checkpoints").exists(), "nothing trained: the maps came from results/"
    assert not (checkout / "notebooks" / "results").exists(), "relative folders mean the checkout root"
