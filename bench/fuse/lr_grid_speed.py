"""A learning-rate grid in `python -m fuse.sweep`: trained as one batched model per feature set
(`--lr-batching`, the default) against one trial after the other (`--no-lr-batching`).

The synthetic MER-shaped problem (bench/fuse/mer_shaped.py: 3373 training clips, three 1024-d
features, here joined as one modality: one feature set), attention, 5 folds x 100 epochs, 1 seed, `--grid "lr=..."`, 1 worker, each
mode into fresh run folders, in the same run: wall seconds, and each rate's CV combined score in
both modes (the same rates must reach the same quality; the numbers differ only by the dropout
masks and batch orders drawn for a larger model).

    python bench/fuse/lr_grid_speed.py [--lrs 1e-3,3e-4,1e-4] [--epochs 100] [--out DIR]
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click

from mer_shaped import generate, write_cache
from runs import run_fuse, trial_metrics

# one feature set (a sweep crosses every subset of the modalities): the three 1024-d features as one
# modality, the same multiply-adds as A+L+V
FEATURES = "A=mer-a+mer-l+mer-v"


def run_sweep(cache: Path, runs: Path, lrs: str, epochs: int, batching: bool) -> dict:
    args = ["--dataset", "mershape", "--cache", cache,
            "--features", FEATURES, "--models", "attention",
            "--grid", f"lr={lrs};epochs={epochs}", "--runs", str(runs), "--out", str(runs / "report"),
            "--top-k", "0", "--quiet", "--lr-batching" if batching else "--no-lr-batching"]
    done = run_fuse("sweep", args)
    scores = {m["config"]["train"]["lr"]: m["cv"]["combined"]["mean"] for m in trial_metrics(runs)}
    return {"batching": batching, "wall": done.wall, "load": done.load, "scores": scores}


@click.command()
@click.option("--lrs", default="1e-3,3e-4,1e-4", show_default=True)
@click.option("--epochs", default=100, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path))
def main(lrs, epochs, out):
    with tempfile.TemporaryDirectory(prefix="lr-grid-") as tmp:
        tmp = Path(tmp)
        missing = write_cache(generate(0), tmp / "cache")
        if missing:
            raise click.ClickException(f"MER-shaped cache incomplete: {', '.join(missing)}")
        rows = [run_sweep(tmp / "cache", tmp / f"runs-{b}", lrs, epochs, b) for b in (False, True)]
    rates = sorted(rows[0]["scores"], reverse=True)
    lines = [f"lr grid {lrs} on the MER-shaped problem, attention on A=mer-a+mer-l+mer-v, 5 folds x {epochs} epochs, 1 seed, "
             f"1 worker; CPU {os.cpu_count()} cores.", "",
             "| mode | wall s | load avg before | " + " | ".join(f"CV combined, lr {r:g}" for r in rates) + " |",
             "| --- " * (3 + len(rates)) + "|"]
    for r in rows:
        name = "one batched model (--lr-batching)" if r["batching"] else "one trial after the other"
        lines.append(f"| {name} | {r['wall']:.0f} | {r['load']:.1f} | "
                     + " | ".join(f"{r['scores'][x]:.3f}" for x in rates) + " |")
    lines += ["", f"speed-up of --lr-batching: {rows[0]['wall'] / rows[1]['wall']:.2f}x"]
    report = "\n".join(lines)
    click.echo(report)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "lr_grid_speed.md").write_text(report + "\n")
        (out / "lr_grid_speed.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
