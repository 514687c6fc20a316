"""Running a plan's jobs at once: `--jobs N` worker processes, submitit's executors, job locks and dependencies.

A plan of the smoke plan's jobs less its ablation family (teacher, two students, attention; enough for every kind of
dependency) runs three times here: one job at a time, with --jobs 2, and through submitit's local executor. The
last two are interrupted once on purpose: the distilled student's worker is killed (the next run resumes it), and
its submitit job is sent SLURM's preemption signal (it is requeued and resumes). Both must end with exactly the
numbers of the sequential run. On CPU a run's float sums, so its numbers, depend on its thread count, so the
sequential run gives each job the threads a job gets under --jobs 2 (conftest's `smoke_plan` uses them all).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from titn_core import jobgraph, plan_cost, worker
from titn_core.cluster import ClusterOptions, parse_extra, slurm_parameters
from titn_core.complexity import count_flops
from titn_core.errors import TITNError
from titn_core.experiments import Job, load_plan, main, run_plan
from titn_core.jobgraph import dependencies
from titn_core.joblock import JobLock, holder
from titn_core.jobstate import job_state
from titn_core.profiles import build_config
from titn_core.resources import THREAD_VARIABLES, Pool
from titn_core.scheduling import Finished, Outcome, Scheduler
from titn_core.trainer import build_model

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "plans" / "smoke.yaml"
SCALEOUT_PLAN = """defaults: {dataset: mnist, profile: smoke}
jobs:
  - notebook: train_teacher.ipynb
  - notebook: train_titn.ipynb
    matrix: {kd: [none, paper]}
  - notebook: attention.ipynb
    parameters: {kd: paper, n_images: 6}
"""
ACCURACY = ("test_top1", "test_top5", "val_top1", "best_epoch", "best_test_top1", "config_hash")
TIMING = ["epoch_train_seconds", "train_images_per_s", "wall_seconds", "host_gflops"]


def _where(root: Path, data_dir: str) -> dict:
    return {"results_dir": str(root / "results"), "checkpoint_dir": str(root / "ckpt"), "data_dir": data_dir}


def _runner(where: dict, plan: Path, *options: str, threads: int | None = None) -> subprocess.Popen:
    """A plan runner in its own process; `threads` caps its math threads (two runners sharing the cores)."""
    cmd = [sys.executable, "-m", "titn_core.experiments", "run", "--plan", str(plan), *options]
    cmd += [f"--{k.replace('_', '-')}={v}" for k, v in where.items()]
    env = {**os.environ, **({name: str(threads) for name in THREAD_VARIABLES} if threads else {})}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _numbers(results_dir: str) -> dict:
    """Per run id: its accuracy metrics and its history less timings (what must not depend on how the plan ran)."""
    out = {}
    for path in sorted(Path(results_dir).glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        history = pd.read_csv(path.parent / "history.csv").drop(columns=TIMING)
        out[path.parent.name] = ({k: metrics[k] for k in ACCURACY}, history.to_dict("list"))
    return out


def _interrupt_once_checkpointed(job: Job, runner: subprocess.Popen, sig: int) -> pd.DataFrame:
    """When the job's run has saved its first epoch, send `sig` to the process holding the job's lock (the one doing
    the work); returns the run's history as it was then."""
    saved = [Path(job.parameters["checkpoint_dir"]) / job.out_dir.name / "last.pt", job.out_dir / "history.csv"]
    deadline = time.monotonic() + 900
    while not all(path.exists() for path in saved) and runner.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if not all(path.exists() for path in saved):
        runner.kill()
        pytest.fail(f"{job.label()} saved no checkpoint (runner rc {runner.poll()}):\n{runner.communicate()[0]}")
    before = pd.read_csv(job.out_dir / "history.csv")
    os.kill(holder(job.lock_path)["pid"], sig)
    return before


@pytest.fixture(scope="session")
def plan(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scaleout") / "plan.yaml"
    path.write_text(SCALEOUT_PLAN)
    return path


def _distilled_student(plan: Path, where: dict) -> Job:
    return next(j for j in load_plan(plan, where) if j.matches({"notebook": "train_titn", "kd": "paper"}))


def _resumed(job: Job, before: pd.DataFrame) -> bool:
    """Epochs finished before the interruption keep their recorded timings: the run resumed, it did not restart."""
    after = pd.read_csv(job.out_dir / "history.csv")
    return list(after["epoch"]) == [1, 2, 3] and after.iloc[: len(before)].equals(before)


@pytest.fixture(scope="session")
def sequential_plan(tmp_path_factory, data_dir, plan) -> dict:
    """The plan one job at a time in this process, each job's kernel with the threads of a --jobs 2 job."""
    where = _where(tmp_path_factory.mktemp("sequential-plan"), data_dir)
    with pytest.MonkeyPatch.context() as env:
        for name in THREAD_VARIABLES:
            env.setenv(name, str(Pool(2).threads))
        summary = run_plan(load_plan(plan, where))
    assert summary["ran"] == 4 and not summary["failed"], summary
    return where


@pytest.fixture(scope="session")
def parallel_plan(tmp_path_factory, data_dir, plan):
    """The plan with --jobs 2 whose distilled student's worker is SIGKILLed after its first epoch, then the
    same command again."""
    where = _where(tmp_path_factory.mktemp("parallel-plan"), data_dir)
    student = _distilled_student(plan, where)
    first = _runner(where, plan, "--jobs", "2")
    before = _interrupt_once_checkpointed(student, first, signal.SIGKILL)
    first_out = first.communicate()[0]
    state = job_state(student)
    second = _runner(where, plan, "--jobs", "2")
    second_out = second.communicate()[0]
    return SimpleNamespace(where=where, student=student, before=before, state_between=state,
                           first=(first.returncode, first_out), second=(second.returncode, second_out))  # fmt: skip


@pytest.fixture(scope="session")
def submitit_plan(tmp_path_factory, data_dir, plan):
    """The plan through submitit's local executor, its distilled student's job sent SIGUSR2 (what SLURM sends
    before a preemption or the time limit) after its first epoch."""
    where = _where(tmp_path_factory.mktemp("submitit-plan"), data_dir)
    student = _distilled_student(plan, where)
    runner = _runner(where, plan, "--executor", "local", "--jobs", "2")
    before = _interrupt_once_checkpointed(student, runner, signal.SIGUSR2)
    out = runner.communicate()[0]
    return SimpleNamespace(where=where, student=student, before=before, run=(runner.returncode, out))


def test_jobs_2_writes_the_same_results_as_sequential(sequential_plan, parallel_plan):
    sequential = _numbers(sequential_plan["results_dir"])
    assert len(sequential) == 3  # teacher, 2 students (attention reuses a student's run)
    assert _numbers(parallel_plan.where["results_dir"]) == sequential


def test_a_killed_worker_resumes_its_job_on_the_next_run(parallel_plan):
    code, out = parallel_plan.first
    assert code == 1 and "worker killed by SIGKILL" in out, out
    assert "not run: it needs train_titn.ipynb" in out, "attention reuses the killed student's run: it must wait"
    assert parallel_plan.state_between[0] == "interrupted"
    code, out = parallel_plan.second
    assert code == 0 and "plan done: 2 ran, 2 cached, 0 failed" in out, out
    assert _resumed(parallel_plan.student, parallel_plan.before)


def test_submitit_local_executor_runs_the_plan_with_its_dependencies(plan, sequential_plan, submitit_plan):
    code, out = submitit_plan.run
    assert code == 0 and "plan done: 4 ran, 0 cached, 0 failed" in out, out
    lines = out.splitlines()

    def line_of(*words):
        return next(i for i, line in enumerate(lines) if all(w in line for w in words))

    assert line_of("done", "train_teacher") < line_of("running", "train_titn", "'paper'")  # the teacher it needs
    assert line_of("done", "train_titn", "'paper'") < line_of("running", "attention")  # the run it reuses
    assert _numbers(submitit_plan.where["results_dir"]) == _numbers(sequential_plan["results_dir"])
    for job in load_plan(plan, submitit_plan.where):
        assert job_state(job)[0] == "done"


def test_a_preempted_submitit_job_is_requeued_and_resumes(submitit_plan):
    logs = "".join(p.read_text() for p in submitit_plan.student.state_dir.glob("submitit/*/*_log.out"))
    assert "Requeued job" in logs and "Job completed successfully" in logs
    assert _resumed(submitit_plan.student, submitit_plan.before)


def test_two_runners_never_run_one_job_twice(tmp_path, data_dir):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "defaults: {dataset: mnist, profile: smoke}\n"
        "jobs:\n  - notebook: train_titn.ipynb\n    parameters: {epochs: 1}\n    matrix: {seed: [0, 1]}\n"
    )
    where = _where(tmp_path, data_dir)
    # two terminals, same plan, same folders, each with half the cores (oversubscribed OpenMP threads spin for minutes)
    runners = [_runner(where, plan, threads=Pool(2).threads) for _ in range(2)]
    outputs = [r.communicate()[0] for r in runners]
    assert [r.returncode for r in runners] == [0, 0], outputs
    for job in load_plan(plan, where):
        assert job.is_complete()
        assert sum(out.count(f"running  {job.label()}") for out in outputs) == 1, outputs
    assert sum(int(re.search(r"plan done: (\d+) ran", out)[1]) for out in outputs) == 2


HOLD_LOCK = "import sys, time; from titn_core.joblock import JobLock; JobLock(sys.argv[1]).acquire(); print('held')"
HOLD_LOCK += "; sys.stdout.flush(); time.sleep(600)"  # a runner that holds a job, until it is killed


def test_a_lock_is_exclusive_and_a_dead_runners_lock_is_taken_over_at_once(tmp_path):
    path = tmp_path / "job.lock"
    other = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline().strip() == "held"
    assert holder(path)["pid"] == other.pid
    assert not JobLock(path).acquire()
    other.kill()
    other.wait()
    assert path.exists() and holder(path) is None, "the killed runner's lock file stays, and it is free"
    lock = JobLock(path)
    assert lock.acquire(), "taken over at once, not waited on"
    assert holder(path)["pid"] == os.getpid()
    lock.release()


def test_jobs_wait_for_the_teacher_run_they_need_and_for_shared_runs():
    # teacher, student kd=none, student kd=paper, ablation with distilled variants, attention (reuses kd=paper's run)
    assert dependencies(load_plan(SMOKE)) == [set(), set(), {0}, {0}, {0, 2}]
    # without the teacher job (--where), the first distilled student trains the teacher and the others wait for it
    students = [j for j in load_plan(ROOT / "plans" / "paper.yaml") if j.matches({"notebook": "train_titn"})]
    students = [j for j in students if j.matches({"dataset": "cifar10"})]
    distilled = [i for i, j in enumerate(students) if j.parameters.get("kd") == "paper"]
    deps = dependencies(students)
    assert len(distilled) == 3 and [deps[i] for i in distilled] == [set(), {distilled[0]}, {distilled[0]}]
    assert all(not deps[i] for i in range(len(students)) if i not in distilled)


class FakeJob:
    def __init__(self, name: str, tmp_path: Path):
        self.name, self.lock_path, self.failed_path, self.finished = name, tmp_path / f"{name}.lock", Path(name), False

    def label(self) -> str:
        return self.name

    def is_complete(self) -> bool:
        return self.finished


class ScriptedLauncher:
    """Ends each job as told: `ran`, `failed`, or `busy` (another runner won the race for its lock and finished it)."""

    submits_ahead, poll_seconds = False, 0.0

    def __init__(self, script: dict[str, str]):
        self.script, self.started = script, []

    def start(self, job, after, announce):
        self.started.append(job.name)
        status = self.script[job.name]
        job.finished = status in ("ran", "busy")
        return Finished(Outcome(status, "boom" if status == "failed" else ""))


def test_the_scheduler_skips_what_a_failed_job_would_feed_and_awaits_what_another_runner_holds(tmp_path, monkeypatch):
    jobs = [FakeJob(name, tmp_path) for name in ("teacher", "student", "attention", "other", "last")]
    monkeypatch.setattr(jobgraph, "dependencies", lambda jobs: [set(), {0}, {1}, set(), set()])
    launcher = ScriptedLauncher({"teacher": "failed", "other": "busy", "last": "ran"})
    summary = Scheduler(jobs, launcher).run()
    assert launcher.started == ["teacher", "other", "last"]
    assert (summary["ran"], summary["cached"]) == (1, 1)  # "other" finished by the runner that held it
    assert [(f["job"], f["error"]) for f in summary["failed"]] == [
        ("teacher", "boom"),
        ("student", "not run: it needs teacher, which failed"),
        ("attention", "not run: it needs student, which failed"),
    ]


def test_the_pool_hands_out_whole_gpus_or_splits_the_cores():
    pool = Pool(3, gpus=["0", "1", "2", "3"], cores=8)
    pair, one = pool.take(2), pool.take(1)
    assert (pair.env["CUDA_VISIBLE_DEVICES"], one.env["CUDA_VISIBLE_DEVICES"]) == ("0,1", "2")
    assert pool.take(2) is None, "one GPU left"
    pool.give_back(pair)
    assert pool.take(2).env["CUDA_VISIBLE_DEVICES"] == "0,1"
    with pytest.raises(TITNError, match="asks for 8 GPUs but this machine has 4"):
        pool.check(8, "train_titn.ipynb")
    cpu = Pool(4, gpus=[], cores=2)  # more jobs than cores: no oversubscription
    assert (cpu.slots, cpu.threads) == (2, 1) and cpu.take().env["OMP_NUM_THREADS"] == "1"
    assert Pool(1, gpus=[], cores=2).take().env["OMP_NUM_THREADS"] == "2"


def test_a_job_given_several_gpus_trains_its_runs_with_ddp_first(monkeypatch):
    calls = []
    monkeypatch.setattr(worker.torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(worker.subprocess, "run", lambda cmd: calls.append(cmd) or SimpleNamespace(returncode=0))
    monkeypatch.setattr(worker, "run_job", lambda job: calls.append("notebook"))
    job = Job("train_titn.ipynb", {"dataset": "cifar10", "profile": "paper"}, gpus=4)
    worker.execute(job)
    torchrun, notebook = calls
    assert torchrun[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert torchrun[-1] == "--train-runs" and json.loads(torchrun[-2]) == job.parameters and notebook == "notebook"
    calls.clear()
    worker.execute(Job("train_titn.ipynb", {"dataset": "cifar10", "profile": "paper"}))  # one GPU: no torchrun
    assert calls == ["notebook"]


def test_slurm_jobs_carry_their_options_and_dependencies(tmp_path):
    from submitit.slurm.slurm import _make_sbatch_string

    job = Job("train_titn.ipynb", {"dataset": "cifar10", "profile": "paper", "kd": "paper"}, gpus=4)
    options = ClusterOptions("slurm", partition="gpu", time_min=600, extra=parse_extra(["account=proj", "--qos=high"]),
                             setup=["module load cuda"])  # fmt: skip
    text = _make_sbatch_string(command="run", folder=tmp_path, **slurm_parameters(options, job, ["101", "102"]))
    for line in ("dependency=afterok:101:102", "kill-on-invalid-dep=yes", "partition=gpu", "time=600",
                 "gpus-per-node=4", "account=proj", "qos=high", f"job-name=titn-{job.name}"):  # fmt: skip
        assert f"#SBATCH --{line}" in text
    assert "module load cuda" in text
    assert "dependency" not in slurm_parameters(options, job, [])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--jobs", "0"], "--jobs must be 1 or more"),
        (["--executor", "kubernetes"], "unknown executor 'kubernetes'; use --executor slurm"),
        (["--partition", "gpu"], "--partition only applies to SLURM jobs; add --executor slurm"),
        (["--executor", "slurm", "--slurm", "account"], "needs the form OPTION=VALUE"),
    ],
)
def test_bad_options_stop_with_one_line_naming_the_fix(args, message, tmp_path, capsys):
    assert main(["run", "--plan", str(SMOKE), "--results-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_a_plan_entry_asking_for_no_gpus_is_rejected(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("jobs:\n  - notebook: train_titn.ipynb\n    gpus: 0\n")
    with pytest.raises(TITNError, match="job entry 1 has gpus: 0; give a whole number of GPUs"):
        load_plan(plan)


def test_the_estimate_counts_the_runs_the_plan_trains(smoke_plan):
    where, _ = smoke_plan  # the whole smoke plan, ablation variants included
    table = plan_cost.estimate(load_plan(SMOKE, where))
    written = [json.loads(p.read_text()) for p in Path(where["results_dir"]).glob("*/metrics.json")]
    total = plan_cost.totals(table)
    assert total["jobs"] == 5 and total["runs"] == len(written)
    assert total["epochs"] == sum(m["epochs"] for m in written)
    assert table.loc[table["notebook"] == "attention.ipynb", "new runs"].item() == 0  # reuses its student's run
    assert total["gpu_hours"] > 0 and round(plan_cost.GPU_FLOPS_PER_S / 1e12, 1) == 26.6
    cfg = build_config("cifar10", "cpu")  # a student of several blocks: depth 1 and 2 extrapolate to the full count
    assert cfg.model.depth > 2 and plan_cost.forward_flops(cfg) == count_flops(build_model(cfg), cfg.image_shape)


def test_the_estimate_counts_a_teacher_that_only_its_students_train(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("defaults: {profile: smoke, dataset: mnist}\njobs:\n  - notebook: train_titn.ipynb\n"
                    "    parameters: {kd: paper}\n")  # fmt: skip
    (row,) = plan_cost.estimate(load_plan(plan)).to_dict("records")
    teacher, student = build_config("mnist", "smoke", kind="teacher"), build_config("mnist", "smoke", kd="paper")
    assert row["new runs"] == 2 and row["epochs"] == teacher.train.epochs + student.train.epochs


def test_a_plan_whose_jobs_would_write_one_record_is_refused(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("defaults: {profile: smoke, dataset: mnist}\njobs:\n  - notebook: ablation.ipynb\n"
                    "    matrix: {epochs: [2, 4]}\n")  # fmt: skip
    with pytest.raises(TITNError, match="would both write .*ablation.job.json"):
        load_plan(plan)
