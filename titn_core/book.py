"""What the book shows, computed from results/ at build time: paper-vs-ours tables, per-role runs, figures' data.

Every number in the book comes from a file under the results folder ($TITN_RESULTS_DIR, default `results/`);
the only typed-in numbers are the paper's own (PAPER, with its source). A run takes part in the main comparison
only if its config hash equals the config the plans run for that role, so ablation variants never leak in.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto in a kernel without ipywidgets

from . import attention as attention_maps  # noqa: E402
from . import results  # noqa: E402
from .ablations import CONTRASTS  # noqa: E402
from .experiments import ROOT, load_plan, teacher_run_config, titn_config  # noqa: E402
from .notebook import ATTENTION_FILE  # noqa: E402
from .trainer import PREDICTIONS_FILE  # noqa: E402

PAPER_SOURCE = "Rahman et al. 2025, arXiv 2502.16762, abstract"
PAPER = {  # top-1 / top-5 (%) as the paper reports them; MNIST top-5 is not given
    "mnist": {"top1": 99.56, "top5": None},
    "cifar10": {"top1": 92.03, "top5": 99.80},
    "cifar100": {"top1": 74.71, "top5": 92.28},
}
DATASET_TITLES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
PROFILE_PREFERENCE = ("paper", "cpu", "smoke")  # the book shows the largest budget that has a distilled TITN
ROLES = {  # role -> (notebook parameters of the run that plays it)
    "TITN + KD (paper)": {"kd": "paper"},
    "TITN (no KD)": {"kd": "none"},
    "ViT (no KD)": {"kd": "none", "model": "vit"},  # the plain-ViT twin of the profile's TITN preset
    "teacher": None,
}
STUDENT = "TITN + KD (paper)"
# what this project set out to reach on its 2-core CPU (cpu profile, distilled TITN, at most 3 hours per run): the
# best a small model and tens of epochs can plausibly do, well below the paper's GPU numbers
CPU_TARGETS = {"mnist": 99.3, "cifar10": 85.0, "cifar100": 55.0}
CPU_HOURS_PER_RUN = 3.0
# val top-1 thresholds for time to accuracy: set where every role of the cpu profile gets, so the table compares times
TIME_TO_ACCURACY = {"mnist": 98.0, "cifar10": 70.0, "cifar100": 50.0}


def results_dir() -> Path:
    return Path(os.environ.get("TITN_RESULTS_DIR") or ROOT / "results")


def run_command(dataset: str, profile: str, role: str, seed: int = 0) -> str:
    """The CLI command that trains one role's run (what a reader copies to fill a gap)."""
    if role == "teacher":
        return f"python -m titn_core teacher --dataset {dataset} --profile {profile}"
    params = ROLES[role]
    parts = ["python -m titn_core train", f"--dataset {dataset}", f"--profile {profile}", f"--kd {params['kd']}"]
    if "model" in params:
        parts.append(f"--model {_vit_twin(profile)}")
    if seed:
        parts.append(f"--seed {seed}")
    return " ".join(parts)


def _vit_twin(profile: str) -> str:
    """The profile's TITN preset without its inner transformer (titn-tiny -> vit-tiny)."""
    return titn_config(dataset="mnist", profile=profile).model.preset.replace("titn", "vit")


def _role_hash(dataset: str, profile: str, role: str, seed: int, epochs: int = 0) -> str:
    """Config hash of the run that plays `role` (epochs 0: the profile's schedule)."""
    if role == "teacher":
        return teacher_run_config(dataset=dataset, profile=profile).hash()
    params = dict(ROLES[role])
    if "model" in params:
        params["model"] = _vit_twin(profile)
    return titn_config(dataset=dataset, profile=profile, seed=seed, epochs=epochs, **params).hash()


def main_runs(index: pd.DataFrame | None = None) -> pd.DataFrame:
    """Complete runs that play a role in the main comparison, with a `role` column."""
    index = results.load(results_dir()) if index is None else index
    if index.empty:
        return index.assign(role=pd.Series(dtype=str))
    roles = {}
    for (dataset, profile, seed), _ in index.groupby(["dataset", "profile", "seed"]):
        for role in ROLES:
            roles[_role_hash(dataset, profile, role, int(seed))] = role
    out = index.assign(role=index["config_hash"].map(roles)).dropna(subset=["role"])
    return out.reset_index(drop=True)


def shown_profile(runs: pd.DataFrame, dataset: str) -> str | None:
    have = set(runs.loc[(runs["dataset"] == dataset) & (runs["role"] == STUDENT), "profile"])
    return next((p for p in PROFILE_PREFERENCE if p in have), None)


def shown_runs(runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The dataset's main runs on the profile its chapter shows (empty when it has no distilled student)."""
    profile = shown_profile(runs, dataset) if not runs.empty else None
    return runs[(runs["dataset"] == dataset) & (runs["profile"] == profile)]


def _mean_sd(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "-"
    if len(values) == 1:
        return f"{values.iloc[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def _budget(rows: pd.DataFrame) -> str:
    r = rows.iloc[0]
    hours = rows["wall_seconds"].mean() / 3600
    return f"{r['profile']} profile: {int(r['epochs'])} epochs, {hours:.2f} h/run on {_device(r)}"


def _runs_and_seeds(rows: pd.DataFrame) -> str:
    """ "2 (0, 1)": how many runs are averaged and which seeds they used."""
    return f"{len(rows)} (" + ", ".join(str(int(s)) for s in sorted(rows["seed"])) + ")"


def _device(row) -> str:
    return "2-core CPU" if row["device"] == "cpu" else str(row["device"])


def archived_runs(name: str, dataset: str) -> pd.DataFrame:
    """Runs set aside in results/archive/<name>/ (e.g. CIFAR-10 on a JPEG-q75 copy), one row per model,
    distillation set-up and schedule: shown as what they are, never mixed into a table of current runs."""
    index = results.load(results_dir() / "archive" / name)
    index = index[index["dataset"] == dataset] if not index.empty else index
    if index.empty:
        return pd.DataFrame()
    index = index.assign(kd=index["kd"].fillna("(teacher)"))
    rows = [
        {"data": group["data_variant"].iloc[0], "model": model, "KD": kd, "epochs": int(epochs),
         "runs (seeds)": _runs_and_seeds(group), "test top-1": _mean_sd(group["test_top1"])}
        for (model, kd, epochs), group in index.groupby(["model", "kd", "epochs"], sort=True)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def teacher_table(index: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Every complete teacher run of a dataset: accuracy (plain, and with test-time augmentation where scored),
    schedule, hours and machine."""
    rows = index[(index["dataset"] == dataset) & (index["kind"] == "teacher")] if not index.empty else index
    return pd.DataFrame(
        [{"teacher": r.model, "profile": r.profile, "data": r.data_variant, "epochs": int(r.epochs),
          "test top-1": r.test_top1, "with TTA": r.test_top1_tta if pd.notna(r.test_top1_tta) else "-",
          "wall h": round(r.wall_seconds / 3600, 2), "machine": r.machine} for r in rows.itertuples()]
    )  # fmt: skip


def data_provenance(datasets=tuple(DATASET_TITLES)) -> pd.DataFrame:
    """What data each dataset's runs see on this machine: its label, file checksum, and how many images are only
    approximations of the originals (from the file's own masks), with the most they can move a test top-1."""
    from .data import load_arrays
    from .errors import TITNError

    rows = []
    for dataset in datasets:
        try:
            a = load_arrays(dataset, download=False)
        except TITNError:
            rows.append({"dataset": DATASET_TITLES[dataset], "data": "not on this machine"})
            continue
        approx = 0 if a.exact_test is None else int((~a.exact_test).sum())
        rows.append(
            {"dataset": DATASET_TITLES[dataset], "data": a.variant, "sha256": (a.sha256 or "-")[:12],
             "train images": len(a.y_train), "test images": len(a.y_test), "approximate test images": approx,
             "most they can move test top-1 (points)": round(100 * approx / len(a.y_test), 2)}
        )  # fmt: skip
    return pd.DataFrame(rows)


def headline(runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per dataset: the paper's top-1/top-5 next to our distilled TITN's, with budget, data variant and gap."""
    runs = main_runs() if runs is None else runs
    rows = []
    for dataset, paper in PAPER.items():
        profile = shown_profile(runs, dataset) if not runs.empty else None
        base = {"dataset": DATASET_TITLES[dataset], "paper top-1": paper["top1"], "paper top-5": paper["top5"]}
        if profile is None:
            rows.append(base | {"ours top-1": "not run", "budget": run_command(dataset, "cpu", STUDENT)})
            continue
        ours = runs[(runs["dataset"] == dataset) & (runs["role"] == STUDENT) & (runs["profile"] == profile)]
        gap = ours["test_top1"].mean() - paper["top1"]
        rows.append(
            base
            | {
                "data": ours["data_variant"].iloc[0],
                "ours top-1": _mean_sd(ours["test_top1"]),
                "ours top-5": _mean_sd(ours["test_top5"]),
                "gap (top-1)": f"{gap:+.2f}",
                "runs (seeds)": _runs_and_seeds(ours),
                "budget": _budget(ours),
            }
        )
    return pd.DataFrame(rows).astype(object).fillna("-")


def headline_sentence(table: pd.DataFrame, n_runs: int) -> str:
    """The headline table in one sentence, naming each dataset not run instead of leaving a hole in the sentence."""
    ran = table["ours top-1"] != "not run"
    reached = [f"{r['ours top-1']} % on {r['data']}" for _, r in table[ran].iterrows()]
    text = "No distilled TITN run is in results/ yet"
    if reached:
        text = f"Our distilled TITN reaches {_and(reached)}, from {n_runs} completed runs in the main comparison"
    for dataset in table.loc[~ran, "dataset"]:
        text += f"; {dataset} has not been run yet (see its chapter)"
    return text + "."


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def cpu_targets(runs: pd.DataFrame) -> pd.DataFrame:
    """The cpu profile's targets against what its distilled TITN reached, and whether each run kept to the budget."""
    rows = []
    for dataset, target in CPU_TARGETS.items():
        ours = runs[(runs["dataset"] == dataset) & (runs["role"] == STUDENT) & (runs["profile"] == "cpu")]
        row = {"dataset": DATASET_TITLES[dataset], "target top-1": target}
        if ours.empty:
            rows.append(row | {"reached": "not run", "met": "-"})
            continue
        hours = ours["wall_seconds"].max() / 3600
        reached = ours["test_top1"].mean()
        met = "yes" if reached >= target else f"no ({reached - target:+.2f})"
        if hours > CPU_HOURS_PER_RUN:
            met += f"; over the {CPU_HOURS_PER_RUN:g} h budget"
        rows.append(
            row | {"data": ours["data_variant"].iloc[0], "reached": _mean_sd(ours["test_top1"]),
                   "longest run (h)": round(hours, 2), "met": met}
        )  # fmt: skip
    return pd.DataFrame(rows).astype(object).fillna("-")


def _signed_difference(top1: dict[str, pd.Series], a: str, b: str, what: str) -> str:
    """ "what: +1.23 points (a vs b; n vs m runs)", or "" when either role has no run."""
    if a not in top1 or b not in top1:
        return ""
    d = top1[a].mean() - top1[b].mean()
    runs = f"{len(top1[a])} vs {len(top1[b])} runs"
    return f"{what}: {d:+.2f} points ({_mean_sd(top1[a])} vs {_mean_sd(top1[b])}; {runs})"


def findings(runs: pd.DataFrame) -> str:
    """The main comparison as signed differences per dataset (markdown bullets), computed, never typed: what
    distillation added, what the inner transformer added over a ViT, and how far the teacher stayed ahead."""
    lines = []
    for dataset in PAPER:
        sub = shown_runs(runs, dataset)
        if sub.empty:
            continue
        top1 = {role: rows["test_top1"] for role, rows in sub.groupby("role")}
        parts = [
            _signed_difference(top1, STUDENT, "TITN (no KD)", "distillation (TITN + KD minus TITN)"),
            _signed_difference(top1, "TITN (no KD)", "ViT (no KD)", "inner transformer (TITN minus ViT, no KD)"),
            _signed_difference(top1, "teacher", STUDENT, "teacher minus its distilled student"),
        ]
        parts = [p for p in parts if p]
        if parts:
            first = sub.iloc[0]
            lines.append(f"- **{first['data_variant']}** ({first['profile']} profile): " + "; ".join(parts) + ".")
    return "\n".join(lines)


def comparison(runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Teacher vs distilled TITN vs TITN without KD vs ViT, same dataset, profile and budget."""
    sub = shown_runs(runs, dataset)
    profile = shown_profile(runs, dataset)
    rows = []
    for role in ROLES:
        r = sub[sub["role"] == role]
        if r.empty:
            rows.append({"role": role, "test top-1": "not run yet", "command": run_command(dataset, profile, role)})
            continue
        rows.append(
            {
                "role": role,
                "model": r["model"].iloc[0],
                "test top-1": _mean_sd(r["test_top1"]),
                "test top-5": _mean_sd(r["test_top5"]),
                "runs (seeds)": _runs_and_seeds(r),
                "params (M)": round(r["params"].iloc[0] / 1e6, 2),
                "MFLOPs/img": round(r["flops"].iloc[0] / 1e6, 1),
                "epochs": str(int(r["epochs"].iloc[0])),
                "wall h/run": round(r["wall_seconds"].mean() / 3600, 2),
                "train s/epoch (median)": _median_epoch_seconds(r),
            }
        )
    return pd.DataFrame(rows).astype(object).fillna("-")


def _median_epoch_seconds(rows: pd.DataFrame) -> float:
    """The typical epoch's training time over every epoch of these runs. Unlike the total wall time, one epoch
    slowed by other work on the machine (a test run, a resumed session) barely moves it."""
    seconds = pd.concat([results.history(path)["epoch_train_seconds"] for path in rows["path"]])
    return round(float(seconds.median()), 1)


def _schedules(index: pd.DataFrame, dataset: str, profile: str):
    """(role, epochs, runs) for each student role at every schedule length in `index`, matched by config hash, so
    a variant that differs in anything but epochs and seed is never mixed in."""
    students = index[(index["dataset"] == dataset) & (index["profile"] == profile) & (index["kind"] == "student")]
    for role in (r for r in ROLES if r != "teacher"):
        for epochs in sorted(students["epochs"].unique()):
            hashes = {_role_hash(dataset, profile, role, int(seed), int(epochs)) for seed in students["seed"].unique()}
            hit = students[students["config_hash"].isin(hashes)]
            if not hit.empty:
                yield role, int(epochs), hit


def budget_table(index: pd.DataFrame, dataset: str, profile: str) -> pd.DataFrame:
    """Each student role at every schedule length found in `index` (the main runs, the ablations' shorter runs,
    any longer run): what more epochs buy, with the hours they cost (and the median epoch, which a run slowed by
    other work on the machine does not inflate)."""
    rows = [
        {"role": role, "epochs": epochs, "runs (seeds)": _runs_and_seeds(hit),
         "test top-1": _mean_sd(hit["test_top1"]), "wall h/run": round(hit["wall_seconds"].mean() / 3600, 2),
         "train s/epoch (median)": _median_epoch_seconds(hit)}
        for role, epochs, hit in _schedules(index, dataset, profile)
    ]  # fmt: skip
    columns = ["role", "epochs", "runs (seeds)", "test top-1", "wall h/run", "train s/epoch (median)"]
    return pd.DataFrame(rows, columns=columns)


def equal_compute_note(index: pd.DataFrame, dataset: str, profile: str) -> str:
    """The inner transformer at (about) equal compute rather than equal epochs: the undistilled TITN's main
    schedule against the ViT schedule closest to it in training hours (median epoch x epochs, so contention
    from other work on the machine does not tilt it). Empty until a ViT schedule other than the main one exists."""
    main_epochs = titn_config(dataset=dataset, profile=profile).train.epochs
    found = {(role, epochs): hit for role, epochs, hit in _schedules(index, dataset, profile)}
    titn = found.get(("TITN (no KD)", main_epochs))
    vits = {epochs: hit for (role, epochs), hit in found.items() if role == "ViT (no KD)" and epochs != main_epochs}
    if titn is None or not vits:
        return ""

    target = _median_epoch_seconds(titn) * main_epochs / 3600
    vit_hours = {epochs: _median_epoch_seconds(hit) * epochs / 3600 for epochs, hit in vits.items()}
    epochs = min(vit_hours, key=lambda e: abs(vit_hours[e] - target))
    vit = vits[epochs]
    diff = titn["test_top1"].mean() - vit["test_top1"].mean()
    return (
        f"**At about equal compute**: TITN (no KD), {main_epochs} epochs, {_mean_sd(titn['test_top1'])} in "
        f"{target:.2f} h of training, against ViT (no KD), {epochs} epochs, {_mean_sd(vit['test_top1'])} in "
        f"{vit_hours[epochs]:.2f} h (median epoch x epochs): TITN minus ViT {diff:+.2f} points "
        f"({len(titn)} vs {len(vit)} runs)."
    )


def teacher_note(runs: pd.DataFrame, dataset: str) -> str:
    """Whether the chapter's distilled runs learned from the teacher its table shows. A teacher whose weights were
    lost (a clean checkout before they were kept with the results) is retrained, and a CPU retraining is not
    bit-identical: then say how many runs learned from an earlier checkpoint, rather than one row standing for two."""
    shown = shown_runs(runs, dataset)
    teacher, students = shown[shown["role"] == "teacher"], shown.dropna(subset=["teacher_test_top1"])
    if teacher.empty or students.empty:
        return ""
    current = teacher["best_test_top1"].iloc[0]  # what its best.pt, the checkpoint students load, scores
    earlier = students[(students["teacher_test_top1"] - current).abs() > 1e-9]
    if earlier.empty:
        return ""
    scores = _and(sorted({f"{score:.2f}" for score in earlier["teacher_test_top1"]}))
    return (
        f"**Teachers.** The teacher row is the {teacher['model'].iloc[0]} teacher's latest training, whose best "
        f"checkpoint (the one students distil from) scores {current:.2f}. It was retrained after its weights were "
        f"lost (they were not yet kept with its results, and a CPU retraining is not bit-identical), so "
        f"{len(earlier)} of the {len(students)} distilled runs here learned from an earlier checkpoint scoring "
        f"{scores}. Each run's own teacher is `teacher_test_top1` in its `metrics.json`."
    )


def histories(runs: pd.DataFrame, dataset: str, seed: int = 0) -> dict[str, pd.DataFrame]:
    """role -> history of its seed-0 run on the shown profile."""
    sub = shown_runs(runs, dataset)
    sub = sub[sub["seed"] == seed]
    return {row.role: results.history(row.path) for row in sub.itertuples()}


def inner_note(runs: pd.DataFrame, dataset: str) -> str:
    """The paper's architectural claim in one sentence: what the inner transformer adds over a plain ViT of the same
    width at equal epochs (both without distillation), and at what multiple of the ViT's wall time."""
    sub = shown_runs(runs, dataset)
    titn, vit = sub[sub["role"] == "TITN (no KD)"], sub[sub["role"] == "ViT (no KD)"]
    if titn.empty or vit.empty:
        return ""
    diff = titn["test_top1"].mean() - vit["test_top1"].mean()
    cost = titn["wall_seconds"].mean() / vit["wall_seconds"].mean()
    return (f"Inner transformer, both without distillation, same epochs: TITN {_mean_sd(titn['test_top1'])} against "
            f"ViT {_mean_sd(vit['test_top1'])} test top-1, a difference of {diff:+.2f} points, for {cost:.1f}x the "
            f"ViT's wall time (runs (seeds): TITN {_runs_and_seeds(titn)}, ViT {_runs_and_seeds(vit)}).")  # fmt: skip


def wall_clock_note(curves: dict[str, pd.DataFrame], teacher_hours: float) -> str:
    """One sentence pricing distillation honestly: the distilled student's hours plus its teacher's."""
    if STUDENT not in curves or not teacher_hours:
        return ""
    own = curves[STUDENT]["wall_seconds"].iloc[-1] / 3600
    text = (f"Counting its teacher, the distilled student cost {teacher_hours:.2f} h (teacher) + {own:.2f} h "
            f"(student) = {teacher_hours + own:.2f} h of this machine")  # fmt: skip
    plain = curves.get("TITN (no KD)")
    if plain is not None:
        text += f", against {plain['wall_seconds'].iloc[-1] / 3600:.2f} h for TITN without distillation"
    return text + (
        ". The teacher is trained once and reused by every seed and ablation of the dataset, so its "
        "share shrinks as more students use it; wall times are as measured, including any contention."
    )


def confusion(runs: pd.DataFrame, dataset: str) -> pd.DataFrame | None:
    """The distilled student's test confusion matrix, if its notebook wrote one."""
    path = _student_dir(runs, dataset) / "confusion.csv" if _student_dir(runs, dataset) else None
    return pd.read_csv(path, index_col=0) if path and path.exists() else None


def per_class(runs: pd.DataFrame, dataset: str, seed: int = 0) -> pd.DataFrame | None:
    """Test top-1 per class for each role whose notebook wrote one, and what distillation changed per class."""
    sub = shown_runs(runs, dataset)
    sub = sub[sub["seed"] == seed]
    columns = {
        row.role: pd.read_csv(Path(row.path) / "per_class.csv", index_col="class")["top1"]
        for row in sub.itertuples()
        if (Path(row.path) / "per_class.csv").exists()
    }
    if not columns:
        return None
    table = pd.DataFrame(columns)
    if {STUDENT, "TITN (no KD)"} <= set(table.columns):
        table["KD gain"] = table[STUDENT] - table["TITN (no KD)"]
        table = table.sort_values("KD gain", ascending=False)
    return table.reset_index()


def teacher_agreement(runs: pd.DataFrame, dataset: str, seed: int = 0) -> pd.DataFrame | None:
    """How closely each student imitates the teacher on the test split: the share of images where their top-1
    classes agree (right or wrong). Distillation should raise it; the undistilled TITN and the ViT are the baseline
    that two good classifiers reach without imitating each other."""
    sub = shown_runs(runs, dataset)
    top1 = {}
    for row in sub.itertuples():
        path = Path(row.path) / PREDICTIONS_FILE
        if path.exists() and (row.role == "teacher" or row.seed == seed):
            with np.load(path) as saved:
                top1[row.role] = saved["top5"][:, 0]
    if "teacher" not in top1 or len(top1) < 2:
        return None
    teacher = top1.pop("teacher")
    return pd.DataFrame(
        [{"student": role, "agrees with teacher (%)": 100 * (pred == teacher).mean()} for role, pred in top1.items()]
    )


def transfer_note(classes: pd.DataFrame) -> str:
    """Does distillation move the student towards its teacher class by class? One sentence from `per_class`."""
    if not {"teacher", "KD gain"} <= set(classes.columns):
        return ""
    headroom = classes["teacher"] - classes["TITN (no KD)"]
    r = classes["KD gain"].corr(headroom)
    closed = 100 * classes["KD gain"].sum() / headroom.sum()
    return (f"Per class, distillation's gain against how far the teacher was ahead of the undistilled student: "
            f"Pearson r = {r:.2f} over {len(classes)} classes. Over all classes it closed {closed:.0f}% of that "
            "gap (one seed: read the per-class numbers as indicative).")  # fmt: skip


def attention(runs: pd.DataFrame, dataset: str):
    """(images, maps) saved by the attention notebook for the distilled student, or None."""
    run_dir = _student_dir(runs, dataset)
    path = run_dir / ATTENTION_FILE if run_dir else None
    return attention_maps.load(path) if path and path.exists() else None


def _student_dir(runs: pd.DataFrame, dataset: str) -> Path | None:
    sub = shown_runs(runs, dataset)
    sub = sub[sub["role"] == STUDENT]
    return Path(sub.sort_values("seed")["path"].iloc[0]) if not sub.empty else None


def ablations() -> pd.DataFrame:
    """Every ablation summary (one row per variant and seed) with its family, dataset and profile; within a family
    the datasets come in the book's order (MNIST first), whatever their folder names sort to."""
    frames = []
    for path in sorted((results_dir() / "ablations").glob("*/summary.csv")):
        family, dataset, profile = path.parent.name.rsplit("-", 2)
        frames.append(pd.read_csv(path).assign(family=family, dataset=dataset, profile=profile))
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    order = table["dataset"].map({d: i for i, d in enumerate(DATASET_TITLES)}).fillna(len(DATASET_TITLES))
    table = table.assign(_order=order).sort_values(["family", "_order"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def ablation_groups(table: pd.DataFrame):
    """((family, dataset, profile), rows) per ablation family run, in file order: what the chapter shows one by one."""
    return table.groupby(["family", "dataset", "profile"], sort=False) if not table.empty else []


def ablation_digest(table: pd.DataFrame) -> str:
    """One markdown bullet per family run with its computed reading (the inner family read as TITN minus ViT), so
    the introduction can say what the ablations found without repeating their tables."""
    lines = []
    for (family, _, profile), rows in ablation_groups(table):
        reading = contrast(family, rows) or ablation_note(ablation_summary(rows))
        budget = f"{profile} profile, {rows['epochs'].iloc[0]} epochs, {rows['seed'].nunique()} seed(s)"
        lines.append(f"- *{family}*, {rows['data_variant'].iloc[0]} ({budget}): {reading}")
    return "\n".join(lines)


def pending_runs(plan: Path, dataset: str, profile: str) -> list[str]:
    """The plan's training runs on `dataset` and `profile` not complete under the results folder ("TITN + KD
    (paper), 60 epochs, seed 0"), so a chapter names each planned run it cannot show yet instead of omitting it."""
    pending = []
    for job in load_plan(plan, {"results_dir": str(results_dir())}):
        p = job.parameters
        if Path(job.notebook).stem != "train_titn" or (p.get("dataset"), p.get("profile")) != (dataset, profile):
            continue
        if job.is_complete():
            continue
        model, kd = ("ViT" if "vit" in str(p.get("model", "")) else "TITN"), p.get("kd", "none")  # notebook defaults
        role = f"{model} (no KD)" if kd == "none" else f"{model} + KD ({kd})"
        epochs = p.get("epochs") or titn_config(dataset=dataset, profile=profile).train.epochs
        pending.append(f"{role}, {epochs} epochs, seed {p.get('seed', 0)}")
    return pending


def pending_ablations(plan: Path = ROOT / "plans" / "cpu.yaml") -> list[str]:
    """The plan's ablation families with no summary under the results folder yet ("inner on CIFAR-10, 10 epochs"),
    so a reader sees what is still coming rather than guessing why a family is absent."""
    pending = []
    for job in load_plan(plan, {"results_dir": str(results_dir())}):
        p = job.parameters
        if Path(job.notebook).stem == "ablation" and not (job.out_dir / "summary.csv").exists():
            epochs = f", {p['epochs']} epochs" if p.get("epochs") else ""
            pending.append(f"{p['family']} on {DATASET_TITLES[p['dataset']]}{epochs}")
    return pending


def ablation_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """One family's variants (in the family's order) with mean/sd top-1 over seeds and the difference from the
    family's first variant, its reference: the number an ablation is read by."""
    summary = rows.groupby("variant", sort=False).agg(
        top1=("test_top1", "mean"), sd=("test_top1", "std"), seeds=("seed", "count"),
        params_M=("params", lambda p: p.iloc[0] / 1e6), minutes=("wall_seconds", lambda s: s.mean() / 60),
        **({"epochs": ("epochs", "first")} if "epochs" in rows else {}),
    )  # fmt: skip
    summary.insert(2, f"vs {summary.index[0]}", summary["top1"] - summary["top1"].iloc[0])
    return summary.round(2)


def ablation_note(summary: pd.DataFrame) -> str:
    """One family's reading in a sentence: the best variant, its margin over the reference, and whether that margin
    clears the seed noise (twice the largest seed SD), or that there is one seed only and no noise estimate."""
    reference, best = summary.index[0], summary["top1"].idxmax()
    text = f"Best: **{best}** at {summary.loc[best, 'top1']:.2f}"
    if best == reference:
        return text + ", the reference itself: no variant beat it."
    margin = summary.loc[best, "top1"] - summary.loc[reference, "top1"]
    text += f", {margin:+.2f} points over {reference}."
    if summary["seeds"].min() < 2:
        return text + " One seed per variant, so no noise estimate: margins of a few tenths may be seed noise."
    noise = 2 * summary["sd"].max()
    verdict = "clears" if margin > noise else "is within"
    return text + f" That margin {verdict} twice the largest seed SD of the family ({noise:.2f})."


def teacher_mix_note(rows: pd.DataFrame, index: pd.DataFrame) -> str:
    """One family's distilled variants learned from different checkpoints of the same teacher (it was retrained
    between them): say which, since part of their differences may then be the teacher's. Empty otherwise."""
    columns = ["run_id", "teacher", "teacher_test_top1"]
    used = rows[["run_id", "variant"]].merge(index[columns], on="run_id").dropna(subset=["teacher_test_top1"])
    mixed = [t for t, group in used.groupby("teacher") if group["teacher_test_top1"].nunique() > 1]
    if not mixed:
        return ""
    groups = used[used["teacher"].isin(mixed)].groupby(["teacher", "teacher_test_top1"])["variant"]
    parts = [f"{t} scoring {score:.2f} for {', '.join(v.unique())}" for (t, score), v in groups]
    return (
        f"Not one teacher: the distilled variants learned from different checkpoints ({'; '.join(parts)}; the "
        "teacher was retrained in between), so part of their differences may be the teacher's."
    )


def contrast(family: str, rows: pd.DataFrame) -> str:
    """A family read as paired differences (inner: TITN minus ViT without and with KD, the paper's question; data:
    KD minus no KD at each training-set size), or "" for a family without pairs or without their runs."""
    if family not in CONTRASTS:
        return ""
    what, pairs = CONTRASTS[family]
    top1 = {variant: group["test_top1"] for variant, group in rows.groupby("variant")}
    parts = [_signed_difference(top1, variant, control, when) for when, (variant, control) in pairs.items()]
    parts = [p for p in parts if p]
    return f"{what}, " + "; ".join(parts) + "." if parts else ""


def ablation_across_datasets(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per family run on more than one dataset: each variant's difference from the family's reference, one column
    per dataset and budget, so a reader sees whether what MNIST showed carries over to the harder data."""
    columns: dict[str, dict[str, pd.Series]] = {}
    for (family, _, profile), rows in ablation_groups(table):
        if table.loc[table["family"] == family, "dataset"].nunique() < 2:
            continue
        summary = ablation_summary(rows)
        budget = f"{int(summary['epochs'].iloc[0])} ep" if "epochs" in summary else profile
        reference = f"vs {summary.index[0]}"  # the summary's difference column, named after the reference variant
        columns.setdefault(family, {})[f"{rows['data_variant'].iloc[0]} ({budget})"] = summary[reference]
    return {family: pd.DataFrame(deltas).rename_axis(next(iter(deltas.values())).name)
            for family, deltas in columns.items()}  # fmt: skip


def agreement_note(deltas: pd.DataFrame) -> str:
    """Whether the datasets agree: each one's best variant, and the rank correlation of the variants' differences
    (1: same order everywhere) between the first two datasets, over the variants both ran."""
    best = "; ".join(f"{column}: **{deltas[column].idxmax()}**" for column in deltas)
    both = deltas.iloc[:, :2].dropna()
    if len(both) < 3:
        return f"Best variant per dataset: {best}."
    rho = both.rank().corr().iloc[0, 1]
    return f"Best variant per dataset: {best}. Rank correlation of the variants between the first two: {rho:+.2f}."


def time_to_accuracy(runs: pd.DataFrame) -> pd.DataFrame:
    """Wall time until the validation top-1 first reaches the dataset's threshold, per main run; for a distilled
    student also with its teacher's training added (what it costs from scratch)."""
    teacher_minutes = {
        (r.dataset, r.profile): r.wall_seconds / 60 for r in runs[runs["role"] == "teacher"].itertuples()
    }
    rows = []
    for row in runs.sort_values(["dataset", "profile", "role", "seed"]).itertuples():
        hist = results.history(row.path)
        threshold = TIME_TO_ACCURACY[row.dataset]
        hit = hist[hist["val_top1"] >= threshold]
        minutes = hit["wall_seconds"].iloc[0] / 60 if not hit.empty else None
        with_teacher = teacher_minutes.get((row.dataset, row.profile)) if row.role == STUDENT else 0.0
        rows.append(
            {
                "dataset": DATASET_TITLES[row.dataset],
                "profile": row.profile,
                "role": row.role,
                "seed": row.seed,
                "threshold (val top-1)": threshold,
                "epoch reached": int(hit["epoch"].iloc[0]) if not hit.empty else None,
                "minutes": round(minutes, 1) if minutes is not None else None,
                "minutes incl. teacher": round(minutes + with_teacher, 1)
                if minutes is not None and with_teacher is not None
                else None,
            }
        )
    return pd.DataFrame(rows).astype(object).fillna("not reached")


def distillation_cost(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean training seconds per epoch with and without distillation (same student, profile and seed): the
    teacher's forward pass is the whole difference."""
    rows = []
    for (dataset, profile, seed), group in runs.groupby(["dataset", "profile", "seed"]):
        by_role = {r.role: results.history(r.path)["epoch_train_seconds"].mean() for r in group.itertuples()}
        kd, plain = by_role.get(STUDENT), by_role.get("TITN (no KD)")
        if kd and plain:
            rows.append(
                {"dataset": DATASET_TITLES[dataset], "profile": profile, "seed": seed, "s/epoch, no KD": round(plain),
                 "s/epoch, KD": round(kd), "KD / no KD": round(kd / plain, 2)}
            )  # fmt: skip
    return pd.DataFrame(rows)


def dataset_chapter(dataset: str) -> None:
    """Display a dataset chapter's tables and figures (what `book/<dataset>.md` shows), or what is missing."""
    from IPython.display import Markdown, display

    from . import report

    index = results.load(results_dir())
    runs = main_runs(index)
    profile = shown_profile(runs, dataset) if not runs.empty else None
    if profile is None:
        display(Markdown(f"**No distilled TITN run on {DATASET_TITLES[dataset]} yet.** Run:\n\n"
                         f"```\n{run_command(dataset, 'cpu', STUDENT)}\n```"))  # fmt: skip
        if not (teachers := teacher_table(index, dataset)).empty:
            display(Markdown("Teachers trained so far (the distilled runs will learn from the cpu profile's):"))
            display(teachers.style.hide(axis="index").format(precision=2))
        return
    runs = runs[runs["dataset"] == dataset]
    variant = runs["data_variant"].iloc[0]
    display(Markdown(f"Data: **{variant}**. Budget shown: the **{profile}** profile."))
    display(comparison(runs, dataset).style.hide(axis="index").format(precision=2))
    display(Markdown(inner_note(runs, dataset)))
    if note := teacher_note(runs, dataset):
        display(Markdown(note))
    shown = runs[runs["profile"] == profile]
    title = f"{variant}, {profile} profile"
    show(report.bars(shown, x="role", title=f"{title}: test top-1 per role (bars = mean, ticks = sd)"))

    display(Markdown("**Learning curves** (seed 0), per epoch and per wall-clock hour:"))
    curves = histories(runs, dataset)
    show(report.compare_curves(curves, f"{title}, seed 0"))
    teacher_hours = curves["teacher"]["wall_seconds"].iloc[-1] / 3600 if "teacher" in curves else 0.0
    show(report.accuracy_per_hour(curves, {STUDENT: teacher_hours}, f"{title}, seed 0: accuracy per hour"))
    display(Markdown(wall_clock_note(curves, teacher_hours)))
    budgets = budget_table(index, dataset, profile)
    if budgets.groupby("role")["epochs"].nunique().max() > 1:
        display(Markdown("Every schedule length on disk for each role (the ablations' shorter runs, any longer run):"))
        display(budgets.style.hide(axis="index").format(precision=2))
    if note := equal_compute_note(index, dataset, profile):
        display(Markdown(note))
    for plan in sorted((ROOT / "plans").glob(f"{dataset}-*.yaml")):
        if pending := pending_runs(plan, dataset, profile):
            command = f"python -m titn_core.experiments run --plan plans/{plan.name}"
            display(Markdown(f"**Planned in `plans/{plan.name}`, not run yet:** {'; '.join(pending)} (`{command}`)."))

    cm, classes, agreement = confusion(runs, dataset), per_class(runs, dataset), teacher_agreement(runs, dataset)
    if cm is not None or classes is not None or agreement is not None:
        display(Markdown("**What distillation transferred.**"))
    if cm is not None:
        show(report.confusion(cm, f"distilled TITN, {variant} test confusion matrix"))
    if classes is not None:
        display(Markdown("Test top-1 per class (seed 0), sorted by what distillation gained:"))
        display(classes.style.hide(axis="index").format(precision=1))
        display(Markdown(transfer_note(classes)))
    if agreement is not None:
        display(Markdown("How often each student's top-1 class is the teacher's on the test split (*fidelity*, as in "
                         "Stanton et al. 2021, *Does knowledge distillation really work?*, NeurIPS):"))  # fmt: skip
        display(agreement.style.hide(axis="index").format(precision=2))


def show(fig) -> None:
    """Display a figure where it is called (not at the end of the cell) and free it."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(fig)
    plt.close(fig)


def profile_table() -> pd.DataFrame:
    """The settings each profile trains with, read from the config code (so the book cannot drift from it)."""
    from .config import build_config

    rows = []
    for profile in ("smoke", "cpu", "paper"):
        for dataset in ("mnist", "cifar10"):
            s = build_config(dataset, profile, kd="paper")
            t = build_config(dataset, profile, kind="teacher")
            m, d = s.model, s.data
            aug = [f"crop±{d.crop_padding}"] + ["flip"] * d.flip + ["RandAugment"] * d.randaugment
            aug += [f"mixup {d.mixup_alpha}"] * bool(d.mixup_alpha) + [f"cutmix {d.cutmix_alpha}"] * bool(
                d.cutmix_alpha
            )
            rows.append(
                {
                    "profile": profile,
                    "dataset": DATASET_TITLES[dataset],
                    "student": f"{m.preset}: patch {m.patch_size}, word {m.word_size}, d={m.outer_dim}, "
                    f"c={m.inner_dim}, depth {m.depth}, heads {m.outer_heads}/{m.inner_heads}",
                    "epochs": s.train.epochs,
                    "batch": s.train.batch_size,
                    "lr (AdamW)": s.train.lr,
                    "precision": {"bf16": "bf16 autocast", "off": "fp32"}.get(s.train.amp, "bf16 on CUDA, else fp32"),
                    "augmentation": ", ".join(aug)
                    + (f", label smoothing {d.label_smoothing}" * bool(d.label_smoothing)),
                    "train images": "4096 subset" if d.train_subset else "all but 5000 held out for validation",
                    "teacher": f"{s.distill.teacher} ({t.train.epochs} epochs)",
                }
            )
    return pd.DataFrame(rows)
