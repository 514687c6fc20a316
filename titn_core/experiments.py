"""Run a plan of parameterised notebooks through papermill; results/ is the single source of truth.

    python -m titn_core.experiments run --plan plans/smoke.yaml

A plan (YAML) lists notebook jobs, each with parameters and an optional `matrix` of lists to expand. Every job
executes its notebook through papermill's Python API and saves the executed copy next to the results it wrote.
A job whose `<notebook>.job.json` says complete with the same key (notebook + parameters) is skipped; an
interrupted job re-executes and its training resumes from the checkpoint; a failed job is reported at the end
with its error and the executed notebook's path while the other jobs go on.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from . import storage
from .ablations import check_family
from .config import RunConfig, build_config
from .errors import TITNError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "titn-book"
LOCATION_PARAMS = ("data_dir", "results_dir", "checkpoint_dir")  # where things live: not part of the job key


def locate(cfg: RunConfig, data_dir: str, results_dir: str, checkpoint_dir: str) -> RunConfig:
    """Point a notebook's run at its folders (empty data_dir = the default search) and silence progress bars."""
    cfg.data.data_dir = data_dir or None
    cfg.results_dir, cfg.checkpoint_dir, cfg.progress = results_dir, checkpoint_dir, False
    return cfg


def titn_config(
    dataset="mnist", profile="smoke", model="", teacher="", kd="none", seed=0, epochs=0,
    data_dir="", results_dir="results", checkpoint_dir="checkpoints", **_,
) -> RunConfig:  # fmt: skip
    """The student run that `train_titn.ipynb` (and `attention.ipynb`) use for these parameters."""
    overrides = {"train.seed": seed, **({"train.epochs": epochs} if epochs else {})}
    cfg = build_config(dataset, profile, model=model or None, teacher=teacher or None, kd=kd, overrides=overrides)
    return locate(cfg, data_dir, results_dir, checkpoint_dir)


def teacher_run_config(
    dataset="mnist", profile="smoke", teacher="", epochs=0, data_dir="", results_dir="results",
    checkpoint_dir="checkpoints", **_,
) -> RunConfig:  # fmt: skip
    """The teacher run of `train_teacher.ipynb`: the same one a distilled student reuses (seed 0)."""
    overrides = {"train.epochs": epochs} if epochs else {}
    cfg = build_config(dataset, profile, kind="teacher", teacher=teacher or None, overrides=overrides)
    return locate(cfg, data_dir, results_dir, checkpoint_dir)


def output_dir(notebook: str, params: dict) -> Path:
    """Where a job's executed notebook goes: next to the results it writes."""
    results = Path(params.get("results_dir", "results"))
    stem = Path(notebook).stem
    if stem in ("train_titn", "attention"):
        cfg = titn_config(**params)
        return results / cfg.default_run_id()
    if stem == "train_teacher":
        return results / teacher_run_config(**params).default_run_id()
    if stem == "ablation":
        family = check_family(params.get("family", "distillation"))
        return results / "ablations" / f"{family}-{params.get('dataset', 'mnist')}-{params.get('profile', 'smoke')}"
    raise TITNError(f"unknown notebook {notebook!r}; plans may use train_teacher, train_titn, ablation, attention")


@dataclass
class Job:
    notebook: str
    parameters: dict
    out_dir: Path = field(init=False)

    def __post_init__(self):
        try:
            self.out_dir = output_dir(self.notebook, self.parameters)
        except TITNError:
            # bad parameters: still execute, so the notebook's first cell reports them; keep the copy aside
            results = Path(str(self.parameters.get("results_dir", "results")))
            self.out_dir = results / "invalid-jobs" / f"{Path(self.notebook).stem}-{self.key[:8]}"

    @property
    def semantic_parameters(self) -> dict:
        """The parameters that change what the job computes (not where its files live)."""
        return {k: v for k, v in self.parameters.items() if k not in LOCATION_PARAMS}

    @property
    def key(self) -> str:
        """Same notebook + same (non-location) parameters = same job."""
        blob = json.dumps({"notebook": self.notebook, "parameters": self.semantic_parameters}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def executed_path(self) -> Path:
        return self.out_dir / Path(self.notebook).name

    @property
    def failed_path(self) -> Path:
        return self.out_dir / f"{self.executed_path.stem}.failed.ipynb"

    @property
    def record_path(self) -> Path:
        return self.out_dir / f"{Path(self.notebook).stem}.job.json"

    def is_complete(self) -> bool:
        if not self.record_path.exists():
            return False
        try:
            record = storage.read_json(self.record_path)
        except TITNError:
            return False  # a torn record is never taken as complete
        return record.get("complete") is True and record.get("key") == self.key and self.executed_path.exists()

    def label(self) -> str:
        return f"{self.notebook} {self.semantic_parameters}"

    def matches(self, where: dict[str, str]) -> bool:
        """`notebook=attention`, `dataset=mnist`, ...: every condition holds (values compared as text)."""
        fields = {"notebook": Path(self.notebook).stem, **{k: str(v) for k, v in self.semantic_parameters.items()}}
        return all(fields.get(k) == v for k, v in where.items())


def load_plan(path: str | Path, overrides: dict | None = None) -> list[Job]:
    """Expand a YAML plan into jobs; `overrides` (e.g. results_dir, data_dir) apply to every job."""
    path = Path(path)
    if not path.is_file():
        raise TITNError(f"plan {path} not found; see plans/ for smoke.yaml, cpu.yaml, paper.yaml")
    try:
        plan = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise TITNError(f"plan {path} is not valid YAML ({e}); fix the file") from e
    jobs = []
    for entry in plan.get("jobs", []):
        base = dict(plan.get("defaults", {}), **entry.get("parameters", {}), **(overrides or {}))
        matrix = entry.get("matrix", {})
        keys = list(matrix)
        for combo in itertools.product(*(matrix[k] for k in keys)) if keys else [()]:
            jobs.append(Job(entry["notebook"], {**base, **dict(zip(keys, combo, strict=True))}))
    return jobs


def _check_kernel() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        raise TITNError(f"Jupyter kernel {KERNEL!r} is not registered; run `make env` (it registers it)")


def run_job(job: Job) -> None:
    import papermill

    job.out_dir.mkdir(parents=True, exist_ok=True)
    storage.atomic_write_json(job.record_path, {"complete": False, "key": job.key, "parameters": job.parameters})
    tmp = job.out_dir / f".{job.executed_path.name}.running.ipynb"
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(NOTEBOOKS / job.notebook),
            str(tmp),
            parameters=job.parameters,
            kernel_name=KERNEL,
            cwd=str(ROOT),
            progress_bar=False,
        )
    except BaseException:
        if tmp.exists():
            tmp.replace(job.failed_path)
        raise
    tmp.replace(job.executed_path)
    job.failed_path.unlink(missing_ok=True)  # an earlier attempt's failure no longer describes this job
    record = {"complete": True, "key": job.key, "parameters": job.parameters, "seconds": time.perf_counter() - start}
    storage.atomic_write_json(job.record_path, record)  # last: its presence with complete=true means done


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    errors = [line for line in text if "Error" in line]
    return (errors[-1] if errors else (text[-1] if text else type(exc).__name__))[:300]


def run_plan(jobs: list[Job]) -> dict:
    """Execute every job not yet complete; returns counts and the failures (job, error, notebook path)."""
    _check_kernel()
    summary = {"ran": 0, "cached": 0, "failed": []}
    for job in tqdm(jobs, desc="plan", unit="job", disable=None):
        if job.is_complete():
            summary["cached"] += 1
            print(f"cached   {job.label()}", flush=True)
            continue
        print(f"running  {job.label()}", flush=True)
        try:
            run_job(job)
            summary["ran"] += 1
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - a failed job must not stop the plan
            summary["failed"].append({"job": job.label(), "error": _error_line(e), "notebook": str(job.failed_path)})
            print(f"FAILED   {job.label()}: {_error_line(e)}", flush=True)
            if not isinstance(e, TITNError) and "PapermillExecutionError" not in type(e).__name__:
                traceback.print_exc()
    return summary


def _select(jobs: list[Job], conditions: list[str]) -> list[Job]:
    where = {}
    for condition in conditions:
        key, sep, value = condition.partition("=")
        if not sep:
            raise TITNError(f"--where {condition!r} needs the form KEY=VALUE, e.g. --where dataset=mnist")
        where[key.strip()] = value.strip()
    selected = [job for job in jobs if job.matches(where)]
    if conditions and not selected:
        raise TITNError(f"no job of the plan matches {' and '.join(conditions)}; see `list --plan ...`")
    return selected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m titn_core.experiments", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute a plan's notebooks (cached, resumable)")
    run.add_argument("--plan", required=True, help="plans/smoke.yaml (CI), plans/cpu.yaml (here), plans/paper.yaml")
    run.add_argument("--results-dir", help="override results_dir for every job")
    run.add_argument("--checkpoint-dir", help="override checkpoint_dir for every job")
    run.add_argument("--data-dir", help="override data_dir for every job")
    ls = sub.add_parser("list", help="show a plan's jobs and whether each is complete")
    ls.add_argument("--plan", required=True)
    for p in (run, ls):
        p.add_argument(
            "--where",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="only the jobs whose notebook or plan parameter matches, e.g. --where dataset=mnist "
            "--where notebook=attention (repeatable: all must hold)",
        )
    args = parser.parse_args(argv)
    try:
        over = {}
        for name in LOCATION_PARAMS:
            if getattr(args, name, None):
                over[name] = getattr(args, name)
        jobs = _select(load_plan(args.plan, over), args.where)
        if args.command == "list":
            for job in jobs:
                print(f"{'done   ' if job.is_complete() else 'pending'} {job.label()} -> {job.out_dir}")
            return 0
        summary = run_plan(jobs)
    except TITNError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"plan done: {summary['ran']} ran, {summary['cached']} cached, {len(summary['failed'])} failed")
    for f in summary["failed"]:
        print(f"  FAILED {f['job']}\n    {f['error']}\n    executed notebook: {f['notebook']}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
