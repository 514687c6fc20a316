"""The training results as the book's tables: which run plays which role, and DataFrames over results/.

Every function returns data (a DataFrame, a Series or a number), never a sentence: the chapters (book/*.md) write
the prose and paste numbers into it with myst-nb's glue. The only typed-in numbers are in `paper.py`. A run takes
part in the main comparison only if its config hash equals the config the plans run for its role, so ablation
variants never leak in.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto in a kernel without ipywidgets

from . import results  # noqa: E402
from .classes import named  # noqa: E402
from .experiments import ROOT, load_plan, teacher_run_config, titn_config  # noqa: E402
from .paper import PAPER  # noqa: E402
from .trainer import PREDICTIONS_FILE  # noqa: E402

DATASET_TITLES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
PROFILE_PREFERENCE = ("paper", "cpu", "smoke")  # the book shows the largest budget that has a distilled TITN
ROLES = {  # role -> (notebook parameters of the run that plays it)
    "TITN + KD (hard + feature)": {"kd": "paper"},  # the paper's terms, our reading: distillation token + feature
    "TITN (no KD)": {"kd": "none"},
    "ViT (no KD)": {"kd": "none", "model": "vit"},  # the plain-ViT twin of the profile's TITN preset
    "teacher": None,
}
STUDENT = "TITN + KD (hard + feature)"


def results_dir() -> Path:
    return Path(os.environ.get("TITN_RESULTS_DIR") or ROOT / "results")


def run_command(dataset: str, profile: str, role: str) -> str:
    """The CLI command that trains one role's run (what a reader copies to fill a gap)."""
    if role == "teacher":
        return f"python -m titn_core teacher --dataset {dataset} --profile {profile}"
    model = f" --model {_vit_twin(profile)}" if "model" in ROLES[role] else ""
    return f"python -m titn_core train --dataset {dataset} --profile {profile} --kd {ROLES[role]['kd']}{model}"


def _vit_twin(profile: str) -> str:
    """The profile's TITN preset without its inner transformer (titn-tiny -> vit-tiny)."""
    return titn_config(dataset="mnist", profile=profile).model.preset.replace("titn", "vit")


def _role_hash(dataset: str, profile: str, role: str, seed: int, epochs: int = 0) -> str:
    """Config hash of the run that plays `role` (epochs 0: the profile's schedule)."""
    if role == "teacher":
        return teacher_run_config(dataset=dataset, profile=profile).hash()
    return _student_role_config(dataset, profile, role, seed, epochs).hash()


def _student_role_config(dataset: str, profile: str, role: str, seed: int, epochs: int):
    params = dict(ROLES[role]) | ({"model": _vit_twin(profile)} if "model" in ROLES[role] else {})
    return titn_config(dataset=dataset, profile=profile, seed=seed, epochs=epochs, **params)


def _trained_alike_hashes(dataset: str, profile: str, role: str, seed: int, epochs: int) -> set[str]:
    """The role's hash, and the hash of the same training scored without test-time augmentation (the ablations
    skip it; it changes no weight), so the ablations' shorter runs count as schedules of the role."""
    cfg = _student_role_config(dataset, profile, role, seed, epochs)
    hashes = {cfg.hash()}
    cfg.train.tta = "none"
    return hashes | {cfg.hash()}


def main_runs(index: pd.DataFrame | None = None) -> pd.DataFrame:
    """Complete runs that play a role in the main comparison, with a `role` column."""
    index = results.load(results_dir()) if index is None else index
    roles = {
        _role_hash(dataset, profile, role, int(seed)): role
        for (dataset, profile, seed), _ in index.groupby(["dataset", "profile", "seed"])
        for role in ROLES
    }
    return index.assign(role=index["config_hash"].map(roles)).dropna(subset=["role"]).reset_index(drop=True)


def shown_profile(runs: pd.DataFrame, dataset: str) -> str | None:
    """The largest budget with a distilled TITN on `dataset`, or None."""
    have = set(runs.loc[(runs["dataset"] == dataset) & (runs["role"] == STUDENT), "profile"])
    return next((p for p in PROFILE_PREFERENCE if p in have), None)


def shown_runs(runs: pd.DataFrame, dataset: str, profile: str | None = None) -> pd.DataFrame:
    """The dataset's main runs on the profile its chapter shows (`profile` when it has no distilled student)."""
    return runs[(runs["dataset"] == dataset) & (runs["profile"] == (shown_profile(runs, dataset) or profile))]


def mean_sd(values: pd.Series) -> str:
    """ "mean ± sd" over seeds (two decimals), the value alone for one run, "-" for none."""
    values = values.dropna()
    if len(values) < 2:
        return f"{values.iloc[0]:.2f}" if len(values) else "-"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def with_tta(rows: pd.DataFrame) -> str:
    """The top-1 under test-time augmentation, with its kind ("flip" for the CIFAR students, "flip+shift" for the
    fastcnn teachers, "shift" for MNIST's); "-" where not scored."""
    value, kinds = mean_sd(rows["test_top1_tta"]), rows["tta"].dropna().unique()
    return value if value == "-" or not len(kinds) else f"{value} ({', '.join(kinds)})"


def number(value, spec: str = ".2f", missing: str = "n/a") -> str:
    """A number formatted for a sentence, or `missing` when a run it needs is absent (NaN or None)."""
    return missing if value is None or pd.isna(value) else format(value, spec)


def runs_and_seeds(rows: pd.DataFrame) -> str:
    """ "2 (0, 1)": how many runs are averaged and which seeds they used."""
    return f"{len(rows)} (" + ", ".join(str(int(s)) for s in sorted(rows["seed"])) + ")"


def role_means(shown: pd.DataFrame) -> pd.DataFrame:
    """Per role of a chapter's runs (`shown_runs`; every role, NaN if not run): mean test top-1 and hours per run."""
    means = shown.groupby("role")[["test_top1", "wall_seconds"]].mean().reindex(list(ROLES))
    return means.assign(hours=means.pop("wall_seconds") / 3600, runs=shown.groupby("role").size()).rename_axis("role")


def headline(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: the paper's top-1/top-5 next to our distilled TITN's, with budget, data variant and gap."""
    rows = []
    for dataset, paper in PAPER.items():
        base = {"dataset": DATASET_TITLES[dataset], "paper top-1": paper["top1"], "paper top-5": paper["top5"]}
        ours = shown_runs(runs, dataset)
        ours = ours[ours["role"] == STUDENT]
        if ours.empty:
            rows.append(base | {"ours top-1": "not run", "budget": run_command(dataset, "cpu", STUDENT)})
            continue
        r, hours = ours.iloc[0], ours["wall_seconds"].mean() / 3600
        rows.append(base | {"data": r["data_variant"], "ours top-1": mean_sd(ours["test_top1"]),
                            "ours top-5": mean_sd(ours["test_top5"]),
                            "ours top-1 with TTA": with_tta(ours),
                            "gap (top-1)": f"{ours['test_top1'].mean() - paper['top1']:+.2f}",
                            "runs (seeds)": runs_and_seeds(ours),
                            "budget": f"{r['profile']} profile: {int(r['epochs'])} epochs, {hours:.2f} h/run "
                                      f"on {r['machine']}"})  # fmt: skip
    return pd.DataFrame(rows).astype(object).fillna("-")


def yes_no(verdict: bool, missing: bool = False) -> str:
    """A verdict cell: "yes", "no", or "-" when there is nothing to judge."""
    return "-" if missing else ("yes" if verdict else "no")


def comparison(runs: pd.DataFrame, dataset: str, profile: str = "cpu") -> pd.DataFrame:
    """Teacher vs distilled TITN vs TITN without KD vs ViT, same dataset, profile and budget; a role not run yet
    gets the command that runs it (on `profile` when the dataset has no distilled student). The top-1 with
    test-time augmentation stands in a column of its own ("-" where not scored): the paper's numbers are plain."""
    sub, profile = shown_runs(runs, dataset, profile), shown_profile(runs, dataset) or profile
    rows = []
    for role in ROLES:
        r = sub[sub["role"] == role]
        if r.empty:
            rows.append({"role": role, "test top-1": "not run yet", "command": run_command(dataset, profile, role)})
            continue
        first = r.iloc[0]
        rows.append({"role": role, "model": first["model"], "test top-1": mean_sd(r["test_top1"]),
                     "test top-5": mean_sd(r["test_top5"]), "top-1 with TTA": with_tta(r),
                     "runs (seeds)": runs_and_seeds(r), "params (M)": round(first["params"] / 1e6, 2),
                     "MFLOPs/img": round(first["flops"] / 1e6, 1),
                     "epochs": str(int(first["epochs"])), "wall h/run": round(r["wall_seconds"].mean() / 3600, 2),
                     "train s/epoch (median)": median_epoch_seconds(r)})  # fmt: skip
    return pd.DataFrame(rows).astype(object).fillna("-")


def median_epoch_seconds(rows: pd.DataFrame) -> float:
    """The typical epoch's training time over every epoch of these runs. Unlike the total wall time, one epoch
    slowed by other work on the machine (a test run, a resumed session) barely moves it."""
    seconds = pd.concat([results.history(path)["epoch_train_seconds"] for path in rows["path"]])
    return round(float(seconds.median()), 1)


def teacher_checkpoints(shown: pd.DataFrame) -> pd.DataFrame:
    """Which teacher checkpoint the distilled runs of the chapter learned from (each run's `teacher_test_top1`),
    against the teacher row's own best checkpoint: a teacher retrained on a CPU is not bit-identical, so runs
    distilled before and after a retraining learned from different checkpoints."""
    teacher = shown.loc[shown["role"] == "teacher", "best_test_top1"]
    students = shown.dropna(subset=["teacher_test_top1"])
    table = students.groupby("teacher_test_top1").size().rename("distilled runs").reset_index()
    current = teacher.iloc[0] if not teacher.empty else np.nan
    same = (table["teacher_test_top1"] - current).abs() < 1e-9
    return table.assign(**{"the teacher row's checkpoint": same.map(yes_no)})


def schedules(index: pd.DataFrame, dataset: str, profile: str) -> pd.DataFrame:
    """Each student role at every schedule length in `index` (the main runs, the ablations' shorter runs, any
    longer run), matched by config hash so a variant that differs in anything but epochs and seed never mixes in:
    what more epochs buy, and the training hours they cost (median epoch x epochs, which contention barely moves)."""
    students = index[(index["dataset"] == dataset) & (index["profile"] == profile) & (index["kind"] == "student")]
    rows = []
    for role in list(ROLES)[:3]:
        for epochs in sorted(students["epochs"].unique()):
            hashes = set().union(*(_trained_alike_hashes(dataset, profile, role, int(s), int(epochs))
                                   for s in students["seed"].unique()))  # fmt: skip
            hit = students[students["config_hash"].isin(hashes)]
            if not hit.empty:
                median = median_epoch_seconds(hit)
                rows.append({"role": role, "epochs": int(epochs), "runs (seeds)": runs_and_seeds(hit),
                             "test top-1": mean_sd(hit["test_top1"]), "top1": hit["test_top1"].mean(),
                             "wall h/run": round(hit["wall_seconds"].mean() / 3600, 2),
                             "train s/epoch (median)": median,
                             "train h": round(median * epochs / 3600, 2)})  # fmt: skip
    return pd.DataFrame(rows, columns=["role", "epochs", "runs (seeds)", "test top-1", "top1", "wall h/run",
                                       "train s/epoch (median)", "train h"])  # fmt: skip


def equal_compute(table: pd.DataFrame, main_epochs: int) -> pd.DataFrame:
    """From `schedules`: the undistilled TITN's main schedule and the ViT schedule (other than the main one)
    closest to it in training hours, to read the inner transformer at about equal compute; empty without one."""
    titn = table[(table["role"] == "TITN (no KD)") & (table["epochs"] == main_epochs)]
    vits = table[(table["role"] == "ViT (no KD)") & (table["epochs"] != main_epochs)]
    if titn.empty or vits.empty:
        return table.iloc[:0]
    return pd.concat([titn, vits.loc[[(vits["train h"] - titn["train h"].iloc[0]).abs().idxmin()]]])


def histories(shown: pd.DataFrame, seed: int = 0) -> dict[str, pd.DataFrame]:
    """role -> history of its seed-0 run among a chapter's runs."""
    return {row.role: results.history(row.path) for row in shown[shown["seed"] == seed].itertuples()}


def student_file(shown: pd.DataFrame, name: str) -> Path | None:
    """A file the distilled student's lowest-seed run wrote (confusion.csv, attention.npz), if it exists."""
    sub = shown[shown["role"] == STUDENT].sort_values("seed")
    path = Path(sub["path"].iloc[0]) / name if not sub.empty else None
    return path if path and path.exists() else None


def student_confusion(shown: pd.DataFrame) -> pd.DataFrame | None:
    """The distilled student's test confusion matrix (its lowest-seed run's confusion.csv), None before it ran; read
    once for the chapter's heat map and its most-confused pairs."""
    path = student_file(shown, "confusion.csv")
    return pd.read_csv(path, index_col=0) if path is not None else None


def per_class(shown: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Test top-1 per class for each role whose notebook wrote one, and what distillation changed per class."""
    table = pd.DataFrame({
        row.role: _named_rows(pd.read_csv(Path(row.path) / "per_class.csv", index_col="class")["top1"], row.dataset)
        for row in shown[shown["seed"] == seed].itertuples() if (Path(row.path) / "per_class.csv").exists()
    })  # fmt: skip
    if {STUDENT, "TITN (no KD)"} <= set(table.columns):
        table["KD gain"] = table[STUDENT] - table["TITN (no KD)"]
        table = table.sort_values("KD gain", ascending=False)
    return table.reset_index() if not table.empty else table


def _named_rows(frame: pd.DataFrame | pd.Series, dataset: str) -> pd.DataFrame | pd.Series:
    return frame.set_axis(named(frame.index, dataset), axis=0)


def most_confused(confusion: pd.DataFrame, dataset: str, n: int = 10) -> pd.DataFrame:
    """The n (true, predicted) class pairs a model mistakes most often on the test split: what a heat map of 100
    classes cannot show. A pair's share is its images as a % of the true class's test images."""
    cm = _named_rows(confusion, dataset).set_axis(named(confusion.columns, dataset), axis=1)
    errors = cm.to_numpy().copy()
    np.fill_diagonal(errors, 0)
    pairs = pd.DataFrame(errors, index=cm.index, columns=cm.columns).stack().nlargest(n)
    true, predicted = pairs.index.get_level_values(0), pairs.index.get_level_values(1)
    share = 100 * pairs.to_numpy() / cm.sum(axis=1).loc[true].to_numpy()
    return pd.DataFrame(
        {"true class": true, "taken for": predicted, "test images": pairs.to_numpy(), "% of the class": share}
    )


def transfer(classes: pd.DataFrame) -> pd.Series:
    """Does distillation move the student towards its teacher class by class? From `per_class`: the Pearson r of
    the KD gain against the teacher's lead over the undistilled student, and the share of that lead it closed."""
    if not {"teacher", "KD gain"} <= set(classes.columns):
        return pd.Series({"r": np.nan, "closed %": np.nan, "classes": len(classes)})
    lead = classes["teacher"] - classes["TITN (no KD)"]
    closed = 100 * classes["KD gain"].sum() / lead.sum()
    return pd.Series({"r": classes["KD gain"].corr(lead), "closed %": closed, "classes": len(classes)})


def teacher_agreement(shown: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """How often each student's top-1 class is the teacher's on the test split (right or wrong): distillation
    should raise it; the undistilled TITN and the ViT are what two good classifiers reach without imitating."""
    top1 = {}
    for row in shown.itertuples():
        path = Path(row.path) / PREDICTIONS_FILE
        if path.exists() and (row.role == "teacher" or row.seed == seed):
            with np.load(path) as saved:
                top1[row.role] = saved["top5"][:, 0]
    teacher = top1.pop("teacher", None)
    agree = [{"student": r, "agrees with teacher (%)": 100 * (p == teacher).mean()} for r, p in top1.items()]
    return pd.DataFrame(agree if teacher is not None else [])


def pending_runs(dataset: str, profile: str) -> pd.DataFrame:
    """The training runs of the dataset's plans (plans/<dataset>-*.yaml) on `profile` not complete under the
    results folder, so a chapter names each planned run it cannot show yet instead of omitting it."""
    rows = []
    for plan in sorted((ROOT / "plans").glob(f"{dataset}-*.yaml")):
        for job in load_plan(plan, {"results_dir": str(results_dir())}):
            p = job.parameters
            if Path(job.notebook).stem != "train_titn" or (p.get("dataset"), p.get("profile")) != (dataset, profile):
                continue
            model, kd = ("ViT" if "vit" in str(p.get("model", "")) else "TITN"), p.get("kd", "none")  # the defaults
            role = f"{model} (no KD)" if kd == "none" else f"{model} + KD ({kd})"
            rows.append({"plan": f"plans/{plan.name}", "role": role,
                         "epochs": p.get("epochs") or titn_config(dataset=dataset, profile=profile).train.epochs,
                         "seed": p.get("seed", 0), "done": job.is_complete()})  # fmt: skip
    table = pd.DataFrame(rows, columns=["plan", "role", "epochs", "seed", "done"])
    return table[~table["done"].astype(bool)].drop(columns="done").reset_index(drop=True)


def styled(table: pd.DataFrame, missing: str, precision: int = 2):
    """The table as the page shows it (no index), or the chapter's words for what is missing when it is empty (an
    empty HTML table says nothing)."""
    from IPython.display import Markdown

    if table.empty:
        return Markdown(f"*{missing}*")
    return table.style.hide(axis="index").format(precision=precision, na_rep="-")
