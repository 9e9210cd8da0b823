"""LightGBM (`--model lgbm`) against attention fusion, both as `python -m fuse.train` runs them.

Two comparisons: accuracy on handcrafted features (a demo corpus, IS10 and eGeMAPS alone, several
seeds) and wall time on deep ones (the synthetic MER-shaped problem of bench/fuse/mer_shaped.py: 3373
training clips, three 1024-d features, 5 folds x 1 seed). `make demo`'s corpus has 64 training
clips, too few for trees; a larger one for the handcrafted case (533 training clips):

    python -m manifests.demo --out DIR --clips 800 --seed 1
    python -m extract --dataset demo --root DIR --features is10,egemaps --cache CACHE

Each case runs lgbm and attention back to back (interleaved, `--repeats` times), so that both see
the same load of a shared machine; the 1-minute load average before each run is in the table.
Seconds are fuse.train's own (metrics.json: training and scoring, not Python start-up); wall
adds the command's start-up and feature loading. Attention runs with its defaults (100 epochs).

    python bench/fuse/lgbm_speed.py [--demo-cache data/cache] [--mer-cache DIR] [--seeds 5]
                               [--only demo|mer] [--repeats 1] [--json FILE]

then --demo-cache CACHE. Without --mer-cache the MER-shaped cache is written to a temporary folder first (seed 0).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from mer_shaped import generate, write_cache
from runs import REPO, FuseFailed, train

from cache import open_clips
MODELS = ("lgbm", "attention")
METRICS = (("cv", "weighted_f1"), ("cv", "combined"), ("test1", "combined"))


@dataclass(frozen=True)
class Case:
    """One comparison: `features` as fuse.train's --features, trained on `dataset` of `cache`."""

    name: str
    cache: Path
    dataset: str
    features: str
    seeds: int


def train_once(case: Case, model: str, workdir: Path) -> dict:
    """One fuse.train run; its metrics.json plus 'wall' (seconds of the whole command) and 'load'
    (1-minute load average just before it started)."""
    load = os.getloadavg()[0]
    try:
        return train(["--cache", case.cache, "--dataset", case.dataset, "--features", case.features,
                      "--model", model, "--seeds", case.seeds, "--folds", "5", "--quiet"],
                     Path(tempfile.mkdtemp(prefix=f"{model}-", dir=workdir)))
    except FuseFailed as failed:
        last = (failed.format_message().strip().splitlines() or ["(no output)"])[-1]
        return {"error": last, "load": load}


def compare(cases: list[Case], repeats: int, workdir: Path) -> list[dict]:
    """Rows (case, model, runs): lgbm and attention alternate within each case and repeat."""
    rows = {(c.name, m): {"case": c, "model": m, "runs": []} for c in cases for m in MODELS}
    for case in cases:
        for repeat in range(repeats):
            # alternate which model goes first, so neither always meets the same moment of load
            for model in (MODELS if repeat % 2 == 0 else MODELS[::-1]):
                result = train_once(case, model, workdir)
                rows[case.name, model]["runs"].append(result)
                print(f"{case.name} {model}: {summary_line(result)}", file=sys.stderr, flush=True)
    return list(rows.values())


def summary_line(result: dict) -> str:
    if "error" in result:
        return result["error"]
    return (f"{result['seconds']:.1f} s (wall {result['wall']:.1f} s, load {result['load']:.2f}), "
            f"CV combined {result['cv']['combined']['mean']:.3f}")


def table(rows: list[dict]) -> str:
    """Markdown: one row per case and model; seconds are medians over the repeats, metrics from
    the first run (they are the same in every repeat: both models are deterministic per seed)."""
    lines = ["| features | model | seeds | seconds | wall | load avg | CV weighted F1 | CV combined | "
             "test1 combined |", "| --- " * 9 + "|"]
    for row in rows:
        case, runs = row["case"], [r for r in row["runs"] if "error" not in r]
        load = "/".join(f"{r['load']:.1f}" for r in row["runs"])
        if not runs:
            lines.append(f"| {case.name} | {row['model']} | {case.seeds} | failed: {row['runs'][0]['error'][-80:]} "
                         f"| - | {load} | - | - | - |")
            continue
        cells = [_metric(runs[0], split, key) for split, key in METRICS]
        lines.append(f"| {case.name} | {row['model']} | {case.seeds} | "
                     f"{np.median([r['seconds'] for r in runs]):.1f} | {np.median([r['wall'] for r in runs]):.1f} | "
                     f"{load} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _metric(metrics: dict, split: str, key: str) -> str:
    m = metrics.get(split, {}).get(key)
    return f"{m['mean']:.3f} +- {m['std']:.3f}" if isinstance(m, dict) and m.get("mean") is not None else "-"


def mer_cases(mer_cache: Path | None, workdir: Path) -> list[Case]:
    if mer_cache is None:
        mer_cache = workdir / "mer-cache"
        print("writing the MER-shaped cache (seed 0) ...", file=sys.stderr, flush=True)
        failed = write_cache(generate(0), mer_cache)
        if failed:
            raise click.ClickException(f"MER-shaped cache incomplete: {', '.join(failed)}")
    return [Case("MER-shaped A+L+V (3 x 1024-d)", Path(mer_cache), "mershape", "A=mer-a;L=mer-l;V=mer-v", 1)]


def demo_cases(demo_cache: Path, dataset: str, seeds: int) -> list[Case]:
    missing = [f for f in ("is10", "egemaps") if not (demo_cache / dataset / f"{f}.h5").is_file()]
    if missing:
        raise click.BadParameter(f"{demo_cache / dataset} has no {', '.join(missing)} features: run `make demo` "
                                 "or pass the cache that has them", param_hint="--demo-cache")
    clips = open_clips(dataset, demo_cache)
    train = int(clips.labelled(clips.split("train")).sum())
    return [Case(f"demo {name} ({train} training clips)", demo_cache, dataset, f"A={feature}", seeds)
            for name, feature in (("IS10", "is10"), ("eGeMAPS", "egemaps"))]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--demo-cache", type=click.Path(file_okay=False, path_type=Path), default=REPO / "data" / "cache",
              show_default=True, help="Cache holding the demo corpus's is10 and egemaps features.")
@click.option("--demo-dataset", default="demo", show_default=True)
@click.option("--mer-cache", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Cache holding the MER-shaped dataset 'mershape' (default: written to a temporary folder).")
@click.option("--seeds", type=click.IntRange(1), default=5, show_default=True, help="Seeds of the demo runs.")
@click.option("--only", type=click.Choice(["demo", "mer"]), help="Run one comparison only.")
@click.option("--repeats", type=click.IntRange(1), default=1, show_default=True,
              help="Runs per case and model (seconds: the median).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the rows here.")
def main(demo_cache, demo_dataset, mer_cache, seeds, only, repeats, json_path):
    """Time and score lgbm against attention on handcrafted and deep features."""
    with tempfile.TemporaryDirectory(prefix="lgbm-speed-") as tmp:
        workdir = Path(tmp)
        cases = demo_cases(demo_cache, demo_dataset, seeds) if only != "mer" else []
        cases += mer_cases(mer_cache, workdir) if only != "demo" else []
        rows = compare(cases, repeats, workdir)
    click.echo(f"{os.cpu_count()} CPU(s); load average now {', '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    click.echo(table(rows))
    if json_path:
        json_path.write_text(json.dumps([{"features": r["case"].name, "model": r["model"], "seeds": r["case"].seeds,
                                          "runs": r["runs"]} for r in rows], indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
