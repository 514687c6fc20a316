"""Run a plan of parameterised notebooks through papermill; results/ is the single source of truth.

    python -m titn_core.experiments run --plan plans/smoke.yaml

A plan (YAML) lists notebook jobs, each with parameters and an optional `matrix` of lists to expand. Every job
executes its notebook through papermill's Python API and saves the executed copy next to the results it wrote.
A job whose `<notebook>.job.json` says complete with the same key (notebook + parameters) is skipped; an
interrupted job re-executes and its training resumes from the checkpoint; a failed job is reported at the end
with its error and the executed notebook's path while the other jobs go on.

Jobs run one after another in this process, or `--jobs N` at once in worker processes (GPUs handed out per job, or
the CPU cores split), or `--executor slurm` as SLURM jobs through submitit. Whichever way, a job waits for the jobs
it needs (`jobgraph`), holds a lock while it runs (`joblock`) so two runners never run it twice, and writes its
results and executed notebook to the same place.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import plan_cost, storage
from .ablations import check_family, family_configs
from .config import RunConfig
from .errors import TITNError
from .profiles import build_config

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "titn-book"
LOCATION_PARAMS = ("data_dir", "results_dir", "checkpoint_dir")  # where things live: not part of the job key


COMPILE_ENV = "TITN_COMPILE"  # set to 1 by `run --compile`, read by every notebook the runner launches


def locate(cfg: RunConfig, data_dir: str, results_dir: str, checkpoint_dir: str) -> RunConfig:
    """Point a notebook's run at its folders (empty data_dir = the default search), silence progress bars, and
    compile a student when the plan runner was asked to (not a setting of the run: the hash stays)."""
    cfg.data.data_dir = data_dir or None
    cfg.results_dir, cfg.checkpoint_dir, cfg.progress = results_dir, checkpoint_dir, False
    cfg.compile = cfg.compile or (cfg.kind == "student" and os.environ.get(COMPILE_ENV) == "1")
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
    dataset="mnist", profile="smoke", teacher="", seed=0, epochs=0, data_dir="", results_dir="results",
    checkpoint_dir="checkpoints", **_,
) -> RunConfig:  # fmt: skip
    """The teacher run of `train_teacher.ipynb`. Seed 0 is the one distilled students reuse; other seeds measure
    how much the teacher's accuracy and time vary."""
    overrides = {"train.seed": seed, **({"train.epochs": epochs} if epochs else {})}
    cfg = build_config(dataset, profile, kind="teacher", teacher=teacher or None, overrides=overrides)
    return locate(cfg, data_dir, results_dir, checkpoint_dir)


def ablation_configs(
    family="distillation", dataset="mnist", profile="smoke", seeds=(0,), epochs=0, data_dir="", results_dir="results",
    checkpoint_dir="checkpoints", **_,
) -> list[RunConfig]:  # fmt: skip
    """The runs `ablation.ipynb` trains for these parameters: every variant of the family, for every seed."""
    return [
        locate(cfg, data_dir, results_dir, checkpoint_dir)
        for seed in seeds
        for _, cfg in family_configs(family, dataset, profile, seed=seed, epochs=epochs or None)
    ]


RUNS_OF_NOTEBOOK = {  # notebook stem -> the runs it trains (or reuses) for given parameters
    "train_teacher": lambda params: [teacher_run_config(**params)],
    "train_titn": lambda params: [titn_config(**params)],
    "attention": lambda params: [titn_config(**params)],
    "ablation": lambda params: ablation_configs(**params),
}


def output_dir(notebook: str, params: dict) -> Path:
    """Where a job's executed notebook goes: next to the results it writes."""
    results = Path(params.get("results_dir", "results"))
    stem = Path(notebook).stem
    if stem == "ablation":
        family = check_family(params.get("family", "distillation"))
        return results / "ablations" / f"{family}-{params.get('dataset', 'mnist')}-{params.get('profile', 'smoke')}"
    if stem in RUNS_OF_NOTEBOOK:
        return results / RUNS_OF_NOTEBOOK[stem](params)[0].default_run_id()
    raise TITNError(f"unknown notebook {notebook!r}; plans may use train_teacher, train_titn, ablation, attention")


@dataclass
class Job:
    notebook: str
    parameters: dict
    gpus: int | None = None  # from the plan entry's `gpus:` (DDP when more than one); None: the runner's default
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
    def name(self) -> str:
        """Short and unique within a checkpoint folder: names its lock, log and submitit folder."""
        return f"{Path(self.notebook).stem}-{self.key[:12]}"

    @property
    def state_dir(self) -> Path:
        """Where runners keep what is not a result (locks, worker logs, submissions): under the checkpoints,
        which every runner resuming the job must share anyway, and which are not committed."""
        return Path(str(self.parameters.get("checkpoint_dir", "checkpoints"))) / ".jobs"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / f"{self.name}.lock"

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def run_configs(self) -> list[RunConfig]:
        """The runs this job trains or reuses; [] when its parameters are invalid (its notebook reports them)."""
        runs = RUNS_OF_NOTEBOOK.get(Path(self.notebook).stem)
        try:
            return runs(self.parameters) if runs else []
        except (TITNError, TypeError, ValueError):
            return []

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
    for n, entry in enumerate(plan.get("jobs", []), 1):
        base = dict(plan.get("defaults", {}), **entry.get("parameters", {}), **(overrides or {}))
        gpus = _gpus(entry, n, path)
        matrix = entry.get("matrix", {})
        keys = list(matrix)
        for combo in itertools.product(*(matrix[k] for k in keys)) if keys else [()]:
            jobs.append(Job(entry["notebook"], {**base, **dict(zip(keys, combo, strict=True))}, gpus=gpus))
    _check_distinct_outputs(jobs, path)
    return jobs


def _check_distinct_outputs(jobs: list[Job], path: Path) -> None:
    """Two jobs writing one executed notebook and record would overwrite each other's, so each would run again on
    every `run` (e.g. one ablation family at two schedules: its folder names family, dataset and profile only)."""
    first: dict[Path, Job] = {}
    for job in jobs:
        if (other := first.setdefault(job.record_path, job)) is not job:
            raise TITNError(f"{path}: jobs {other.label()} and {job.label()} would both write {job.record_path}; "
                            "list a job once, or run the other from a plan with its own results_dir")  # fmt: skip


def _gpus(entry: dict, n: int, path: Path) -> int | None:
    """An entry's `gpus:` (how many GPUs each of its jobs trains on, with DDP when more than one)."""
    gpus = entry.get("gpus")
    if gpus is not None and (not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1):
        raise TITNError(f"{path}: job entry {n} has gpus: {gpus!r}; give a whole number of GPUs, 1 or more")
    return gpus


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


def error_line(exc: BaseException) -> str:
    """The one line of an exception (a notebook's traceback included) that says what went wrong."""
    text = str(exc).strip().splitlines()
    errors = [line for line in text if "Error" in line]
    return (errors[-1] if errors else (text[-1] if text else type(exc).__name__))[:300]


def run_plan(jobs: list[Job], launcher=None) -> dict:
    """Execute every job not yet complete, in this process one by one unless a launcher says otherwise (`--jobs`,
    `--executor`); returns counts and the failures (job, error, notebook path)."""
    from .localrun import InProcessLauncher  # these modules import this one
    from .scheduling import Scheduler

    _check_kernel()
    return Scheduler(jobs, launcher or InProcessLauncher()).run()


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


def _parser() -> argparse.ArgumentParser:
    from . import launch  # it imports this module

    parser = argparse.ArgumentParser(prog="python -m titn_core.experiments", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute a plan's notebooks (cached, resumable)")
    ls = sub.add_parser("list", help="show a plan's jobs and the state of each (done, running, queued, failed, ...)")
    cost = sub.add_parser("estimate", help="a plan's job and run counts and its estimated GPU-hours")
    for p in (run, ls, cost):
        p.add_argument(
            "--plan",
            required=True,
            action="append",
            help="plans/smoke.yaml (CI), plans/cpu.yaml (here), plans/paper.yaml (repeatable: the plans' jobs in the "
            "order given, a job in two plans run once)",
        )
        p.add_argument(
            "--where",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="only the jobs whose notebook or plan parameter matches, e.g. --where dataset=mnist "
            "--where notebook=attention (repeatable: all must hold)",
        )
    for p in (run, ls):
        p.add_argument("--results-dir", help="override results_dir for every job")
        p.add_argument("--checkpoint-dir", help="override checkpoint_dir for every job")
        p.add_argument("--data-dir", help="override data_dir for every job")
    run.add_argument("--compile", action="store_true", help="torch.compile every student (regional; same results, "
                     "~1.16x faster TITN training in bf16 on 2 EPYC cores, ~1 min of compiling per run)")  # fmt: skip
    launch.add_options(run)
    return parser


def plans_jobs(plans: list[str], overrides: dict | None = None) -> list[Job]:
    """Every plan's jobs in the order given, so one runner works through several plans; a job in two plans (same
    notebook and parameters) is kept once, where it comes first."""
    jobs: dict[str, Job] = {}
    for plan in plans:
        for job in load_plan(plan, overrides):
            jobs.setdefault(job.key, job)
    return list(jobs.values())


def _list(jobs: list[Job]) -> None:
    from .jobstate import job_state  # it imports this module

    for job in jobs:
        state, detail = job_state(job)
        print(f"{state:<11} {job.label()}{f' ({detail})' if detail else ''} -> {job.out_dir}")


def _estimate(plan: str, jobs: list[Job]) -> None:
    table = plan_cost.estimate(jobs)
    print(plan_cost.by_notebook(table))
    total = plan_cost.totals(table)
    print(f"{plan}: {total['jobs']} jobs, {total['runs']} distinct runs, {total['epochs']} epochs in all, about "
          f"{total['gpu_hours']:.0f} GPU-hours (an ESTIMATE from FLOP counts at DeiT-B's V100 rate; see "
          "titn_core/plan_cost.py)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from . import launch  # it imports this module

    args = _parser().parse_args(argv)
    try:
        over = {name: getattr(args, name) for name in LOCATION_PARAMS if getattr(args, name, None)}
        jobs = _select(plans_jobs(args.plan, over), args.where)
        if args.command == "list":
            _list(jobs)
            return 0
        if args.command == "estimate":
            _estimate(" + ".join(args.plan), jobs)
            return 0
        if args.compile:  # the notebooks' kernels inherit it
            os.environ[COMPILE_ENV] = "1"
        summary = run_plan(jobs, launch.launcher_from(args, jobs))
    except TITNError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the jobs that were running resume from their checkpoints on the next run", file=sys.stderr)
        return 130
    print(f"plan done: {summary['ran']} ran, {summary['cached']} cached, {len(summary['failed'])} failed")
    for f in summary["failed"]:
        print(f"  FAILED {f['job']}\n    {f['error']}\n    executed notebook: {f['notebook']}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
