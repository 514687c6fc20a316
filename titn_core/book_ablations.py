"""The ablations chapter's tables: every family's summary.csv under results/ablations/ as DataFrames.

Data only, like `book`: each family's variants against its reference, its paired contrasts (inner: TITN minus
ViT; data: KD minus no KD per training-set size), and whether the datasets agree. The chapter writes the prose.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pandas as pd

from .ablations import CONTRASTS, FAMILIES, family_configs
from .book import DATASET_TITLES, mean_sd, results_dir, yes_no
from .config import RunConfig
from .errors import TITNError
from .experiments import ROOT, load_plan
from .profiles import build_config
from .results import history
from .storage import read_json

NOISE = 2  # a margin is read as more than seed noise when it exceeds twice the family's largest seed SD


def ablations() -> pd.DataFrame:
    """Every ablation summary (one row per variant and seed) with its family, dataset and profile; within a family
    the datasets come in the book's order (MNIST first), whatever their folder names sort to."""
    names = ("family", "dataset", "profile")  # the folder is <family>-<dataset>-<profile>
    frames = [pd.read_csv(path).assign(**dict(zip(names, path.parent.name.rsplit("-", 2), strict=True)))
              for path in sorted((results_dir() / "ablations").glob("*/summary.csv"))]  # fmt: skip
    if not frames:
        return pd.DataFrame(columns=["family", "dataset", "profile", "variant", "seed", "test_top1"])
    table = pd.concat(frames, ignore_index=True)
    order = table["dataset"].map({d: i for i, d in enumerate(DATASET_TITLES)}).fillna(len(DATASET_TITLES))
    return table.iloc[order.sort_values(kind="stable").index].sort_values("family", kind="stable", ignore_index=True)


def groups(table: pd.DataFrame):
    """((family, dataset, profile), rows) per ablation family run, in file order: what the chapter shows one by one."""
    return table.groupby(["family", "dataset", "profile"], sort=False)


def _median_epoch_seconds(run_id: str) -> float:
    """A variant's typical epoch (NaN if its run folder is gone): unlike its wall time, not moved by one epoch that
    shared the machine with other work."""
    run_dir = results_dir() / run_id
    if not (run_dir / "history.csv").exists():
        return float("nan")
    return float(history(run_dir)["epoch_train_seconds"].median())


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """One family's variants (in the family's order) with mean/sd top-1 over seeds and the difference from the
    family's first variant, its reference: the number an ablation is read by. `minutes` is the wall time (with
    set-up such as caching teacher outputs), `epoch s` the median epoch's training seconds."""
    rows = rows.assign(epoch_seconds=rows["run_id"].map(_median_epoch_seconds))
    out = rows.groupby("variant", sort=False).agg(
        top1=("test_top1", "mean"), sd=("test_top1", "std"), seeds=("seed", "count"),
        params_M=("params", lambda p: p.iloc[0] / 1e6), minutes=("wall_seconds", lambda s: s.mean() / 60),
        epoch_s=("epoch_seconds", "mean"),
        **({"epochs": ("epochs", "first")} if "epochs" in rows else {}),
    )  # fmt: skip
    out.insert(2, f"vs {out.index[0]}", out["top1"] - out["top1"].iloc[0])
    return out.round(2)


def readings(table: pd.DataFrame) -> pd.DataFrame:
    """Per family run: its best variant, the margin over the reference, and the seed noise it is read against
    (twice the largest seed SD; NaN with one seed per variant, when there is no noise estimate)."""
    rows = []
    for (family, dataset, profile), group in groups(table):
        s = summary(group)
        best, noise = s["top1"].idxmax(), NOISE * s["sd"].max() if s["seeds"].min() > 1 else float("nan")
        margin = s.loc[best, "top1"] - s["top1"].iloc[0]
        rows.append({"family": family, "data": group["data_variant"].iloc[0], "profile": profile,
                     "epochs": group["epochs"].iloc[0], "seeds": group["seed"].nunique(),
                     "variants run": _variants_run(family, dataset, profile, s.index), "reference": s.index[0],
                     "best": best, "best top-1": s.loc[best, "top1"], "margin": margin, "seed noise": noise,
                     "clears the noise": "one seed" if pd.isna(noise) else yes_no(margin > noise)})  # fmt: skip
    return pd.DataFrame(rows).round(2)


def _variants_run(family: str, dataset: str, profile: str, ran) -> str:
    """ "2 of 4" while a family spans sessions (its summary is rewritten after every run), "all" once complete."""
    try:
        labels = [label for label, _ in family_configs(family, dataset, profile)]
    except TITNError:  # a family or dataset this code no longer defines
        return "-"
    done = len(set(ran) & set(labels))
    return "all" if done == len(labels) else f"{done} of {len(labels)}"


def seed_gaps(index: pd.DataFrame) -> pd.DataFrame:
    """Runs that differ in nothing but their seed (equal config hashes once the seed is set aside, on the same data),
    one row per such set with the gap between its best and worst test top-1: how far the seed alone moved a result,
    the yardstick for a margin measured on one seed."""
    columns = ["run", "dataset", "data", "epochs", "seeds", "test top-1", "gap"]
    if index.empty:
        return pd.DataFrame(columns=columns)
    keyed = index.assign(setup=index["path"].map(_seedless_hash))
    rows = [{"run": f"{g['run_id'].iloc[0].rsplit('-s', 1)[0]} ({setup[:8]})", "dataset": g["dataset"].iloc[0],
             "data": g["data_variant"].iloc[0], "epochs": int(g["epochs"].iloc[0]),
             "seeds": ", ".join(str(int(s)) for s in sorted(g["seed"])), "test top-1": mean_sd(g["test_top1"]),
             "gap": g["test_top1"].max() - g["test_top1"].min()}
            for (setup, _), g in keyed.groupby(["setup", "data_variant"], sort=False, dropna=False)
            if g["seed"].nunique() > 1]  # fmt: skip
    return pd.DataFrame(rows, columns=columns).round(2)


def _seedless_hash(run_dir: str) -> str:
    """The run's config hash with its seed set to 0 (the run folder's config.json); a config that is missing or that
    this code can no longer read keeps its folder as key, so it is never paired."""
    try:
        saved = read_json(Path(run_dir) / "config.json")
        cfg = RunConfig.from_dict({k: v for k, v in saved.items() if k in RunConfig.__dataclass_fields__})
    except (OSError, TypeError, ValueError, TITNError):
        return str(run_dir)
    cfg.train.seed = 0
    return cfg.hash()


def contrasts(table: pd.DataFrame) -> pd.DataFrame:
    """The families read as paired differences (`ablations.CONTRASTS`), one row per pair whose two variants ran."""
    rows = []
    for (family, _, _), group in groups(table):
        what, pairs = CONTRASTS.get(family, ("", {}))
        top1 = {variant: g["test_top1"] for variant, g in group.groupby("variant")}
        rows += [{"family": family, "data": group["data_variant"].iloc[0], "difference": what, "when": when,
                  "points": top1[a].mean() - top1[b].mean(), "variant": f"{a}: {mean_sd(top1[a])}",
                  "control": f"{b}: {mean_sd(top1[b])}", "runs": f"{len(top1[a])} vs {len(top1[b])}"}
                 for when, (a, b) in pairs.items() if a in top1 and b in top1]  # fmt: skip
    return pd.DataFrame(rows).round(2)


def regulariser_adoption(table: pd.DataFrame, gap: float | None, dataset: str = "cifar10", profile: str = "cpu"):
    """Each regulariser of the cumulative family against the pre-registered rule (adopt when its one-seed margin over
    the recipe before it exceeds `gap`, the widest seed gap) and whether the profile's distilled run has it today:
    the chapter's check that the profile follows its own rule."""
    top1 = _regularization_rows(table, dataset, profile).groupby("variant")["test_top1"].mean()
    main = build_config(dataset, profile, kd="paper")
    out = []
    for (before, _, pinned_before), (label, _, pinned) in pairwise(FAMILIES["regularization"]):
        added = {key: value for key, value in pinned.items() if pinned_before.get(key) != value}
        ran = label in top1 and before in top1
        margin = top1[label] - top1[before] if ran else float("nan")
        rule = "-" if not ran or gap is None else ("adopt" if margin > gap else "keep the recipe before")
        has = all(_setting(main, key) == value for key, value in added.items())
        out.append({"regulariser": label, "margin": margin, "seed gap": gap, "rule says": rule,
                    f"in the {profile} profile": yes_no(has)})  # fmt: skip
    return pd.DataFrame(out).round(2)


def unregularised_fit(table: pd.DataFrame, dataset: str = "cifar10", profile: str = "cpu") -> pd.Series | None:
    """The last epoch of the regularization family's first variant (the recipe without any regulariser): its train
    against test top-1 is the overfitting the family was run against. None until that run is in results/."""
    rows = _regularization_rows(table, dataset, profile)
    first = rows[rows["variant"] == FAMILIES["regularization"][0][0]]
    run_dir = results_dir() / str(first["run_id"].iloc[0]) if len(first) else None
    return history(run_dir).iloc[-1] if run_dir and (run_dir / "history.csv").exists() else None


def adopted_regularisers(table: pd.DataFrame, dataset: str = "cifar10", profile: str = "cpu") -> list[str]:
    """The regularisers the profile's distilled run has today, as the family labels them."""
    verdicts = regulariser_adoption(table, None, dataset, profile)
    return [
        label.removeprefix("+ ")
        for label in verdicts.loc[verdicts[f"in the {profile} profile"] == "yes", "regulariser"]
    ]


def _regularization_rows(table: pd.DataFrame, dataset: str, profile: str) -> pd.DataFrame:
    """The regularization family's rows of one dataset and profile."""
    return table[(table["family"] == "regularization") & (table["dataset"] == dataset) & (table["profile"] == profile)]


def _setting(cfg: RunConfig, key: str):
    """A config value by its override key, e.g. "data.mixup_alpha"."""
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def teacher_mix(rows: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """One family's distilled variants grouped by the teacher checkpoint they learned from, when one teacher run was
    retrained between them (part of their differences may then be the teacher's); empty otherwise. Different teacher
    runs (another architecture, or `distill.teacher_epochs`) are what a family compares on purpose."""
    columns = ["run_id", "teacher", "teacher_run_id", "teacher_test_top1"]
    used = rows[["run_id", "variant"]].merge(index[columns], on="run_id").dropna(subset=["teacher_test_top1"])
    teacher_run = used["teacher_run_id"].fillna(used["teacher"])  # a run recorded without its teacher's run id
    mixed = used.groupby(teacher_run)["teacher_test_top1"].transform("nunique") > 1
    by = used[mixed].groupby(["teacher", "teacher_test_top1"])["variant"]
    return by.agg(lambda v: ", ".join(v.unique())).rename("variants").reset_index()


def teachers_compared(rows: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """For a family whose variants learned from different teacher runs on purpose (teacher-epochs, fast-teacher,
    teacher): each variant's teacher run, its epochs and the top-1 of the checkpoint it taught with, so a reader sees
    how much stronger the stronger teacher was; empty when all variants shared one teacher run."""
    columns = ["run_id", "teacher_run_id", "teacher_test_top1"]
    used = rows[["run_id", "variant"]].merge(index[columns], on="run_id").dropna(subset=["teacher_run_id"])
    if used["teacher_run_id"].nunique() < 2:
        return pd.DataFrame()
    epochs = index.set_index("run_id")["epochs"]
    used = used.assign(teacher_epochs=used["teacher_run_id"].map(epochs))
    return used.groupby("variant", sort=False).agg(
        teacher_run=("teacher_run_id", "first"), teacher_epochs=("teacher_epochs", "first"),
        teacher_top1=("teacher_test_top1", "mean"),
    ).reset_index()  # fmt: skip


def across_datasets(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per family run on more than one dataset: each variant's difference from the family's reference, one column
    per dataset and budget, so a reader sees whether what MNIST showed carries over to the harder data."""
    columns: dict[str, dict[str, pd.Series]] = {}
    for (family, _, profile), rows in groups(table):
        if table.loc[table["family"] == family, "dataset"].nunique() > 1:
            s = summary(rows)
            budget = f"{int(s['epochs'].iloc[0])} ep" if "epochs" in s else profile
            columns.setdefault(family, {})[f"{rows['data_variant'].iloc[0]} ({budget})"] = s[f"vs {s.index[0]}"]
    return {family: pd.DataFrame(deltas).rename_axis(next(iter(deltas.values())).name)
            for family, deltas in columns.items()}  # fmt: skip


def agreement(deltas: pd.DataFrame) -> pd.Series:
    """Whether the datasets agree: each one's best variant, and the rank correlation of the variants' differences
    between the first two datasets over the variants both ran (1: same order; NaN with fewer than 3 in common)."""
    both = deltas.iloc[:, :2].dropna()
    rho = both.rank().corr().iloc[0, 1] if len(both) >= 3 else float("nan")
    return pd.Series({f"best on {c}": deltas[c].idxmax() for c in deltas} | {"rank correlation": round(rho, 2)})


def pending(plan: Path = ROOT / "plans" / "cpu.yaml") -> pd.DataFrame:
    """The plan's ablation families not complete under the results folder: no summary yet, or one without all the
    runs the family's variants and seeds make today (the notebook rewrites it after every run, so a family that
    spans sessions shows its finished variants; a redefined variant's old run does not count), so a reader sees what
    is still coming rather than guessing why a variant is absent."""
    rows = []
    for job in load_plan(plan, {"results_dir": str(results_dir())}):
        if Path(job.notebook).stem != "ablation":
            continue
        expected = _family_run_ids(job.parameters)
        done = len(expected & _summary_run_ids(job.out_dir / "summary.csv"))
        if done < len(expected):
            rows.append({"family": job.parameters["family"], "dataset": DATASET_TITLES[job.parameters["dataset"]],
                         "epochs": job.parameters.get("epochs") or "profile's",
                         "runs done": f"{done} of {len(expected)}"})  # fmt: skip
    return pd.DataFrame(rows, columns=["family", "dataset", "epochs", "runs done"])


def _summary_run_ids(path: Path) -> set[str]:
    return set(pd.read_csv(path)["run_id"]) if path.exists() else set()


def _family_run_ids(parameters: dict) -> set[str]:
    """The run ids an ablation job makes today: its family's variants times its seeds, at its epochs."""
    return {
        cfg.default_run_id()
        for seed in parameters.get("seeds", [0])
        for _, cfg in family_configs(
            parameters["family"],
            parameters["dataset"],
            parameters.get("profile", "smoke"),
            seed=seed,
            epochs=parameters.get("epochs") or None,
        )  # fmt: skip
    }
