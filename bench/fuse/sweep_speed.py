"""Sweep speed: `python -m fuse.sweep` over MER 2023 Table-3-shaped feature combinations.

The synthetic MER-shaped problem (bench/fuse/mer_shaped.py) with 2 acoustic x 3 lexical x 2 visual
1024-d features, attention fusion, 5 folds, as MER 2023's Table 3. A subset of the 35 combinations
(by default one feature per modality: 3 unimodal, 3 bimodal, 1 trimodal) is swept with 1 and with 2
workers, each time into fresh run folders; the full sweep's time is estimated as the subset's wall
time scaled by the full sweep's trial-seconds (each group's mean seconds per trial in that run,
times the group's count among the 35) over the subset's. `--full` runs all 35 instead.

    python bench/fuse/sweep_speed.py [--epochs 100] [--seeds 1] [--workers 1,2] [--precision fp32|bf16]
                                [--full] [--out DIR]

The speed-up column is against the first --workers value.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import click
import numpy as np

from mer_shaped import MODALITIES, VARIANTS, generate, with_variants, write_cache
from runs import run_fuse, trial_metrics
LETTER = {"acoustic": "A", "lexical": "L", "visual": "V"}
GROUPS = {1: "unimodal", 2: "bimodal", 3: "trimodal"}


def alternatives(full: bool) -> dict[str, list[str]]:
    """Modality letter -> the features swept for it."""
    return {LETTER[m]: [spec.feature] + ([v.feature for v in VARIANTS[m]] if full else [])
            for m, spec in MODALITIES.items()}


def table3_counts() -> dict[str, int]:
    """Trials per group in the full 2 x 3 x 2 sweep (7 unimodal, 16 bimodal, 12 trimodal)."""
    sizes = [1 + len(VARIANTS[m]) for m in MODALITIES]
    a, l, v = sizes
    return {"unimodal": a + l + v, "bimodal": a * l + a * v + l * v, "trimodal": a * l * v}


def run_sweep(cache: Path, runs: Path, features: dict, workers: int, epochs: int, seeds: int,
              precision: str = "fp32") -> dict:
    """One `python -m fuse.sweep` in fresh run folders; wall seconds and each trial's own seconds."""
    text = ";".join(f"{m}={'|'.join(f)}" for m, f in features.items())
    args = ["--dataset", "mershape", "--cache", cache,
            "--features", text, "--models", "attention", "--grid", f"epochs={epochs};precision={precision}", "--seeds", str(seeds),
            "--workers", str(workers), "--runs", str(runs), "--out", str(runs / "report"), "--top-k", "0",
            "--quiet"]
    done = run_fuse("sweep", args)
    trials = []
    for m in trial_metrics(runs):
        n_modalities = len(set(m["config"]["features"].values()))
        trials.append({"group": GROUPS[n_modalities], "seconds": m["seconds"],
                       "features": m["config"]["features"], "cv_combined": m["cv"]["combined"]["mean"],
                       "cv_combined_std": m["cv"]["combined"]["std"]})
    return {"workers": workers, "wall": done.wall, "load": done.load, "trials": trials}


def estimate(rows: list[dict]) -> dict:
    """Seconds of the full 35-trial sweep for each row (worker count): the subset's wall time
    scaled by the full sweep's trial-seconds over the subset's, trial-seconds per group taken
    from that row's own trials (a worker with company trains each trial more slowly)."""
    counts = table3_counts()
    out = {"per_trial": {}}
    for r in rows:
        per_group = {g: float(np.mean([t["seconds"] for t in r["trials"] if t["group"] == g]))
                     for g in GROUPS.values() if any(t["group"] == g for t in r["trials"])}
        full = sum(per_group[g] * n for g, n in counts.items())
        out["per_trial"][r["workers"]] = per_group
        out[f"{r['workers']}_worker{'s' * (r['workers'] > 1)}"] = r["wall"] * full / sum(t["seconds"] for t in r["trials"])
    return out


@click.command()
@click.option("--epochs", default=100, show_default=True)
@click.option("--seeds", default=1, show_default=True)
@click.option("--workers", "workers_text", default="1,2", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True)
@click.option("--full", is_flag=True, help="Sweep all 35 combinations (else one feature per modality: 7).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder for the table and rows.")
def main(epochs, seeds, workers_text, precision, full, out):
    workers = [int(w) for w in workers_text.split(",")]
    features = alternatives(full)
    with tempfile.TemporaryDirectory(prefix="sweep-speed-") as tmp:
        tmp = Path(tmp)
        missing = write_cache(with_variants(generate(0)), tmp / "cache")
        if missing:
            raise click.ClickException(f"MER-shaped cache incomplete: {', '.join(missing)}")
        rows = [run_sweep(tmp / "cache", tmp / f"runs-{w}", features, w, epochs, seeds, precision) for w in workers]
        if out:  # the sweeps' own leaderboards, Table-3 tables and plots
            for w in workers:
                shutil.copytree(tmp / f"runs-{w}" / "report", out / f"report-{w}-workers", dirs_exist_ok=True)
    est = estimate(rows)
    n = len(rows[0]["trials"])
    lines = [f"Table-3-shaped sweep on the synthetic MER-shaped problem: {n} trials "
             f"({'all 35' if full else 'one feature per modality'}), attention, 5 folds x {epochs} epochs, "
             f"{seeds} seed(s), {precision}; CPU {os.cpu_count()} cores.", "",
             "| workers | trials | wall s | load avg before | speed-up |", "| --- " * 5 + "|"]
    for r in rows:
        lines.append(f"| {r['workers']} | {len(r['trials'])} | {r['wall']:.0f} | {r['load']:.1f} | "
                     f"{rows[0]['wall'] / r['wall']:.2f}x |")
    counts = table3_counts()
    lines += ["", "| group | trials in Table 3 | " + " | ".join(f"s per trial ({w} worker(s))" for w in workers) + " |",
              "| --- " * (2 + len(workers)) + "|"]
    lines += [f"| {g} | {counts[g]} | " + " | ".join(f"{est['per_trial'][w][g]:.0f}" for w in workers) + " |"
              for g in est["per_trial"][workers[0]]]
    lines += ["", f"Full 35-trial sweep, {'measured' if full else 'estimated'}: " + ", ".join(
        f"{k.replace('_', ' ')} {v / 3600:.2f} h" for k, v in est.items() if k != "per_trial")]
    report = "\n".join(lines)
    click.echo(report)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "sweep_speed.md").write_text(report + "\n")
        (out / "sweep_speed.json").write_text(json.dumps({"rows": rows, "estimate": est}, indent=1))


if __name__ == "__main__":
    main()
