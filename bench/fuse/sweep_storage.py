"""What the shared study storage costs a sweep: the same small sweep on SQLite with 1 and 2 workers
and on a PostgreSQL server (localhost) with 2 workers, in one run, each into fresh run folders.

    python bench/fuse/sweep_storage.py [--epochs 30] [--repeats 3]      # as root or as a user who may run initdb

The sweep: the synthetic corpus of the tests (90 training clips), 3 acoustic x 1 visual
alternatives (7 feature sets) x 2 learning rates, attention, 2 folds, --no-lr-batching (14 queued
trials, so that the queue, not the batching, is measured). The settings take turns within each
repeat; each row's ratio is to the same repeat's SQLite with one worker (so that a change in the
machine's load between repeats does not enter a ratio), and the summary gives the medians and
ranges over the repeats, with the load average (1 min) seen at the start of each run.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from runs import REPO, run_fuse, trial_metrics

sys.path.insert(0, str(REPO))  # the synthetic corpus and PostgreSQL server of the tests

from tests.fuse.conftest import synthetic_corpus, write_cache  # noqa: E402
from tests.postgres import postgres_server  # noqa: E402

FEATURES = "A=acoustic|layers@1,2|layers@0,3;V=visual"


def sweep(cache: Path, base: Path, workers: int, storage: str | None, epochs: int) -> tuple[float, int]:
    args = ["--cache", cache, "--dataset", "synth", "--features", FEATURES,
            "--grid", f"lr=1e-2,3e-3;epochs={epochs};folds=2;hidden=64", "--no-lr-batching", "--runs", base / "runs",
            "--out", base / "out", "--top-k", "0", "--workers", workers, "--quiet"]
    done = run_fuse("sweep", args, {"MER_SWEEP_STORAGE": storage} if storage else None)
    return done.wall, len(trial_metrics(base / "runs"))


@click.command()
@click.option("--epochs", default=30, show_default=True, help="Epochs per trial.")
@click.option("--repeats", default=3, show_default=True, help="Runs of each setting, taking turns (the table shows each).")
def main(epochs, repeats):
    with tempfile.TemporaryDirectory(prefix="sweep-storage-") as tmp:
        tmp = Path(tmp)
        manifest, arrays = synthetic_corpus()
        cache = write_cache(tmp / "cache", "synth", manifest, arrays)
        rows = []
        with postgres_server() as server:
            for r in range(repeats):
                for label, workers, url in (("SQLite, 1 worker", 1, None), ("SQLite, 2 workers", 2, None),
                                            ("PostgreSQL, 2 workers", 2, server.url("postgres"))):
                    base = tmp / f"{label.replace(' ', '').replace(',', '-')}-{r}"
                    if url:  # a fresh database per run, as a fresh SQLite file
                        database = f"bench{r}"
                        subprocess.run(["runuser", "-u", "postgres", "--", "createdb", "-h", "127.0.0.1", "-p",
                                        str(server.port), "-U", "postgres", database] if os.geteuid() == 0 else
                                       ["createdb", "-h", "127.0.0.1", "-p", str(server.port), database], check=True)
                        url = server.url(database)
                    load = os.getloadavg()[0]
                    wall, trials = sweep(cache, base, workers, url, epochs)
                    rows.append((r, label, trials, wall, load))
                    shutil.rmtree(base, ignore_errors=True)
                    print(f"{label}: {trials} trials in {wall:.1f} s (load {load:.1f})", file=sys.stderr, flush=True)
    click.echo(table(rows))


def table(rows) -> str:
    """Per run, then per setting: trials/min and the ratio to its repeat's SQLite with one worker."""
    alone = {r: trials / wall for r, label, trials, wall, _ in rows if label == "SQLite, 1 worker"}
    lines = ["| repeat | storage | trials | seconds | trials/min | ratio | load |", "| --- | --- | --- | --- | --- | --- | --- |"]
    ratios, rates = {}, {}
    for r, label, trials, wall, load in rows:
        ratios.setdefault(label, []).append(trials / wall / alone[r])
        rates.setdefault(label, []).append(60 * trials / wall)
        lines.append(f"| {r + 1} | {label} | {trials} | {wall:.1f} | {60 * trials / wall:.1f} | "
                     f"{ratios[label][-1]:.2f}x | {load:.1f} |")
    lines += ["", "| storage | trials/min, median (range) | ratio, median (range) |", "| --- | --- | --- |"]
    for label in rates:
        lines.append(f"| {label} | {statistics.median(rates[label]):.1f} ({min(rates[label]):.1f}-"
                     f"{max(rates[label]):.1f}) | {statistics.median(ratios[label]):.2f}x "
                     f"({min(ratios[label]):.2f}-{max(ratios[label]):.2f}) |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
