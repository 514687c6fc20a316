"""The efficiency chapter's tables, read from the records `benchmarks/*.py` wrote into results/benchmarks/.

Kept apart from `book` (the training results) because these come from a different producer: benchmark scripts
measuring speed on the build machine, not training runs.
"""

from __future__ import annotations

import json

import pandas as pd

from . import benchmark_records
from .book import results_dir
from .complexity import block_work
from .hardware import machine_of
from .model import build_titn
from .profiles import model_preset


def benchmarks(kind: str = "throughput") -> list[dict]:
    """The records `benchmarks/<kind>*.py` wrote: "throughput", "attention-kernels", "step-profile" or
    "matmul-shapes"."""
    return [json.loads(p.read_text()) for p in sorted((results_dir() / "benchmarks").glob(f"{kind}-*.json"))]


PEERS = ("ours TITN", "timm TNT")
SPEEDUP_GOAL = 1.5  # issue 21: our TITN over timm's TNT, each at its fastest
VIT = "ours ViT (no inner)"


def _settings(record: dict) -> dict[str, dict[str, float | None]]:
    """setting -> {peer: train images/s} in one record. A --compile record also holds each model's eager speed
    (named "<model> (eager)"), measured side by side, so it yields an eager setting too."""
    precision, models = "bf16" if record["amp_bf16"] else "fp32", record["models"]
    if not record["compile"]:
        return {precision: _peer_speeds(models, "")}
    return {f"{precision} + compile": _peer_speeds(models, ""), precision: _peer_speeds(models, " (eager)")}


def _peer_speeds(models: dict, suffix: str) -> dict[str, float | None]:
    return {name: models.get(name + suffix, {}).get("train_images_per_s") for name in PEERS}


def speed_summary() -> pd.DataFrame:
    """Per machine (rows grouped by it): our TITN against timm's TNT in each benchmarked setting, then each at its
    fastest setting, with the range of that speed-up over the runs its record holds (`benchmark_records`)."""
    rows, best = [], {}
    for rec in benchmarks():
        machine = machine_of(rec)
        for setting, speeds in _settings(rec).items():
            for name, speed in speeds.items():
                if speed and speed > best.get((machine, name), (0, "", None))[0]:
                    best[machine, name] = (speed, setting, rec)
            if all(speeds.values()):
                rows.append({"machine": machine, "setting": setting, "ours TITN img/s": round(speeds["ours TITN"], 1),
                             "timm TNT img/s": round(speeds["timm TNT"], 1),
                             "speed-up": round(speeds["ours TITN"] / speeds["timm TNT"], 2)})  # fmt: skip
    for machine in dict.fromkeys(m for m, _ in best):
        if (machine, "ours TITN") in best and (machine, "timm TNT") in best:
            rows.append(_fastest_row(machine, best[machine, "ours TITN"], best[machine, "timm TNT"]))
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).sort_values("machine", kind="stable", ignore_index=True)
    return table.astype({"runs": "Int64"}) if "runs" in table else table


def _fastest_row(machine: str, ours: tuple, timm: tuple) -> dict:
    """The 'each at its fastest' row; when both speeds come from one record, the spread over that record's runs."""
    (ours_speed, ours_at, ours_rec), (timm_speed, timm_at, timm_rec) = ours, timm
    runs = benchmark_records.comparable_runs(ours_rec) if ours_rec is timm_rec else []
    spread = [x for x in map(_fastest_speedup, runs) if x is not None]
    return {"machine": machine, "setting": f"each at its fastest (ours: {ours_at}; timm: {timm_at})",
            "ours TITN img/s": round(ours_speed, 1), "timm TNT img/s": round(timm_speed, 1),
            "speed-up": round(ours_speed / timm_speed, 2), "runs": len(spread) or None,
            "range over runs": f"{min(spread):.2f}-{max(spread):.2f}" if len(spread) > 1 else ""}  # fmt: skip


def _fastest_speedup(run: dict) -> float | None:
    """Ours at its fastest over timm at its fastest within one run of a record (None if it lacks either)."""
    if "models" not in run:
        return None
    best = {name: max((speeds[name] or 0 for speeds in _settings(run).values()), default=0) for name in PEERS}
    return best["ours TITN"] / best["timm TNT"] if all(best.values()) else None


def fastest_verdicts(summary: pd.DataFrame, goal: float = SPEEDUP_GOAL) -> list[str]:
    """One sentence per machine of `speed_summary()`: each at its fastest, against issue 21's goal over timm, with
    the spread over the record's runs when it holds more than one."""
    if summary.empty:
        return []
    fastest = summary[summary["setting"].str.startswith("each at its fastest")]
    return [_verdict(row, goal) for _, row in fastest.iterrows()]


def _verdict(row: pd.Series, goal: float) -> str:
    spread = row.get("range over runs")
    runs = f" ({row['runs']} runs of the benchmark there: {spread})" if isinstance(spread, str) and spread else ""
    verdict = "at or past" if row["speed-up"] >= goal else "short of"
    return (f"On {row['machine']}, our TITN at its fastest trains {row['speed-up']:.2f}x as fast as timm's TNT at its "
            f"fastest: {verdict} the {goal:g}x goal{runs}.")  # fmt: skip


def attention_kernel_table() -> pd.DataFrame:
    """Fused SDPA against explicit attention at the TITN block's shapes, per precision (forward + backward)."""
    rows = [
        {"machine": machine_of(r), "precision": r["dtype"], "attention": row["attention"],
         "(batch, heads, tokens, head dim)": str(row["shape"]),
         "SDPA ms": round(row["sdpa_ms"], 1), "explicit ms": round(row["explicit_ms"], 1)}
        for r in benchmarks("attention-kernels") for row in r["rows"]
    ]  # fmt: skip
    return pd.DataFrame(rows)


MATMUL_PRODUCTS = ("forward", "input grad", "weight grad")  # of a linear layer in a training step


def matmul_shape_table() -> pd.DataFrame:
    """Each linear layer of a TITN block at its training-step shape: GFLOP/s of its forward, input-gradient and
    weight-gradient products, per machine and precision (`benchmarks/matmul_shapes.py`)."""
    rows = [
        {"machine": machine_of(r), "precision": precision_of(r), "layer": name,
         "(rows, in, out)": f"({row['rows']}, {row['in']}, {row['out']})",
         **{f"{product} GFLOP/s": round(row[f"{product} GFLOP/s"]) for product in MATMUL_PRODUCTS}}
        for r in benchmarks("matmul-shapes") for name, row in r["layers"].items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def inner_matmul_rates() -> pd.DataFrame:
    """Per machine and precision: the inner layers' FLOP-weighted GFLOP/s over the outer's (1 = as efficient)."""
    rows = [{"machine": machine_of(r), "precision": precision_of(r),
             "inner/outer GFLOP/s": round(r["ratios"]["inner_over_outer_gflops"], 2)}
            for r in benchmarks("matmul-shapes")]  # fmt: skip
    return pd.DataFrame(rows)


STEP_KINDS = ("matmul and convolution", "casts and layout copies", "layer norm", "activation and softmax",
              "other elementwise and reductions", "optimiser", "fused kernels (compiled)")  # fmt: skip
MATMUL, FUSED = STEP_KINDS[0], STEP_KINDS[-1]


def precision_of(record: dict) -> str:
    """How a benchmark record's models ran: "bf16 autocast" or "fp32"."""
    return "bf16 autocast" if record["amp_bf16"] else "fp32"


def step_profile_table() -> pd.DataFrame:
    """Milliseconds of operator time per training step by kind of work, per model and precision, with shares."""
    rows = []
    for rec in benchmarks("step-profile"):
        for name, m in rec["models"].items():
            total = sum(m["ms_per_step"].values())
            row = {"machine": machine_of(rec), "precision": precision_of(rec), "setup": setup_of(rec), "model": name,
                   "operator ms/step": round(total)}  # fmt: skip
            row.update({kind: _share(m["ms_per_step"].get(kind), total) for kind in STEP_KINDS})
            rows.append(row)
    return pd.DataFrame(rows)


def setup_of(record: dict) -> str:
    """ "compiled" for a record of models compiled by `model.compile()`, else "eager" (older records: eager)."""
    return "eager" if record.get("compile_mode", "eager") == "eager" else "compiled"


def _share(ms: float | None, total: float) -> str:
    """A kind's share of the step as a whole percent string; "-" where the record has no such kind
    (fused kernels when eager)."""
    return "-" if ms is None else f"{100 * ms / total:.0f}%"


def kind_ratio(kind: str = MATMUL, setup: str = "compiled", precision: str = "bf16 autocast") -> float:
    """Our TITN's time per step in one kind of work over our ViT's, in the step profile of that setup and precision
    (the last such record by file name), e.g. how far the inner transformer's thin products fall below the ViT's
    matmul efficiency (NaN: no such record)."""
    ratio = float("nan")
    for rec in benchmarks("step-profile"):
        titn, vit = (rec["models"].get(n, {}).get("ms_per_step", {}).get(kind) for n in ("ours TITN", VIT))
        if setup_of(rec) == setup and precision_of(rec) == precision and titn and vit:
            ratio = titn / vit
    return ratio


def inner_cost_estimate() -> pd.DataFrame:
    """Per step profile: the TITN/ViT time per image if the inner transformer ran at the outer's rates, i.e. its
    matmuls at the ViT's time per FLOP and its elementwise work (norms, GELU, softmax, residuals, casts) at the ViT's
    time per value, beside the ratio the same record timed. The per-block work comes from the model
    (`complexity.block_work`)."""
    rows = []
    for rec in benchmarks("step-profile"):
        vit = rec["models"].get(VIT, {}).get("ms_per_step")
        if not (vit and "ours TITN" in rec["models"]):
            continue
        work = _block_work(rec)
        flops = work["inner"]["flops"] / work["outer"]["flops"]
        values = work["inner"]["mlp_values"] / work["outer"]["mlp_values"]
        total, matmul = sum(vit.values()), vit[MATMUL]
        elementwise = total - matmul - vit.get("optimiser", 0.0)
        rows.append({"machine": machine_of(rec), "precision": precision_of(rec), "setup": setup_of(rec),
                     "inner/outer matmul FLOPs": round(flops, 2), "inner/outer values": round(values, 2),
                     "ViT: matmul share": _share(matmul, total), "ViT: elementwise share": _share(elementwise, total),
                     "TITN/ViT at the outer's rates": round(1 + (flops * matmul + values * elementwise) / total, 2),
                     "TITN/ViT measured": round(_timed_ratio(rec), 2)})  # fmt: skip
    return pd.DataFrame(rows)


def _block_work(record: dict) -> dict[str, dict[str, int]]:
    """`complexity.block_work` of the TITN a benchmark record measured (its preset and input size)."""
    _, chans, size, _ = record["input"]
    model = build_titn(model_preset(record["preset"], size), size, chans, num_classes=10)
    return block_work(model, (size, chans, size))


def _timed_ratio(record: dict) -> float:
    """Our TITN's unprofiled training step time over our ViT's, timed in turns in the same step-profile record
    (NaN for records from before `step_profile.py` timed them)."""
    titn, vit = (record["models"][name].get("train_ms_per_step") for name in ("ours TITN", VIT))
    return titn / vit if titn and vit else float("nan")


def speedup_headroom(target: float = SPEEDUP_GOAL) -> pd.DataFrame:
    """How much of ours outside matmul would have to go for `target` x timm's step time, matmuls unchanged."""
    rows = []
    for rec in benchmarks("step-profile"):
        ours, timm = (rec["models"].get(n, {}).get("ms_per_step") for n in ("ours TITN", "timm TNT"))
        if not (ours and timm):
            continue
        matmul, other = ours[MATMUL], sum(ours.values()) - ours[MATMUL]
        allowed = sum(timm.values()) / target - matmul
        rows.append({"machine": machine_of(rec), "precision": precision_of(rec), "setup": setup_of(rec),
                     "ours: matmul ms": round(matmul), "ours: everything else ms": round(other),
                     "timm TNT: total ms": round(sum(timm.values())),
                     f"everything else allowed for {target}x ms": round(allowed),
                     "cut needed": f"{100 * (1 - allowed / other):.0f}%" if allowed > 0
                     else "impossible: our matmuls alone take longer"})  # fmt: skip
    return pd.DataFrame(rows)


def benchmark_table(record: dict) -> pd.DataFrame:
    """One benchmark JSON as a readable table: speed, share of the matmul peak, memory, speed-up over timm's TNT."""
    rows = []
    base = record["models"].get("timm TNT", {}).get("train_images_per_s")
    for name, m in record["models"].items():
        train, infer, frac = m.get("train_images_per_s"), m.get("infer_images_per_s"), m.get("train_peak_fraction")
        rows.append(
            {
                "model": name,
                "params (M)": round(m["params"] / 1e6, 2),
                "MFLOPs/img": round(m["forward_flops_per_image"] / 1e6, 1),
                "train img/s": round(train, 1) if train else "fails",
                "infer img/s": round(infer, 1) if infer else "fails",
                "train % of peak": round(100 * frac, 1) if frac else "-",
                "train memory (MB)": round(m["train_memory_mb"]) if m.get("train_memory_mb") else "-",
                "train vs timm TNT": f"{train / base:.2f}x" if train and base else "-",
                "error": "; ".join(f"{k}: {v[:70]}…" if len(v) > 70 else f"{k}: {v}" for k, v in m["errors"].items()),
            }
        )
    return pd.DataFrame(rows)
