"""The smoke plan end to end through papermill (real kernel, real notebooks, real MNIST), then a cache hit."""

import json
from pathlib import Path

import pytest

from titn_core import results
from titn_core.errors import TITNError
from titn_core.experiments import Job, load_plan, main, run_plan
from titn_core.notebook import check_parameters


def test_smoke_plan_runs_then_is_cached(smoke_plan):
    where, first = smoke_plan
    jobs = load_plan("plans/smoke.yaml", where)
    assert len(jobs) == 5
    assert first["failed"] == [] and first["ran"] == 5
    for job in jobs:
        assert job.executed_path.exists() and json.loads(job.record_path.read_text())["complete"]
    index = results.load(where["results_dir"])
    assert {"teacher", "student"} <= set(index["kind"]) and (index["test_top1"] > 10).all()
    results_dir = Path(where["results_dir"])
    assert (results_dir / "ablations" / "inner-mnist-smoke" / "summary.csv").exists()
    stamps = {p: p.stat().st_mtime_ns for p in results_dir.rglob("metrics.json")}
    second = run_plan(load_plan("plans/smoke.yaml", where))
    assert second == {"ran": 0, "cached": 5, "failed": []}
    assert stamps == {p: p.stat().st_mtime_ns for p in results_dir.rglob("metrics.json")}


def test_failed_job_is_reported_and_the_plan_goes_on(tmp_path, data_dir):
    where = {"results_dir": str(tmp_path / "r"), "checkpoint_dir": str(tmp_path / "c"), "data_dir": data_dir}
    bad = Job("train_teacher.ipynb", {"dataset": "mnist", "profile": "smoke", "epochs": "two", **where})
    summary = run_plan([bad])
    assert summary["ran"] == 0 and len(summary["failed"]) == 1
    failure = summary["failed"][0]
    assert "'epochs' must be int" in failure["error"]
    assert failure["notebook"].endswith("train_teacher.failed.ipynb")


def test_a_job_that_succeeds_clears_its_earlier_failure(tmp_path, monkeypatch):
    import papermill

    where = {"results_dir": str(tmp_path / "r"), "checkpoint_dir": str(tmp_path / "c")}
    job = Job("ablation.ipynb", {"dataset": "mnist", "profile": "smoke", "family": "patch", **where})
    attempts = []

    def execute(source, output, **kwargs):  # the first attempt fails part-way, the second (code fixed) succeeds
        attempts.append(output)
        Path(output).write_text("{}")
        if len(attempts) == 1:
            raise TITNError("patch size 8 does not divide the 28px images of mnist")

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    assert len(run_plan([job])["failed"]) == 1 and job.failed_path.exists()
    assert run_plan([job])["ran"] == 1 and job.is_complete()
    assert not job.failed_path.exists(), "a stale .failed.ipynb would point readers at a fixed error"


def test_parameter_checks_name_the_parameter():
    before = {"In", "get_ipython"}  # the namespace before the parameters cell
    ns = {"__annotations__": {"epochs": "int", "lr": "float"}, "epochs": "ten", "lr": 1}
    with pytest.raises(TITNError, match="'epochs' must be int"):
        check_parameters(ns, before)
    ns = {"__annotations__": {"epochs": "int"}, "epochs": 3, "colour": "red"}
    with pytest.raises(TITNError, match="unknown notebook parameter.*colour"):
        check_parameters(ns, before)
    assert check_parameters({"__annotations__": {"lr": "float"}, "lr": 1}, before) == {"lr": 1.0}
    ns = {"__annotations__": {"seeds": "list"}, "seeds": "[0, 1]"}  # what papermill's -p makes of a list
    with pytest.raises(TITNError, match='pass e.g. -y "seeds: \\[0, 1\\]"'):
        check_parameters(ns, before)


@pytest.mark.parametrize("notebook", sorted(Path("notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_papermill_sees_every_declared_parameter(notebook):
    """`papermill --help-notebook` and its "unknown parameter" warning rely on papermill's own parser, which skips
    lines it cannot read (e.g. an `=` inside a comment); every annotated name must reach it, and nothing else."""
    import ast

    import nbformat
    import papermill

    cell = next(c for c in nbformat.read(notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    declared = [node.target.id for node in ast.parse(cell.source).body if isinstance(node, ast.AnnAssign)]
    assert declared and list(papermill.inspect_notebook(str(notebook))) == declared


def test_where_selects_jobs_of_the_cpu_plan_and_rejects_bad_conditions(capsys):
    assert main(["list", "--plan", "plans/cpu.yaml", "--where", "dataset=mnist", "--where", "notebook=attention"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "attention.ipynb" in lines[0] and "'mnist'" in lines[0]
    teachers = [j for j in load_plan("plans/cpu.yaml") if j.matches({"notebook": "train_teacher"})]
    assert {j.parameters["dataset"] for j in teachers} == {"mnist", "cifar10", "cifar100"}
    assert main(["list", "--plan", "plans/cpu.yaml", "--where", "dataset=svhn"]) == 2
    assert main(["list", "--plan", "plans/cpu.yaml", "--where", "dataset"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("plan", sorted(Path("plans").glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_plan_expands_to_valid_runs(plan):
    """A typo in a plan (dataset, family, kd) should fail here, not hours into a batch run."""
    jobs = load_plan(plan)
    assert jobs, f"{plan} has no jobs"
    for job in jobs:
        assert job.out_dir.parent.name in {"results", "ablations"}


def test_several_plans_run_as_one_queue_in_the_order_given_each_job_once(capsys):
    """`--plan A --plan B`: one runner works through both (this project queues the equal-compute ViTs after
    plans/cpu.yaml); a job both plans hold runs once."""
    from titn_core.experiments import plans_jobs

    cpu, long = load_plan("plans/cpu.yaml"), load_plan("plans/cifar10-long.yaml")
    both = plans_jobs(["plans/cifar10-long.yaml", "plans/cpu.yaml", "plans/cifar10-long.yaml"])
    assert [j.key for j in both] == [j.key for j in long + cpu]
    assert main(["list", "--plan", "plans/smoke.yaml", "--plan", "plans/smoke.yaml"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(load_plan("plans/smoke.yaml"))


def test_run_compile_compiles_the_students_of_every_notebook_but_changes_no_run(monkeypatch):
    """`run --compile` reaches the notebooks' kernels through the environment: their student runs compile, with the
    same config hash (so the same run id and cached results); teachers stay eager."""
    from titn_core.experiments import COMPILE_ENV, teacher_run_config, titn_config

    plain = titn_config(dataset="mnist", profile="smoke", kd="none")
    monkeypatch.setenv(COMPILE_ENV, "1")
    compiled = titn_config(dataset="mnist", profile="smoke", kd="none")
    assert compiled.compile and not plain.compile and compiled.hash() == plain.hash()
    assert not teacher_run_config(dataset="mnist", profile="smoke").compile
    monkeypatch.setenv(COMPILE_ENV, "0")  # main() sets it for real; monkeypatch puts back what was there before
    monkeypatch.setattr("titn_core.experiments.run_plan", lambda jobs, launcher: {"ran": 0, "cached": 0, "failed": []})
    assert main(["run", "--plan", "plans/smoke.yaml", "--compile"]) == 0
    assert __import__("os").environ.get(COMPILE_ENV) == "1"
