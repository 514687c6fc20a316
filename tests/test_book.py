"""The book as a reader sees it: built from a fresh smoke plan's results, opened in headless Chromium; the tables
its chapters make from results/; and the rule that no chapter or book helper types in a result."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import numpy as np
import pandas as pd
import pytest
from browser import chromium, screenshot_dir

from titn_core import book, book_budget, paper, reference_machine, results
from titn_core import book_ablations as ab
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


# --- no typed-in results -------------------------------------------------------------------------------------------

BOOK_MODULES = [
    "book.py", "book_budget.py", "book_ablations.py", "book_provenance.py", "benchmark_tables.py", "report.py"
]  # fmt: skip
# numbers a chapter's prose may type that match the rule below but are not results, each with why
NOT_RESULTS = {
    10.0: "the training-set fraction the data-steps ablation repeats (a setting, ablations chapter)",
    0.01: "what one test image of 10 000 is worth, in points (limitations chapter)",
}
NUMBER = re.compile(r"(?<![\w.])([+\-−]?)(\d+(?:\.\d+)?)(%|\s*points?\b)?")  # "top-5 %" is a name, not a result


def _prose(markdown: str) -> str:
    """A chapter without what is not prose typed by its writer: front matter, code cells and blocks, inline code,
    math, link targets, glue roles (their numbers come from results/), arXiv ids and version numbers."""
    text = re.sub(r"\A---\n.*?\n---\n", "", markdown, flags=re.S)
    for pattern in [r"```.*?```", r"\{glue[^}]*\}`[^`]*`", r"`[^`\n]*`", r"\$\$.*?\$\$", r"\$[^$\n]+\$",
                    r"\]\([^)]*\)", r"arXiv \d{4}\.\d{4,5}", r"\d+\.\d+\.\d+"]:  # fmt: skip
        text = re.sub(pattern, " ", text, flags=re.S)
    return text


def _result_like(text: str) -> list[str]:
    """Numbers that read as a result: any number with % or "points", a signed decimal (a difference), or a decimal
    between 50 and 100 (an accuracy) -- unless it is one of the paper's or the project's own numbers in
    titn_core/paper.py, or a setting listed in NOT_RESULTS."""
    allowed = paper.claimed_numbers() | set(NOT_RESULTS)
    found = []
    for sign, value, unit in NUMBER.findall(text):
        decimal = "." in value
        if (unit or (sign and decimal) or (decimal and 50 <= float(value) <= 100)) and round(
            float(value), 2
        ) not in allowed:
            found.append(sign + value + unit)
    return found


def _code_cells(markdown: str) -> list[str]:
    """The chapter's code cells as Python, IPython magics left out."""
    cells = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", markdown, flags=re.S)
    return ["\n".join(line for line in cell.splitlines() if not line.startswith(("%", ":"))) for cell in cells]


def _typed_in_code(source: str) -> list[str]:
    """In Python source: float literals between 50 and 100 (an accuracy typed in) and strings that type a
    percentage or such an accuracy."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, float) and 50 <= node.value <= 100:
            found.append(repr(node.value))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += _result_like(node.value)
    return found


def test_no_chapter_or_book_helper_types_in_a_result():
    """Every result the book shows is computed from results/ when it is built: the only result-like numbers typed
    anywhere are in titn_core/paper.py (the paper's claims, this project's targets and thresholds, set beforehand).

    The rule, over each chapter's prose (book/*.md without code, math, link targets, glue roles, arXiv ids and
    version numbers): a number followed by % or "points", a signed decimal, or a decimal between 50 and 100 must be
    one of paper.py's or a setting in NOT_RESULTS, which says why each is one. Over the chapters' code cells and the
    book's helper modules: no float literal between 50 and 100, and no string typing such a number. Counts (60 000
    images), hyperparameters (alpha 0.5) and sizes are not result-like under this rule and stay allowed."""
    offences = {}
    for chapter in sorted((ROOT / "book").glob("*.md")):
        markdown = chapter.read_text()
        found = _result_like(_prose(markdown)) + [n for cell in _code_cells(markdown) for n in _typed_in_code(cell)]
        if found:
            offences[f"book/{chapter.name}"] = found
    for module in BOOK_MODULES:
        if found := _typed_in_code((ROOT / "titn_core" / module).read_text()):
            offences[f"titn_core/{module}"] = found
    assert offences == {}, (
        f"typed-in result-like numbers (compute them, or glue them from titn_core/paper.py): {offences}"
    )


def test_the_rule_catches_typed_results_and_lets_the_papers_numbers_and_settings_through():
    assert _result_like("TITN reaches 98.38 against 97.1%, +0.70 points") == ["98.38", "97.1%", "+0.70 points"]
    assert _result_like("the paper reports 99.56% and 92.03; 60 000 images; alpha 0.5; a 10% fraction") == []
    assert _result_like(_prose("arXiv 2502.16762, torch 2.14.1, $T=98.5$, `x = 77.5`, {glue:text}`a:.2f`%")) == []
    assert _typed_in_code("x = 99.54\ny = f'{z:.2f}%'\nw = 'gap 1.5 points'") == ["99.54", "1.5 points"]


def test_every_code_cell_of_the_book_can_be_opened_by_the_reader():
    """hide-input (a "show code" toggle), never remove-input: the reader can see how each table was made."""
    for chapter in sorted((ROOT / "book").glob("*.md")):
        assert "remove-input" not in chapter.read_text(), chapter.name


# --- the tables, from the smoke plan's results ----------------------------------------------------------------------


def test_book_tables_come_from_results(smoke_plan):
    where, _ = smoke_plan
    runs = book.main_runs(results.load(where["results_dir"]))
    head = book.headline(runs)
    assert {"teacher", "TITN + KD (hard + feature)", "TITN (no KD)"} <= set(runs["role"])
    mnist = head[head["dataset"] == "MNIST"].iloc[0]
    student = runs[runs["role"] == "TITN + KD (hard + feature)"].iloc[0]
    assert mnist["ours top-1"] == f"{student['test_top1']:.2f}" and mnist["paper top-1"] == 99.56
    assert "smoke profile" in mnist["budget"] and mnist["data"] == "MNIST (exact)"
    assert head[head["dataset"] == "CIFAR-100"].iloc[0]["ours top-1"] == "not run"
    assert mnist["ours top-1 with TTA"] == "-", "the smoke profile scores no test-time augmentation"
    scored = runs.assign(test_top1_tta=runs["test_top1"] + 0.5, tta="flip")
    flipped = book.headline(scored).set_index("dataset").loc["MNIST", "ours top-1 with TTA"]
    assert flipped == f"{student['test_top1'] + 0.5:.2f} (flip)", "a scored run's top-1 in a column of its own"
    roles = book.comparison(scored, "mnist")
    assert roles.loc[roles["test top-1"] != "not run yet", "top-1 with TTA"].str.endswith("(flip)").all()
    table = book.comparison(runs, "cifar100")
    assert (table["test top-1"] == "not run yet").all(), "every role of a dataset without runs, with its command"
    assert table["command"].str.startswith("python -m titn_core").all()


def test_schedules_set_the_ablations_shorter_runs_beside_the_main_ones(smoke_plan):
    where, _ = smoke_plan
    table = book.schedules(results.load(where["results_dir"]), "mnist", "smoke")
    student = table[table["role"] == "TITN + KD (hard + feature)"]
    assert list(student["epochs"]) == [1, 3], "the inner ablation's 1-epoch run and the 3-epoch main run"
    assert set(table["role"]) == {"TITN + KD (hard + feature)", "TITN (no KD)"}, (
        "the ViT ablation variant is not the ViT role"
    )
    assert (table["train s/epoch (median)"] > 0).all(), "each schedule's typical epoch, beside its total hours"


def test_role_means_give_every_role_and_nan_for_one_not_run():
    shown = pd.DataFrame(
        {"role": ["TITN + KD (hard + feature)", "TITN (no KD)", "TITN (no KD)"], "test_top1": [80.0, 74.0, 76.0],
         "wall_seconds": [3600.0, 7200.0, 3600.0]}
    )  # fmt: skip
    means = book.role_means(shown)
    assert list(means.index) == list(book.ROLES)
    assert means.loc["TITN (no KD)"].tolist() == [75.0, 1.5, 2.0] and means.loc["ViT (no KD)"].isna().all()
    assert book.number(means.loc["TITN (no KD)", "test_top1"] - means.loc["ViT (no KD)", "test_top1"]) == "n/a"
    assert book.number(-1.5, "+.2f") == "-1.50" and book.mean_sd(shown["test_top1"][1:]) == "75.00 ± 1.41"


def test_styled_tables_show_missing_values_as_a_dash_and_an_empty_table_as_the_chapters_words():
    html = book.styled(pd.DataFrame({"a": [1.234, np.nan]}), "none", precision=1).to_html()
    assert "1.2" in html and ">-<" in html and "1.234" not in html
    assert book.styled(pd.DataFrame(), "no run yet").data == "*no run yet*"


def test_typical_epoch_time_ignores_one_epoch_slowed_by_other_work(tmp_path):
    paths = []
    for seed, seconds in enumerate([[100.0, 102.0, 1500.0], [98.0, 101.0, 99.0]]):
        run_dir = tmp_path / f"run{seed}"
        run_dir.mkdir()
        pd.DataFrame({"epoch": [1, 2, 3], "epoch_train_seconds": seconds}).to_csv(run_dir / "history.csv", index=False)
        paths.append(str(run_dir))
    runs = pd.DataFrame({"path": paths, "seed": [0, 1]})
    assert book.median_epoch_seconds(runs) == 100.5, "median of the six epochs; the 1500 s epoch does not count"


def test_equal_compute_pits_the_titn_against_the_vit_schedule_of_closest_training_hours(tmp_path):
    def run(role: str, epochs: int, epoch_seconds: float, top1: float) -> dict:
        path = tmp_path / f"{role}-{epochs}"
        path.mkdir()
        pd.DataFrame({"epoch_train_seconds": [epoch_seconds] * 3}).to_csv(path / "history.csv", index=False)
        return {"dataset": "cifar10", "profile": "cpu", "kind": "student", "seed": 0, "epochs": epochs,
                "config_hash": book._role_hash("cifar10", "cpu", role, 0, epochs), "path": str(path),
                "test_top1": top1, "wall_seconds": epoch_seconds * epochs}  # fmt: skip

    main = [run("TITN (no KD)", 30, 120.0, 75.0), run("ViT (no KD)", 30, 60.0, 76.0)]
    ablation = run("ViT (no KD)", 10, 60.0, 66.0)  # the ablations train alike but skip test-time augmentation
    untested = book._student_role_config("cifar10", "cpu", "ViT (no KD)", 0, 10)
    untested.train.tta = "none"
    assert untested.hash() != ablation["config_hash"], "the cpu profile scores CIFAR with flip TTA"
    ablation["config_hash"] = untested.hash()
    index = pd.DataFrame(main + [run("ViT (no KD)", 60, 60.0, 78.5), ablation])
    assert 10 in book.schedules(index, "cifar10", "cpu")["epochs"].tolist(), "the ablation's run is a schedule"
    equal = book.equal_compute(book.schedules(index, "cifar10", "cpu"), main_epochs=30)
    assert equal[["role", "epochs", "train h"]].values.tolist() == [["TITN (no KD)", 30, 1.0], ["ViT (no KD)", 60, 1.0]]
    assert equal["top1"].iloc[0] - equal["top1"].iloc[-1] == -3.5
    assert book.equal_compute(book.schedules(pd.DataFrame(main), "cifar10", "cpu"), 30).empty, "equal epochs only"


def test_cpu_targets_say_met_or_not_by_how_much_and_flag_overlong_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / reference_machine.REFERENCE_RECORDS["bf16"]).write_text('{"matmul_peak_flops": 800e9}')
    runs = pd.DataFrame(  # CIFAR-100: 4 h on a host half as fast as the reference machine is 2 h there
        {"role": "TITN + KD (hard + feature)", "dataset": ["mnist", "cifar10", "cifar100"], "profile": "cpu", "seed": 0,
         "test_top1": [99.7, 80.0, 60.0], "wall_seconds": [3600.0, 4 * 3600.0, 4 * 3600.0],
         "speed_gflops": [None, None, 400.0], "speed_precision": [None, None, "bf16"], "device": "cpu"}
    )  # fmt: skip
    table = book_budget.cpu_targets(runs).set_index("dataset")
    assert table.loc["MNIST", ["target met", "within 3 h"]].tolist() == ["yes", "yes"]
    assert table.loc["CIFAR-10", ["reached minus target", "target met", "within 3 h"]].tolist() == [-12.0, "no", "no"]
    assert table.loc["CIFAR-10", "at reference speed (h)"] == "-", "no measured host speed: judged as measured"
    hours = ["longest run (h)", "at reference speed (h)", "within 3 h"]
    assert table.loc["CIFAR-100", hours].tolist() == [4.0, 2.0, "yes"]
    assert table.loc["CIFAR-100", "median epoch x epochs, at reference speed (h)"] == "-", "no history to read"


def test_cpu_targets_project_a_run_that_shared_its_cores_from_its_median_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / reference_machine.REFERENCE_RECORDS["bf16"]).write_text('{"matmul_peak_flops": 800e9}')
    run_dir = tmp_path / "run"
    run_dir.mkdir()  # six half-hour epochs, the third slowed to 1.5 h by other work on the machine
    pd.DataFrame({"epoch": range(1, 7), "wall_seconds": [1800, 3600, 9000, 10800, 12600, 14400]}).to_csv(
        run_dir / "history.csv", index=False
    )
    runs = pd.DataFrame(
        {"role": "TITN + KD (hard + feature)", "dataset": ["cifar10"], "profile": "cpu", "seed": 0, "test_top1": [90.0],
         "wall_seconds": [14400.0], "speed_gflops": [400.0], "speed_precision": ["bf16"], "device": "cpu",
         "path": [str(run_dir)]}
    )  # fmt: skip
    row = book_budget.cpu_targets(runs).set_index("dataset").loc["CIFAR-10"]
    assert row["at reference speed (h)"] == 2.0, "4 h measured on a host half the reference's speed"
    assert row["median epoch x epochs, at reference speed (h)"] == 1.5, "6 epochs of 0.5 h, at twice the speed"


def test_teacher_table_gives_training_pflops_and_judges_the_goal_with_tta_at_reference_speed(tmp_path, monkeypatch):
    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / reference_machine.REFERENCE_RECORDS["bf16"]).write_text('{"matmul_peak_flops": 800e9}')
    teacher = {"kind": "teacher", "dataset": "cifar10", "model": "fastcnn", "profile": "cpu", "data_variant": "C10",
               "seed": 0, "epochs": 10, "flops": 250e6, "train_images": 48000, "train_images_per_s": 300.0,
               "machine": "EPYC", "speed_precision": "bf16", "device": "cpu", "test_top1": 93.5,
               "test_top1_tta": 94.1}  # fmt: skip
    runs = pd.DataFrame(  # 1.5 h on a host half the reference's speed is 0.75 h there; no speed: as measured
        [teacher | {"wall_seconds": 5400.0, "speed_gflops": 400.0},
         teacher | {"wall_seconds": 5400.0, "speed_gflops": None},
         teacher | {"wall_seconds": 3240.0, "speed_gflops": None},
         teacher | {"wall_seconds": 1800.0, "speed_gflops": 800.0, "test_top1_tta": 93.9},
         teacher | {"wall_seconds": 1800.0, "speed_gflops": None, "device": "NVIDIA A100"}]
    )  # fmt: skip
    table = book_budget.teacher_table(runs, "cifar10")
    assert table["training PFLOPs"].tolist() == [0.36] * 5, "3 x 250 MFLOPs x 48,000 images x 10 epochs"
    assert table["at reference speed (h)"].iloc[0] == 0.75 and table["at reference speed (h)"].iloc[1:3].isna().all()
    assert table[["images/s", "wall h"]].iloc[2].tolist() == [300, 0.9]
    assert table["seed"].tolist() == [0] * 5
    # TTA scores the goal; an unmeasured CPU run is judged by its wall hours; a GPU run not at all
    assert table["94 within 1 h"].tolist() == ["yes", "no", "yes", "no", "-"]
    cifar100 = book_budget.teacher_table(runs.assign(dataset="cifar100"), "cifar100")
    assert "94 within 1 h" not in cifar100, "no goal there"


def test_scale_table_sets_our_students_compute_beside_the_published_recipes_and_the_paper():
    """Published rows are priced from their MACs (x2 FLOPs) over 50,000 images x epochs; ours from the runs, mean over
    seeds, one row per role and dataset; the paper's row has its top-1 and no compute; teachers stay out."""
    from titn_core import book_budget, paper

    student = {"dataset": "cifar10", "profile": "cpu", "role": "TITN + KD (hard + feature)", "flops": 200e6,
               "train_images": 45_000, "epochs": 80, "params": 1.4e6}  # fmt: skip
    runs = pd.DataFrame([student | {"test_top1": 87.0}, student | {"test_top1": 88.0},
                         student | {"role": "teacher", "test_top1": 94.0}])  # fmt: skip
    table = book_budget.scale_table(runs).set_index(["dataset", "model"])
    lite = table.loc[("CIFAR-10", "ViT-Lite-7/4")]
    assert lite["training PFLOPs"] == round(3 * 2 * 0.239e9 * 50_000 * 200 / 1e15, 1)
    assert lite["test top-1"] == paper.PUBLISHED_SMALL_TRANSFORMERS[0]["cifar10"]
    ours = table.loc[("CIFAR-10", "TITN + KD (hard + feature)")]
    assert (ours["training PFLOPs"], ours["test top-1"], ours["epochs"]) == (2.2, 87.5, 80)
    assert ours["source"] == "this book, cpu profile (2 runs)"
    assert table.loc[("CIFAR-100", "TITN + KD"), "training PFLOPs"] == "-", "the paper reports no compute"
    assert "teacher" not in table.index.get_level_values("model")
    assert len(table.loc["CIFAR-100"]) == len(paper.PUBLISHED_SMALL_TRANSFORMERS) + 1, "no CIFAR-100 student yet"


def test_speed_summary_counts_the_eager_speeds_a_compile_record_measured_beside_the_compiled_ones(
    tmp_path, monkeypatch
):
    """timm's TNT is slower compiled than eager: "each at its fastest" must take its eager speed from the record."""
    from titn_core import benchmark_tables

    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    (tmp_path / "benchmarks").mkdir()
    speeds = {"ours TITN": 220.0, "ours TITN (eager)": 190.0, "timm TNT": 110.0, "timm TNT (eager)": 176.0}
    record = {"amp_bf16": True, "compile": True, "environment": {"cpu": {"name": "EPYC", "cores": 2, "flags": []}},
              "models": {name: {"train_images_per_s": v} for name, v in speeds.items()}}  # fmt: skip
    (tmp_path / "benchmarks" / "throughput-cpu-x-bf16-compile.json").write_text(json.dumps(record))
    table = benchmark_tables.speed_summary().set_index("setting")["speed-up"]
    assert table["bf16 + compile"] == 2.0 and table["bf16"] == round(190 / 176, 2)
    assert table["each at its fastest (ours: bf16 + compile; timm: bf16)"] == 1.25


def test_speed_summary_groups_machines_and_judges_each_against_the_goal(tmp_path, monkeypatch):
    """Records of two CPU kinds (written in file-name order) stay apart, and each gets its own verdict."""
    from titn_core import benchmark_tables

    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    (tmp_path / "benchmarks").mkdir()
    for name, ours in [("b-xeon", 160.0), ("a-epyc", 120.0), ("c-xeon", 150.0)]:
        cpu = {"name": name.split("-")[1], "cores": 2, "flags": []}
        models = {"ours TITN": {"train_images_per_s": ours}, "timm TNT": {"train_images_per_s": 100.0}}
        record = {"amp_bf16": name != "c-xeon", "compile": False, "environment": {"cpu": cpu}, "models": models}
        (tmp_path / "benchmarks" / f"throughput-cpu-{name}.json").write_text(json.dumps(record))
    summary = benchmark_tables.speed_summary()
    machines = list(summary["machine"])
    assert machines == sorted(machines), "one machine's rows together"
    assert benchmark_tables.fastest_verdicts(summary) == [
        "On epyc, 2 cores, no AVX2, our TITN at its fastest trains 1.20x as fast as timm's TNT at its fastest: "
        "short of the 1.5x goal.",
        "On xeon, 2 cores, no AVX2, our TITN at its fastest trains 1.60x as fast as timm's TNT at its fastest: "
        "at or past the 1.5x goal.",
    ]


def test_a_rerun_benchmark_keeps_its_earlier_runs_and_the_verdict_gives_their_spread(tmp_path, monkeypatch):
    """Writing a record over another of its machine keeps the replaced run (and that one's own earlier runs); the
    fastest row and the verdict give the speed-up's range over all of them."""
    from titn_core import benchmark_records, benchmark_tables

    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    path = tmp_path / "benchmarks" / "throughput-cpu-x-bf16-compile.json"
    path.parent.mkdir()
    for commit, ours in [("a", 150.0), ("b", 160.0), ("c", 140.0)]:
        speeds = {"ours TITN": ours, "ours TITN (eager)": 90.0, "timm TNT": 80.0, "timm TNT (eager)": 100.0}
        record = {"amp_bf16": True, "compile": True, "ratios": {"r": ours / 100},
                  "environment": {"cpu": {"name": "EPYC", "cores": 2, "flags": []}, "git_commit": commit},
                  "models": {name: {"train_images_per_s": v, "params": 1} for name, v in speeds.items()}}  # fmt: skip
        benchmark_records.write(path, record)
    runs = benchmark_records.runs(json.loads(path.read_text()))
    assert [run["git_commit"] for run in runs] == ["c", "b", "a"], "newest first"
    assert runs[2]["models"]["ours TITN"] == {"train_images_per_s": 150.0} and runs[2]["ratios"] == {"r": 1.5}
    summary = benchmark_tables.speed_summary()
    fastest = summary[summary["setting"].str.startswith("each at its fastest")].iloc[0]
    assert (fastest["speed-up"], fastest["runs"], fastest["range over runs"]) == (1.4, 3, "1.40-1.60")
    assert benchmark_tables.fastest_verdicts(summary)[0].endswith(
        "short of the 1.5x goal (3 runs of the benchmark there: 1.40-1.60)."
    )
    # a run of other settings (a file copied in git history) does not count; nor does a corrupt old record's history
    kept = json.loads(path.read_text())
    path.write_text(json.dumps(kept | {"earlier_runs": [*kept["earlier_runs"], runs[0] | {"amp_bf16": False}]}))
    assert len(benchmark_records.comparable_runs(json.loads(path.read_text()))) == 3
    path.write_text("{truncated")
    with pytest.warns(UserWarning, match="earlier runs not kept"):
        benchmark_records.write(path, record)
    assert "earlier_runs" not in json.loads(path.read_text())


def test_step_profile_table_names_the_setup_and_shows_fused_kernels_only_where_compiled(tmp_path, monkeypatch):
    from titn_core import benchmark_tables
    from titn_core.benchmark_tables import MATMUL, VIT

    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    (tmp_path / "benchmarks").mkdir()
    kinds = {
        "eager": {"matmul and convolution": 60.0, "layer norm": 40.0},
        "model.compile() in place": {"matmul and convolution": 50.0, "fused kernels (compiled)": 50.0},
    }
    for i, (mode, ms) in enumerate(kinds.items()):
        vit = {"ms_per_step": {"matmul and convolution": 25.0}}
        record = {"amp_bf16": True, "compile_mode": mode, "models": {"ours TITN": {"ms_per_step": ms}, VIT: vit},
                  "environment": {"cpu": {"name": "EPYC", "cores": 2, "flags": []}}}  # fmt: skip
        (tmp_path / "benchmarks" / f"step-profile-cpu-{i}.json").write_text(json.dumps(record))
    table = benchmark_tables.step_profile_table().query("model == 'ours TITN'").set_index("setup")
    assert table.loc["eager", ["layer norm", "fused kernels (compiled)"]].tolist() == ["40%", "-"]
    assert table.loc["compiled", ["fused kernels (compiled)", "layer norm"]].tolist() == ["50%", "-"]
    assert (
        benchmark_tables.kind_ratio(MATMUL, "compiled") == 2.0 and benchmark_tables.kind_ratio(MATMUL, "eager") == 2.4
    )
    assert np.isnan(benchmark_tables.kind_ratio(benchmark_tables.FUSED, "compiled")), "the ViT row has no such kind"


def test_inner_cost_estimate_prices_the_inner_transformer_at_the_outers_rates(tmp_path, monkeypatch):
    """The ViT's step split into matmul and elementwise time, each scaled by the inner transformer's share of that
    work, beside the step-time ratio timed in the same record (none in records from before that timing)."""
    from titn_core import benchmark_tables
    from titn_core.benchmark_tables import MATMUL, VIT
    from titn_core.complexity import block_work
    from titn_core.model import build_titn
    from titn_core.profiles import model_preset

    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    (tmp_path / "benchmarks").mkdir()
    vit = {"ms_per_step": {MATMUL: 100.0, "fused kernels (compiled)": 40.0, "optimiser": 10.0}}
    titn = {"ms_per_step": {MATMUL: 150.0}}
    for name, timed in (("a", {"ours TITN": 300.0, VIT: 200.0}), ("b", {})):
        models = {
            n: m | ({"train_ms_per_step": timed[n]} if timed else {}) for n, m in (("ours TITN", titn), (VIT, vit))
        }
        record = {"amp_bf16": True, "compile_mode": "model.compile() in place", "preset": "titn-tiny",
                  "input": [128, 3, 32, 32], "models": models,
                  "environment": {"cpu": {"name": "EPYC", "cores": 2, "flags": ["avx512_bf16"]}}}  # fmt: skip
        (tmp_path / "benchmarks" / f"step-profile-cpu-{name}.json").write_text(json.dumps(record))
    work = block_work(build_titn(model_preset("titn-tiny", 32), 32, 3, 10), (32, 3, 32))
    flops = work["inner"]["flops"] / work["outer"]["flops"]
    values = work["inner"]["mlp_values"] / work["outer"]["mlp_values"]
    timed, untimed = benchmark_tables.inner_cost_estimate().to_dict("records")
    assert timed["TITN/ViT at the outer's rates"] == round(1 + (100 * flops + 40 * values) / 150, 2)
    assert timed["TITN/ViT measured"] == 1.5 and timed["ViT: elementwise share"] == "27%"
    assert np.isnan(untimed["TITN/ViT measured"])


def test_transfer_measures_how_much_of_the_teachers_lead_distillation_closed():
    classes = pd.DataFrame(
        {"class": ["a", "b", "c"], "TITN + KD (hard + feature)": [80.0, 70.0, 90.0], "TITN (no KD)": [70.0, 68.0, 89.0],
         "teacher": [90.0, 72.0, 91.0]}
    )  # fmt: skip
    classes["KD gain"] = classes["TITN + KD (hard + feature)"] - classes["TITN (no KD)"]
    numbers = book.transfer(classes)
    assert numbers["r"] == pytest.approx(1.0) and numbers["closed %"] == 50 and numbers["classes"] == 3  # 13 of 26
    assert np.isnan(book.transfer(classes.drop(columns="teacher"))["r"])


def test_most_confused_lists_off_diagonal_pairs_by_count_with_class_names_and_shares():
    # a CIFAR-100 confusion matrix as older runs wrote it (label ids), cut to its first three classes
    ids = pd.Index(["0", "1", "2"], name="true")
    cm = pd.DataFrame([[90, 6, 4], [1, 80, 19], [30, 0, 70]], index=ids, columns=pd.Index(ids, name="predicted"))
    pairs = book.most_confused(cm, "cifar100", n=3)
    assert pairs[["true class", "taken for", "test images"]].values.tolist() == [
        ["baby", "apple", 30], ["aquarium_fish", "baby", 19], ["apple", "aquarium_fish", 6]
    ]  # fmt: skip
    assert pairs["% of the class"].tolist() == pytest.approx([30.0, 19.0, 6.0])


def test_per_class_names_the_classes_of_runs_that_wrote_label_ids(tmp_path):
    (tmp_path / "per_class.csv").write_text("class,images,top1\n0,100,90.0\n47,100,77.0\n")
    shown = pd.DataFrame({"role": [STUDENT], "seed": [0], "dataset": ["cifar100"], "path": [str(tmp_path)]})
    table = book.per_class(shown)
    assert table["class"].tolist() == ["apple", "maple_tree"] and table[STUDENT].tolist() == [90.0, 77.0]


def test_teacher_checkpoints_show_when_distilled_runs_learned_from_an_earlier_teacher():
    shown = pd.DataFrame(
        {"role": ["teacher", STUDENT, STUDENT, "TITN (no KD)"], "best_test_top1": [99.59, 99.5, 99.5, 99.0],
         "teacher_test_top1": [None, 99.62, 99.59, None]}
    )  # fmt: skip
    table = book.teacher_checkpoints(shown)
    assert table.values.tolist() == [[99.59, 1, "yes"], [99.62, 1, "no"]]
    assert book.teacher_checkpoints(shown[shown["role"] != STUDENT]).empty


def test_pending_runs_name_the_plans_training_runs_not_yet_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    pending = book.pending_runs("cifar10", "cpu")
    assert pending[["role", "epochs", "seed"]].values.tolist() == [["ViT (no KD)", 120, 0]]
    assert set(pending["plan"]) == {"plans/cifar10-long.yaml"}
    mnist = book.pending_runs("mnist", "cpu")
    assert mnist[["role", "epochs", "seed"]].values.tolist() == [["ViT (no KD)", 24, 0], ["ViT (no KD)", 24, 1]]
    assert set(mnist["plan"]) == {"plans/mnist-long.yaml"}
    plan = ROOT / "plans" / "cifar10-long.yaml"
    vit = next(job for job in load_plan(plan, {"results_dir": str(tmp_path)}) if job.parameters.get("model"))
    vit.out_dir.mkdir(parents=True)
    vit.executed_path.write_text("{}")
    vit.record_path.write_text(json.dumps({"complete": True, "key": vit.key}))
    assert book.pending_runs("cifar10", "cpu").empty, "a complete run is no longer pending"


# --- ablations ------------------------------------------------------------------------------------------------------


def _ablation_rows(top1_by_variant: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"variant": v, "seed": seed, "test_top1": t, "params": 2e6, "wall_seconds": 600.0, "epochs": 4,
             "family": "f", "dataset": "mnist", "profile": "cpu", "data_variant": "MNIST (exact)",
             "run_id": f"{v}-s{seed}"}
            for v, values in top1_by_variant.items()
            for seed, t in enumerate(values)
        ]
    )  # fmt: skip


def test_ablation_summary_measures_each_variant_against_the_familys_first(tmp_path, monkeypatch):
    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    for seed, slowed in enumerate((500.0, 900.0)):  # one epoch of each seed shared the machine with other work
        (tmp_path / f"paper-s{seed}").mkdir()
        pd.DataFrame({"epoch_train_seconds": [100.0, slowed, 110.0]}).to_csv(tmp_path / f"paper-s{seed}/history.csv")
    summary = ab.summary(_ablation_rows({"no KD": [98.0, 98.2], "soft": [98.5, 98.5], "paper": [99.0, 99.4]}))
    assert list(summary.index) == ["no KD", "soft", "paper"], "the family's order, not sorted"
    assert list(summary["vs no KD"]) == [0.0, 0.4, 1.1] and list(summary["seeds"]) == [2, 2, 2]
    assert summary.loc["paper", "sd"] == pytest.approx(0.28, abs=0.01) and summary.loc["paper", "minutes"] == 10
    assert summary.loc["paper", "epoch_s"] == 110 and summary["epoch_s"].isna().sum() == 2, "median; NaN without runs"


def test_readings_say_whether_the_best_margin_clears_the_seed_noise():
    def reading(top1: dict) -> pd.Series:
        return ab.readings(_ablation_rows(top1)).iloc[0]

    clear = reading({"a": [98.0, 98.2], "b": [99.0, 99.4]})
    assert (clear["best"], clear["margin"], clear["clears the noise"]) == ("b", 1.1, "yes")
    noisy = reading({"a": [98.0, 99.0], "b": [98.6, 98.8]})
    assert (noisy["seed noise"], noisy["clears the noise"]) == (1.42, "no")
    assert reading({"a": [98.0], "b": [98.3]})["clears the noise"] == "one seed"
    assert reading({"a": [99.0], "b": [98.0]})[["best", "margin"]].tolist() == ["a", 0.0], "the reference itself"
    assert clear["variants run"] == "-", "a family this code does not define"
    partial = _ablation_rows({"no regulariser": [87.7], "+ MixUp 0.8 / CutMix 1.0": [88.1]})
    partial = ab.readings(partial.assign(family="regularization", dataset="cifar10")).iloc[0]
    assert partial["variants run"] == "2 of 4", "a family spanning sessions says it is partial"


def test_contrasts_read_the_inner_family_as_titn_minus_vit_with_and_without_kd():
    rows = _ablation_rows(
        {"TITN (inner on)": [97.5, 97.7], "ViT (inner off)": [95.5, 95.7], "TITN + KD": [99.0], "ViT + KD": [99.1]}
    ).assign(family="inner")
    table = ab.contrasts(rows)
    assert table[["when", "points", "runs"]].values.tolist() == [
        ["without KD", 2.0, "2 vs 2"],
        ["with KD", -0.1, "1 vs 1"],
    ]
    assert table["variant"].iloc[0] == "TITN (inner on): 97.60 ± 0.14"
    assert ab.contrasts(_ablation_rows({"a": [1.0]}).assign(family="inner")).empty
    assert ab.contrasts(rows.assign(family="temperature")).empty, "a family without pairs has no contrast"


def test_contrasts_read_the_data_family_as_the_kd_gain_per_training_set_size():
    rows = _ablation_rows({"10% data": [90.0], "10% data, KD": [93.0], "100% data": [97.0], "100% data, KD": [97.5]})
    table = ab.contrasts(rows.assign(family="data"))
    assert table[["when", "points"]].values.tolist() == [
        ["10% of the training set", 3.0], ["100% of the training set", 0.5],
    ], "pairs without runs (25%, 50%) are left out"  # fmt: skip


def test_teacher_mix_names_the_variants_of_each_teacher_checkpoint():
    rows = _ablation_rows({"T=1": [97.8], "T=4": [96.6], "T=8": [97.3], "no KD": [96.0]})
    rows["run_id"] = ["a", "b", "c", "d"]
    index = pd.DataFrame(
        {"run_id": ["a", "b", "c", "d"], "teacher": ["resnet-small"] * 3 + [None],
         "teacher_run_id": [None] * 4, "teacher_test_top1": [99.59, 99.62, 99.59, None]}
    )  # fmt: skip
    assert ab.teacher_mix(rows, index).values.tolist() == [
        ["resnet-small", 99.59, "T=1, T=8"], ["resnet-small", 99.62, "T=4"],
    ]  # fmt: skip
    index["teacher_test_top1"] = [99.62, 99.62, 99.62, None]
    assert ab.teacher_mix(rows, index).empty, "one checkpoint: nothing to show"
    index["teacher"] = ["resnet-small", "resnet18", "resnet-small", None]
    index["teacher_test_top1"] = [99.62, 99.7, 99.62, None]
    assert ab.teacher_mix(rows, index).empty, "the teacher family compares different teachers on purpose"
    index["teacher"] = ["fastcnn-wide"] * 3 + [None]
    index["teacher_run_id"] = ["teacher-12-ep", "teacher-24-ep", "teacher-12-ep", None]
    assert ab.teacher_mix(rows, index).empty, "teacher-epochs: two runs of one architecture, on purpose"
    index["teacher_test_top1"] = [99.62, 99.7, 99.5, None]
    assert ab.teacher_mix(rows, index).values.tolist() == [
        ["fastcnn-wide", 99.5, "T=8"], ["fastcnn-wide", 99.62, "T=1"],
    ], "one teacher run retrained between variants is still shown"  # fmt: skip


def test_teachers_compared_shows_each_variants_teacher_run_and_strength_only_when_they_differ():
    rows = _ablation_rows({"the profile's teacher": [70.1], "teacher trained 24 epochs": [71.3]})
    rows["run_id"] = ["s12", "s24"]
    index = pd.DataFrame(
        {"run_id": ["s12", "s24", "t12", "t24"], "epochs": [70, 70, 12, 24],
         "teacher_run_id": ["t12", "t24", None, None], "teacher_test_top1": [72.3, 74.9, None, None]}
    )  # fmt: skip
    shown = ab.teachers_compared(rows, index)
    assert shown[["variant", "teacher_run", "teacher_epochs", "teacher_top1"]].values.tolist() == [
        ["the profile's teacher", "t12", 12, 72.3], ["teacher trained 24 epochs", "t24", 24, 74.9],
    ]  # fmt: skip
    index["teacher_run_id"] = ["t12", "t12", None, None]
    assert ab.teachers_compared(rows, index).empty, "one teacher run: the teacher_mix table's business"


def test_every_contrast_pairs_variants_of_its_family():
    for family, (_, pairs) in CONTRASTS.items():
        labels = {label for label, _, _ in FAMILIES[family]}
        assert {label for pair in pairs.values() for label in pair} <= labels, family


def test_families_run_on_two_datasets_are_set_side_by_side_with_their_agreement():
    base = {"family": "distillation", "profile": "cpu", "seed": 0, "params": 1e6, "wall_seconds": 60.0}
    base["run_id"] = "gone"  # a variant whose run folder is not on disk
    rows = [
        base | {"dataset": d, "data_variant": d.upper(), "epochs": e, "variant": v, "test_top1": top1}
        for d, e, scores in [("mnist", 4, [97.0, 96.0, 99.0]), ("cifar10", 10, [60.0, 66.0, 73.0])]
        for v, top1 in zip(["no KD", "soft", "feature"], scores, strict=True)
    ]  # fmt: skip
    table = pd.DataFrame(rows + [base | {"family": "inner", "dataset": "mnist", "variant": "x", "test_top1": 1.0}])
    across = ab.across_datasets(table)
    assert list(across) == ["distillation"], "a family run on one dataset only has nothing to compare"
    deltas = across["distillation"]
    assert list(deltas.columns) == ["MNIST (4 ep)", "CIFAR10 (10 ep)"]
    assert deltas.loc["soft"].tolist() == [-1.0, 6.0] and deltas.loc["feature"].tolist() == [2.0, 13.0]
    agreement = ab.agreement(deltas)
    assert agreement.tolist() == ["feature", "feature", 0.5]


def test_pending_ablations_list_the_plans_families_not_complete(tmp_path, monkeypatch):
    """A family without a summary is pending with none of its runs done; one whose summary lacks some of the runs
    its variants make today (rewritten after every run, or from a redefined variant) says how many it has; a
    complete one leaves the list."""
    from titn_core.ablations import family_configs

    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    ids = [cfg.default_run_id() for seed in (0, 1)  # the plan runs it with seeds 0 and 1, 4 epochs
           for _, cfg in family_configs("distillation", "mnist", "cpu", seed=seed, epochs=4)]  # fmt: skip
    everything = ab.pending().values.tolist()
    assert ["distillation", "MNIST", 4, f"0 of {len(ids)}"] in everything
    assert ["inner", "CIFAR-10", 10, f"0 of {len(family_configs('inner', 'cifar10', 'cpu'))}"] in everything
    done = tmp_path / "ablations" / "distillation-mnist-cpu"
    done.mkdir(parents=True)

    def summary(run_ids):
        rows = "".join(f"v,0,90.0,{run_id}\n" for run_id in run_ids)
        (done / "summary.csv").write_text("variant,seed,test_top1,run_id\n" + rows)

    summary(ids[:-1] + ["student-mnist-an-older-variant"])
    assert ["distillation", "MNIST", 4, f"{len(ids) - 1} of {len(ids)}"] in ab.pending().values.tolist()
    summary(ids)
    assert ab.pending().values.tolist() == [f for f in everything if f[:3] != ["distillation", "MNIST", 4]]


def test_ablations_list_each_familys_datasets_in_the_books_order(tmp_path, monkeypatch):
    monkeypatch.setenv("TITN_RESULTS_DIR", str(tmp_path))
    for name in ["distillation-cifar10-cpu", "distillation-mnist-cpu", "inner-mnist-cpu"]:
        (tmp_path / "ablations" / name).mkdir(parents=True)
        (tmp_path / "ablations" / name / "summary.csv").write_text("variant,seed,test_top1\nx,0,1.0\n")
    table = ab.ablations()
    assert list(zip(table["family"], table["dataset"], strict=True)) == [
        ("distillation", "mnist"), ("distillation", "cifar10"), ("inner", "mnist"),
    ]  # fmt: skip


# --- the built book, in a browser -----------------------------------------------------------------------------------


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


def _opens_the_code_of_a_cell(page, html: Path) -> None:
    """A hide-input cell's "show code" toggle opens: the code that made the cell's table or figure is hidden until
    the reader clicks the toggle, then visible."""
    cell = page.locator(".cell.tag_hide-input").first
    code = cell.locator(".cell_input")
    assert not code.is_visible(), f"{html.name}: the code should start folded"
    cell.locator("summary").first.click()
    code.wait_for(state="visible", timeout=5000)
    assert "import" in code.inner_text() or "book." in code.inner_text(), f"{html.name}: the toggle shows no code"


def test_chromium_renders_pages_without_broken_images_empty_tables_or_errors(built_book, tmp_path):
    shots = screenshot_dir(tmp_path)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        toggled = set()
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
            if page.locator(".cell.tag_hide-input").count():
                _opens_the_code_of_a_cell(page, html)
                toggled.add(html.stem)
            if html.stem in ("intro", "mnist"):
                page.screenshot(path=str(shots / f"{html.stem}.png"), full_page=True)
    assert (shots / "intro.png").stat().st_size > 10_000 and (shots / "mnist.png").stat().st_size > 10_000
    chapters = {p.stem for p in (ROOT / "book").glob("*.md") if "{code-cell}" in p.read_text()}
    assert chapters <= toggled, f"chapters whose code toggle was not opened: {chapters - toggled}"


def test_dataset_chapter_has_figures_and_the_comparison_table(built_book):
    html = (built_book / "book" / "mnist.html").read_text()
    assert html.count("<img") >= 3, "bars, curves and confusion matrix"
    table = html[html.index("<table") : html.index("</table>")]
    assert "<th" in table and all(
        f">{role}<" in table for role in ("TITN + KD (hard + feature)", "TITN (no KD)", "teacher")
    )
    assert "Counting its teacher, the distilled student cost" in html, "distillation priced with the teacher's hours"
    assert "agrees with teacher (%)" in html and "KD gain" in html, "fidelity and per-class tables"
    assert html.count('class="pasted-text"') >= 10, "the prose's numbers are glued from the results"
    assert "tag_remove-input" not in html and html.count("tag_hide-input") >= 10, "every cell's code can be opened"


def test_a_dataset_without_runs_says_plainly_what_is_missing(built_book):
    html = (built_book / "book" / "cifar100.html").read_text()
    assert html.count("not run yet</td>") == 4, "each role of the comparison, none run"
    assert html.count(">not run yet<") == 6, "and the sentences on the distilled student and the teacher"
    assert "python -m titn_core train --dataset cifar100 --profile cpu --kd paper" in html, "with its command"
    assert "no distilled run yet" in html and ">n/a<" in html, "the numbers that need a run say they are missing"


def test_efficiency_chapter_renders_the_committed_benchmarks(built_book):
    html = (built_book / "book" / "efficiency.html").read_text()
    assert "train vs timm TNT" in html and "ours TITN" in html, "the throughput table"
    assert "each at its fastest" in html, "the speed summary"
    assert "explicit ms" in html, "the attention-kernel table"
    assert "KD / no KD" in html, "the distillation-cost table from the smoke runs"
    assert "minutes incl. teacher" in html, "time to accuracy, the distilled student charged for its teacher"
    assert "operator ms/step" in html and "cut needed" in html, "the step profile and what 1.5x would take"
    assert "inner/outer GFLOP/s" in html and "weight grad GFLOP/s" in html, "the linear layers at their shapes"


def test_profile_table_reads_every_profile_and_dataset_from_the_config():
    from titn_core import book_provenance
    from titn_core.profiles import build_config

    table = book_provenance.profile_table().set_index(["profile", "dataset"])
    assert len(table) == 9 and table.index.is_unique
    cpu100 = table.loc[("cpu", "CIFAR-100")]
    teacher = build_config("cifar100", "cpu", kind="teacher")
    assert cpu100["epochs"] == build_config("cifar100", "cpu").train.epochs
    assert cpu100["teacher"] == f"fastcnn-wide ({teacher.train.epochs} epochs, {teacher.data.val_size} held out)"
    assert "RandAugment" in table.loc[("paper", "CIFAR-10"), "augmentation"]
    assert "RandAugment" not in table.loc[("paper", "MNIST"), "augmentation"], "digits get no RandAugment"
