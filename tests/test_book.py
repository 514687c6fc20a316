"""The book as a reader sees it: built from a fresh smoke plan's results, opened in headless Chromium."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pandas as pd
import pytest
from browser import chromium, screenshot_dir

from titn_core import book, results
from titn_core.ablations import CONTRASTS, FAMILIES
from titn_core.book import STUDENT
from titn_core.experiments import load_plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built_book(smoke_plan, tmp_path_factory) -> Path:
    where, summary = smoke_plan
    assert summary["failed"] == []
    out = tmp_path_factory.mktemp("book")
    # the committed benchmark records, so the efficiency chapter's tables are rendered too
    shutil.copytree(ROOT / "results" / "benchmarks", Path(where["results_dir"]) / "benchmarks", dirs_exist_ok=True)
    env = {**os.environ, "TITN_RESULTS_DIR": where["results_dir"]}
    jupyter_book = str(Path(sys.executable).parent / "jupyter-book")
    jb = [jupyter_book, "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"]
    proc = subprocess.run(jb, capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return out / "_build" / "html"


def test_book_tables_come_from_results(smoke_plan):
    where, _ = smoke_plan
    os.environ["TITN_RESULTS_DIR"] = where["results_dir"]
    try:
        runs = book.main_runs()
        head = book.headline(runs)
    finally:
        del os.environ["TITN_RESULTS_DIR"]
    assert {"teacher", "TITN + KD (paper)", "TITN (no KD)"} <= set(runs["role"])
    mnist = head[head["dataset"] == "MNIST"].iloc[0]
    student = runs[runs["role"] == "TITN + KD (paper)"].iloc[0]
    assert mnist["ours top-1"] == f"{student['test_top1']:.2f}" and mnist["paper top-1"] == 99.56
    assert "smoke profile" in mnist["budget"] and mnist["data"] == "MNIST (exact)"
    assert head[head["dataset"] == "CIFAR-100"].iloc[0]["ours top-1"] == "not run"


def test_budget_table_sets_the_ablations_shorter_runs_beside_the_main_ones(smoke_plan):
    where, _ = smoke_plan
    table = book.budget_table(results.load(where["results_dir"]), "mnist", "smoke")
    student = table[table["role"] == "TITN + KD (paper)"]
    assert list(student["epochs"]) == [1, 3], "the inner ablation's 1-epoch run and the 3-epoch main run"
    assert set(table["role"]) == {"TITN + KD (paper)", "TITN (no KD)"}, "the ViT ablation variant is not the ViT role"
    assert (table["train s/epoch (median)"] > 0).all(), "each schedule's typical epoch, beside its total hours"


def test_inner_note_states_the_inner_transformers_gain_and_its_cost_in_wall_time():
    runs = pd.DataFrame(
        {
            "role": ["TITN + KD (paper)", "TITN (no KD)", "TITN (no KD)", "ViT (no KD)"],
            "dataset": "cifar10",
            "profile": "cpu",
            "seed": [0, 0, 1, 0],
            "test_top1": [80.0, 74.0, 76.0, 76.5],
            "wall_seconds": [5000.0, 5000.0, 5000.0, 2000.0],
        }  # fmt: skip
    )
    note = book.inner_note(runs, "cifar10")
    assert "TITN 75.00 ± 1.41 against ViT 76.50" in note and "-1.50 points" in note and "2.5x" in note
    assert book.inner_note(runs[runs["role"] != "ViT (no KD)"], "cifar10") == ""


def test_typical_epoch_time_ignores_one_epoch_slowed_by_other_work(tmp_path):
    paths = []
    for seed, seconds in enumerate([[100.0, 102.0, 1500.0], [98.0, 101.0, 99.0]]):
        run_dir = tmp_path / f"run{seed}"
        run_dir.mkdir()
        pd.DataFrame({"epoch": [1, 2, 3], "epoch_train_seconds": seconds}).to_csv(run_dir / "history.csv", index=False)
        paths.append(str(run_dir))
    runs = pd.DataFrame({"path": paths, "seed": [0, 1]})
    assert book._median_epoch_seconds(runs) == 100.5, "median of the six epochs; the 1500 s epoch does not count"


def test_equal_compute_note_pits_the_titn_against_the_vit_schedule_of_closest_training_hours(tmp_path):
    def run(role: str, epochs: int, epoch_seconds: float, top1: float) -> dict:
        path = tmp_path / f"{role}-{epochs}"
        path.mkdir()
        pd.DataFrame({"epoch_train_seconds": [epoch_seconds] * 3}).to_csv(path / "history.csv", index=False)
        return {"dataset": "cifar10", "profile": "cpu", "kind": "student", "seed": 0, "epochs": epochs,
                "config_hash": book._role_hash("cifar10", "cpu", role, 0, epochs), "path": str(path),
                "test_top1": top1, "wall_seconds": epoch_seconds * epochs}  # fmt: skip

    main = [run("TITN (no KD)", 30, 120.0, 75.0), run("ViT (no KD)", 30, 60.0, 76.0)]
    index = pd.DataFrame(main + [run("ViT (no KD)", 60, 60.0, 78.5), run("ViT (no KD)", 10, 60.0, 66.0)])
    note = book.equal_compute_note(index, "cifar10", "cpu")
    assert "TITN (no KD), 30 epochs, 75.00 in 1.00 h" in note and "ViT (no KD), 60 epochs, 78.50 in 1.00 h" in note
    assert "TITN minus ViT -3.50 points" in note
    assert book.equal_compute_note(pd.DataFrame(main), "cifar10", "cpu") == "", "equal epochs only: nothing to add"


def test_headline_sentence_states_each_reached_number_and_names_what_was_not_run():
    table = pd.DataFrame(
        {
            "dataset": ["MNIST", "CIFAR-10", "CIFAR-100"],
            "data": ["MNIST (exact)", "CIFAR-10 (JPEG-q75)", "-"],
            "ours top-1": ["99.54 ± 0.01", "80.39 ± 0.98", "not run"],
        }  # fmt: skip
    )
    assert book.headline_sentence(table, 14) == (
        "Our distilled TITN reaches 99.54 ± 0.01 % on MNIST (exact) and 80.39 ± 0.98 % on CIFAR-10 (JPEG-q75), "
        "from 14 completed runs in the main comparison; CIFAR-100 has not been run yet (see its chapter)."
    )
    nothing = table.assign(**{"ours top-1": "not run"})
    assert book.headline_sentence(nothing, 0).startswith("No distilled TITN run is in results/ yet; MNIST has not")


def test_findings_are_signed_differences_of_the_results():
    runs = pd.DataFrame(
        {
            "role": ["TITN + KD (paper)", "TITN (no KD)", "teacher"],
            "dataset": "mnist",
            "profile": "cpu",
            "seed": 0,
            "test_top1": [99.5, 99.0, 99.6],
            "data_variant": "MNIST (exact)",
        }  # fmt: skip
    )
    text = book.findings(runs)
    assert text.startswith("- **MNIST (exact)** (cpu profile): distillation (TITN + KD minus TITN): +0.50 points")
    assert "teacher minus its distilled student: +0.10 points" in text and "inner transformer" not in text, "no ViT"
    assert book.findings(runs[runs["role"] != "TITN + KD (paper)"]) == "", "nothing without a distilled student"


def test_cpu_targets_say_met_or_by_how_much_not_and_flag_overlong_runs():
    runs = pd.DataFrame(
        {
            "role": "TITN + KD (paper)",
            "dataset": ["mnist", "cifar10"],
            "profile": "cpu",
            "seed": 0,
            "test_top1": [99.5, 80.0],
            "wall_seconds": [3600.0, 4 * 3600.0],
            "data_variant": ["MNIST", "C"],
        }  # fmt: skip
    )
    met = book.cpu_targets(runs).set_index("dataset")["met"]
    assert met["MNIST"] == "yes" and met["CIFAR-10"] == "no (-5.00); over the 3 h budget" and met["CIFAR-100"] == "-"


def test_transfer_note_measures_how_much_of_the_teachers_lead_distillation_closed():
    classes = pd.DataFrame(
        {
            "class": ["a", "b", "c"],
            "TITN + KD (paper)": [80.0, 70.0, 90.0],
            "TITN (no KD)": [70.0, 68.0, 89.0],
            "teacher": [90.0, 72.0, 91.0],
        }  # fmt: skip
    )
    classes["KD gain"] = classes["TITN + KD (paper)"] - classes["TITN (no KD)"]
    note = book.transfer_note(classes)
    assert "r = 1.00 over 3 classes" in note and "closed 50% of that gap" in note  # 13 of 26 points
    assert book.transfer_note(classes.drop(columns="teacher")) == ""


def _ablation_rows(top1_by_variant: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"variant": v, "seed": seed, "test_top1": t, "params": 2e6, "wall_seconds": 600.0, "epochs": 4}
            for v, values in top1_by_variant.items()
            for seed, t in enumerate(values)
        ]
    )


def test_ablation_summary_measures_each_variant_against_the_familys_first():
    summary = book.ablation_summary(
        _ablation_rows({"no KD": [98.0, 98.2], "soft": [98.5, 98.5], "paper": [99.0, 99.4]})
    )
    assert list(summary.index) == ["no KD", "soft", "paper"], "the family's order, not sorted"
    assert list(summary["vs no KD"]) == [0.0, 0.4, 1.1] and list(summary["seeds"]) == [2, 2, 2]
    assert summary.loc["paper", "sd"] == pytest.approx(0.28, abs=0.01) and summary.loc["paper", "minutes"] == 10


def test_ablation_note_says_whether_the_best_margin_clears_the_seed_noise():
    clear = book.ablation_note(book.ablation_summary(_ablation_rows({"a": [98.0, 98.2], "b": [99.0, 99.4]})))
    assert "**b** at 99.20, +1.10 points over a" in clear and "clears twice the largest seed SD" in clear
    noisy = book.ablation_note(book.ablation_summary(_ablation_rows({"a": [98.0, 99.0], "b": [98.6, 98.8]})))
    assert "is within twice the largest seed SD of the family (1.42)" in noisy
    single = book.ablation_note(book.ablation_summary(_ablation_rows({"a": [98.0], "b": [98.3]})))
    assert "One seed per variant" in single
    assert "the reference itself" in book.ablation_note(
        book.ablation_summary(_ablation_rows({"a": [99.0], "b": [98.0]}))
    )


def test_contrast_reads_the_inner_family_as_titn_minus_vit_with_and_without_kd():
    rows = _ablation_rows(
        {"TITN (inner on)": [97.5, 97.7], "ViT (inner off)": [95.5, 95.7], "TITN + KD": [99.0], "ViT + KD": [99.1]}
    )
    assert book.contrast("inner", rows) == (
        "Inner transformer (TITN minus ViT), without KD: +2.00 points (97.60 ± 0.14 vs 95.60 ± 0.14; 2 vs 2 runs); "
        "with KD: -0.10 points (99.00 vs 99.10; 1 vs 1 runs)."
    )
    assert book.contrast("inner", _ablation_rows({"a": [1.0]})) == ""
    assert book.contrast("temperature", rows) == "", "a family without pairs has no contrast"


def test_contrast_reads_the_data_family_as_the_kd_gain_per_training_set_size():
    rows = _ablation_rows({"10% data": [90.0], "10% data, KD": [93.0], "100% data": [97.0], "100% data, KD": [97.5]})
    text = book.contrast("data", rows)
    assert text.startswith("Distillation (KD minus no KD), 10% of the training set: +3.00 points")
    assert "100% of the training set: +0.50 points" in text and "25%" not in text, "pairs without runs are left out"


def test_teacher_mix_note_names_the_variants_of_each_teacher_checkpoint():
    rows = _ablation_rows({"T=1": [97.8], "T=4": [96.6], "T=8": [97.3], "no KD": [96.0]})
    rows["run_id"] = ["a", "b", "c", "d"]
    index = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d"],
            "teacher": ["resnet-small"] * 3 + [None],
            "teacher_test_top1": [99.59, 99.62, 99.59, None],
        }
    )
    note = book.teacher_mix_note(rows, index)
    assert "resnet-small scoring 99.59 for T=1, T=8; resnet-small scoring 99.62 for T=4" in note
    index["teacher_test_top1"] = [99.62, 99.62, 99.62, None]
    assert book.teacher_mix_note(rows, index) == "", "one checkpoint: nothing to say"
    index["teacher"] = ["resnet-small", "resnet18", "resnet-small", None]
    index["teacher_test_top1"] = [99.62, 99.7, 99.62, None]
    assert book.teacher_mix_note(rows, index) == "", "the teacher family compares different teachers on purpose"


def test_every_contrast_pairs_variants_of_its_family():
    for family, (_, pairs) in CONTRASTS.items():
        labels = {label for label, _, _ in FAMILIES[family]}
        assert {label for pair in pairs.values() for label in pair} <= labels, family


def test_ablation_digest_gives_each_family_run_its_reading_and_budget():
    distillation = _ablation_rows({"no KD": [97.0, 97.2], "paper": [99.0, 99.2]}).assign(
        family="distillation", dataset="mnist", profile="cpu", data_variant="MNIST (exact)"
    )
    inner = _ablation_rows({"TITN (inner on)": [80.0], "ViT (inner off)": [78.5]}).assign(
        family="inner", dataset="cifar10", profile="cpu", data_variant="CIFAR-10 (JPEG-q75)", epochs=10
    )
    lines = book.ablation_digest(pd.concat([distillation, inner], ignore_index=True)).splitlines()
    assert lines[0].startswith("- *distillation*, MNIST (exact) (cpu profile, 4 epochs, 2 seed(s)): Best: **paper**")
    assert lines[1] == (
        "- *inner*, CIFAR-10 (JPEG-q75) (cpu profile, 10 epochs, 1 seed(s)): Inner transformer (TITN minus ViT), "
        "without KD: +1.50 points (80.00 vs 78.50; 1 vs 1 runs)."
    )
    assert book.ablation_digest(pd.DataFrame()) == ""


def test_families_run_on_two_datasets_are_set_side_by_side_with_their_agreement():
    base = {"family": "distillation", "profile": "cpu", "seed": 0, "params": 1e6, "wall_seconds": 60.0}
    rows = [
        base | {"dataset": d, "data_variant": d.upper(), "epochs": e, "variant": v, "test_top1": top1}
        for d, e, scores in [("mnist", 4, [97.0, 96.0, 99.0]), ("cifar10", 10, [60.0, 66.0, 73.0])]
        for v, top1 in zip(["no KD", "soft", "feature"], scores, strict=True)
    ]  # fmt: skip
    table = pd.DataFrame(rows + [base | {"family": "inner", "dataset": "mnist", "variant": "x", "test_top1": 1.0}])
    across = book.ablation_across_datasets(table)
    assert list(across) == ["distillation"], "a family run on one dataset only has nothing to compare"
    deltas = across["distillation"]
    assert list(deltas.columns) == ["MNIST (4 ep)", "CIFAR10 (10 ep)"]
    assert deltas.loc["soft"].tolist() == [-1.0, 6.0] and deltas.loc["feature"].tolist() == [2.0, 13.0]
    note = book.agreement_note(deltas)
    assert "MNIST (4 ep): **feature**; CIFAR10 (10 ep): **feature**" in note and "+0.50" in note


def test_pending_ablations_lists_the_plans_families_without_a_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    everything = book.pending_ablations()
    assert "distillation on MNIST, 4 epochs" in everything and "inner on CIFAR-10, 10 epochs" in everything
    done = tmp_path / "ablations" / "distillation-mnist-cpu"
    done.mkdir(parents=True)
    (done / "summary.csv").write_text("variant,seed,test_top1\n")
    assert book.pending_ablations() == [f for f in everything if f != "distillation on MNIST, 4 epochs"]


def test_pending_runs_names_the_plans_training_runs_not_yet_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    plan = ROOT / "plans" / "cifar10-long.yaml"
    assert book.pending_runs(plan, "cifar10", "cpu") == [
        "ViT (no KD), 60 epochs, seed 0",
        "TITN + KD (paper), 60 epochs, seed 0",
    ]
    assert book.pending_runs(plan, "mnist", "cpu") == [], "the plan has no MNIST run"
    vit = next(job for job in load_plan(plan, {"results_dir": str(tmp_path)}) if job.parameters.get("model"))
    vit.out_dir.mkdir(parents=True)
    vit.executed_path.write_text("{}")
    vit.record_path.write_text(json.dumps({"complete": True, "key": vit.key}))
    assert book.pending_runs(plan, "cifar10", "cpu") == ["TITN + KD (paper), 60 epochs, seed 0"]


def test_teacher_note_says_when_distilled_runs_learned_from_an_earlier_teacher_checkpoint():
    runs = pd.DataFrame(
        {"dataset": "mnist", "profile": "cpu", "role": ["teacher", STUDENT, STUDENT, "TITN (no KD)"],
         "model": ["resnet-small", "titn-tiny", "titn-tiny", "titn-tiny"], "seed": [0, 0, 1, 0],
         "best_test_top1": [99.59, 99.5, 99.5, 99.0], "teacher_test_top1": [None, 99.62, 99.59, None]}
    )  # fmt: skip
    note = book.teacher_note(runs, "mnist")
    assert (
        "resnet-small teacher's latest training, whose best checkpoint (the one students distil from) scores 99.59"
        in note
    )
    assert "1 of the 2 distilled runs here learned from an earlier checkpoint scoring 99.62" in note
    runs.loc[1, "teacher_test_top1"] = 99.59
    assert book.teacher_note(runs, "mnist") == "", "every run learned from the teacher shown"


def test_ablations_list_each_familys_datasets_in_the_books_order(tmp_path, monkeypatch):
    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    for name in ["distillation-cifar10-cpu", "distillation-mnist-cpu", "inner-mnist-cpu"]:
        (tmp_path / "ablations" / name).mkdir(parents=True)
        (tmp_path / "ablations" / name / "summary.csv").write_text("variant,seed,test_top1\nx,0,1.0\n")
    table = book.ablations()
    assert list(zip(table["family"], table["dataset"], strict=True)) == [
        ("distillation", "mnist"), ("distillation", "cifar10"), ("inner", "mnist"),
    ]  # fmt: skip


def _pages(html: Path) -> list[Path]:
    """The book's content pages: not Sphinx's index/search pages, not redirect stubs (index.html is one: a browser
    navigates away from it while the test reads it)."""
    return sorted(
        p
        for p in html.rglob("*.html")
        if "_static" not in p.parts
        and p.name not in ("genindex.html", "search.html")
        and 'http-equiv="Refresh"' not in p.read_text()[:500]
    )


def test_every_internal_link_and_image_resolves(built_book):
    external = 0
    for page in _pages(built_book):
        text = page.read_text()
        for target in re.findall(r'(?:href|src)="([^"]+)"', text):
            url = urlparse(target)
            if url.scheme in ("http", "https", "mailto"):
                external += 1  # offline machine: external links are counted, not fetched
                continue
            if url.scheme or not url.path:
                continue
            resolved = (page.parent / unquote(url.path)).resolve()
            assert resolved.exists(), f"{page.name}: broken link {target}"
            if url.fragment and resolved.suffix == ".html":
                assert f'id="{url.fragment}"' in resolved.read_text(), f"{page.name}: missing anchor {target}"
    assert external > 0
    redirect = re.search(r'url=([^"]+)"', (built_book / "index.html").read_text())
    assert redirect and (built_book / redirect.group(1)).exists(), "index.html must lead to the overview"


def _offers_the_chapter_as_a_notebook(page, html: Path) -> None:
    """The page's download menu (Jupyter Book's download button) offers the chapter as a valid .ipynb, executed
    (with outputs) when the page shows outputs."""
    page.click("button[aria-label='Download this page']")
    link = page.locator("a.btn-download-notebook-button")
    assert link.is_visible(), f"{html.name}: no .ipynb in the download menu (titn_core.ipynb_download in _config.yml)"
    notebook = Path(unquote(urlparse(link.evaluate("a => a.href")).path))
    assert notebook.name == f"{html.stem}.ipynb", f"{html.name}: the menu offers {notebook.name}"
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    if page.locator(".cell_output").count():
        assert any(cell.get("outputs") for cell in nb.cells), f"{notebook.name} lacks the outputs the page shows"
    page.keyboard.press("Escape")


def test_chromium_renders_pages_without_broken_images_empty_tables_or_errors(built_book, tmp_path):
    shots = screenshot_dir(tmp_path)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for html in _pages(built_book):
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            broken = page.eval_on_selector_all(
                "img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
            )
            assert broken == [], f"{html.name}: broken images {broken}"
            empty = page.eval_on_selector_all(
                "table", "ts => ts.filter(t => t.querySelectorAll('td').length == 0).length"
            )
            assert empty == 0, f"{html.name}: {empty} empty table(s)"
            errors = page.locator(".output.traceback, .output.error, .cell_output .ansi-red-fg").count()
            assert errors == 0, f"{html.name}: {errors} error output(s)"
            assert "Traceback (most recent call last)" not in page.inner_text("main")
            _offers_the_chapter_as_a_notebook(page, html)
            if html.stem in ("intro", "mnist"):
                page.screenshot(path=str(shots / f"{html.stem}.png"), full_page=True)
    assert (shots / "intro.png").stat().st_size > 10_000 and (shots / "mnist.png").stat().st_size > 10_000


def test_dataset_chapter_has_figures_and_the_comparison_table(built_book):
    html = (built_book / "book" / "mnist.html").read_text()
    assert html.count("<img") >= 3, "bars, curves and confusion matrix"
    table = html[html.index("<table") : html.index("</table>")]
    assert "<th" in table and all(f">{role}<" in table for role in ("TITN + KD (paper)", "TITN (no KD)", "teacher"))
    assert "Counting its teacher, the distilled student cost" in html, "distillation priced with the teacher's hours"
    assert "agrees with teacher (%)" in html and "KD gain" in html, "fidelity and per-class tables"


def test_efficiency_chapter_renders_the_committed_benchmarks(built_book):
    html = (built_book / "book" / "efficiency.html").read_text()
    assert "train vs timm TNT" in html and "ours TITN" in html, "the throughput table"
    assert "each at its fastest" in html, "the speed summary"
    assert "explicit ms" in html, "the attention-kernel table"
    assert "KD / no KD" in html, "the distillation-cost table from the smoke runs"
    assert "minutes incl. teacher" in html, "time to accuracy, the distilled student charged for its teacher"
    assert "operator ms/step" in html and "cut needed" in html, "the step profile and what 1.5x would take"
