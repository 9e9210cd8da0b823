"""What the shared study storage costs a sweep: the same small sweep on SQLite with 1 and 2 workers
and on a PostgreSQL server (localhost) with 2 workers, in one run, each into fresh run folders.

    python bench/sweep_storage.py [--trials-epochs 30] [--repeats 1]      # as root or as a user who may run initdb

The sweep: the synthetic corpus of the tests (90 training clips), 3 acoustic x 1 visual
alternatives (7 feature sets) x 2 learning rates, attention, 2 folds, --no-lr-batching (14 queued
trials, so that the queue, not the batching, is measured). Prints trials per minute and the ratio to
SQLite with one worker.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fuse.conftest import synthetic_corpus, write_cache  # noqa: E402
from tests.postgres import postgres_server  # noqa: E402

FEATURES = "A=acoustic|layers@1,2|layers@0,3;V=visual"


def sweep(cache: Path, base: Path, workers: int, storage: str | None, epochs: int) -> tuple[float, int]:
    args = [sys.executable, "-m", "fuse.sweep", "--cache", cache, "--dataset", "synth", "--features", FEATURES,
            "--grid", f"lr=1e-2,3e-3;epochs={epochs};folds=2;hidden=64", "--no-lr-batching", "--runs", base / "runs",
            "--out", base / "out", "--top-k", "0", "--workers", workers, "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if storage:
        env["MER_SWEEP_STORAGE"] = storage
    start = time.perf_counter()
    proc = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise click.ClickException(proc.stderr[-2000:])
    return wall, len(list((base / "runs").glob("*/metrics.json")))


@click.command()
@click.option("--epochs", default=30, show_default=True, help="Epochs per trial.")
@click.option("--repeats", default=1, show_default=True, help="Runs of each setting (the table shows each).")
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
                    wall, trials = sweep(cache, base, workers, url, epochs)
                    rows.append((label, trials, wall))
                    shutil.rmtree(base, ignore_errors=True)
                    print(f"{label}: {trials} trials in {wall:.1f} s", file=sys.stderr, flush=True)
    first = {label: trials / wall for label, trials, wall in rows if label == "SQLite, 1 worker"}
    base_rate = sum(first.values()) / len(first)
    print("| storage | trials | seconds | trials/min | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for label, trials, wall in rows:
        print(f"| {label} | {trials} | {wall:.1f} | {60 * trials / wall:.1f} | {trials / wall / base_rate:.2f}x |")


if __name__ == "__main__":
    main()
