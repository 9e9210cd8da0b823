"""Sweeps: many fuse.train runs over feature combinations, models and hyper-parameters.

    python -m fuse.sweep --dataset mer2023 --features "A=hubert-large@-4:|is10;L=chinese-macbert-large@-4:;V=face-fer2013|face-dlib"
    python -m fuse.sweep --modalities A,L,V --models attention,lgbm --grid "lr=1e-3,1e-4;hidden=128,256x128" --workers 2
    python -m fuse.sweep --modalities A,V --search random --trials 50 --rerun-best 6 --grid "lr=1e-5:1e-2;dropout=0.1:0.5"

Every trial is a fuse.train run whose folder is named by its run id: finished trials are skipped,
a killed sweep resumes where it stopped. Trials are queued in an Optuna study (SQLite by default,
`--storage postgresql://...` to share one sweep between machines: start the same command on each).
Exit status 0 when every trial finished (or --budget ran out), 1 when some failed, 2 when the
command was refused before any work (a storage URL that cannot be opened, a --budget that is not
a positive duration included). See docs/sweeps.md.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import sys
from pathlib import Path

import click

from cache.cli import Refused, damage_named, ends_cleanly
from .folders import claim
from .models import MODELS
from .specs import SpecError, parse_modalities
from .study import check_storage, heartbeat_settings
from .sweep_plan import plan
from .sweep_report import report
from .sweep_run import Sweep, work_until_done
from .training import choose_dataset, runs_root
from .trials import parse_grid


def _duration(ctx, param, text: str | None) -> float | None:
    """--budget '8h', '90m', '45s', '3600' -> seconds (a positive duration)."""
    if text is None:
        return None
    units = {"h": 3600, "m": 60, "s": 1}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise click.BadParameter(f"{text!r}: expected a positive duration: 8h, 90m, 45s or 3600 (seconds)")
    return seconds


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dataset", help="Cached dataset (default: the only one in the cache).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), help="Cache folder (default data/cache).")
@click.option("--modalities", help="Modalities to combine, e.g. A,L,V (default: those of --features).")
@click.option("--features", "features_text", help='Alternatives per modality: "A=hubert-large@-4:|is10;V=face-fer2013".')
@click.option("--models", default="attention", show_default=True,
              help="Comma-separated fuse.train models: attention, mlp, afg, lgbm, or a sequence model.")
@click.option("--grid", "grid_text", help='fuse.train options to vary: "lr=1e-3,1e-4;hidden=128,256x128".')
@click.option("--search", type=click.Choice(["grid", "random"]), default="grid", show_default=True)
@click.option("--trials", "n_trials", type=click.IntRange(1), default=50, show_default=True,
              help="Random search: draws per feature set and model.")
@click.option("--rerun-best", type=click.IntRange(0), default=0, show_default=True,
              help="Random search: rerun the best draw of each feature set and model with this many seeds.")
@click.option("--seeds", type=click.IntRange(1), default=1, show_default=True, help="Seeds per trial (batched).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Trials run in parallel.")
@click.option("--storage", envvar="MER_SWEEP_STORAGE", help="Optuna storage URL (default: sqlite:///RUNS/study.db; "
              "or from $MER_SWEEP_STORAGE, which keeps it out of shell history).")
@click.option("--budget", callback=_duration, help="Start no trial after this long (8h, 90m); a rerun continues.")
@click.option("--top-k", type=click.IntRange(0, 4), default=3, show_default=True,
              help="Decision-level fusion of the k best trials (0: none).")
@click.option("--runs", "runs_dir", type=click.Path(file_okay=False),
              help="Run folders (default runs/<dataset> beside the cache folder: data/runs/<dataset>).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Leaderboard and plots (default sweeps/<study> beside the cache folder: data/sweeps/<study>).")
@click.option("--lr-batching/--no-lr-batching", default=True, show_default=True,
              help="Train trials that differ only in their learning rate as one batched model.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@ends_cleanly("finished trials are kept; run the same command to resume")
@damage_named
def main(dataset, cache_dir, modalities, features_text, models, grid_text, search, n_trials, rerun_best, seeds,
         workers, storage, budget, top_k, runs_dir, out, lr_batching, quiet):
    """Run every trial of a sweep (resumable, parallel), then write the leaderboard."""
    try:
        chosen = parse_modalities(modalities) if modalities else None
        names = [m.strip() for m in models.split(",") if m.strip()]
        unknown = [m for m in names if m not in MODELS]
        if unknown or not names:
            raise SpecError(f"--models {models!r}: choose from {', '.join(sorted(MODELS))}")
        if not chosen and not features_text:
            raise SpecError("name the modalities to combine: --modalities A,L,V (or --features)")
        dataset = dataset or choose_dataset(cache_dir)
        grid = parse_grid(grid_text, search)
        seeds_first = 1 if search == "random" and rerun_best else seeds
        runs = Path(runs_dir) if runs_dir else runs_root(cache_dir) / dataset
        if out:
            claim(out, "sweep")
        trials = plan(dataset, cache_dir, runs, chosen, features_text, names, grid, search, n_trials, seeds_first)
        heartbeat_settings()  # MER_SWEEP_HEARTBEAT / MER_SWEEP_GRACE
        if storage:  # last: reaching a server may take seconds
            check_storage(storage)
    except ValueError as err:  # SpecError included
        raise Refused(str(err)) from None
    definition = {"dataset": dataset, "modalities": chosen, "features": features_text, "models": names,
                  "grid": grid, "search": search, "trials": n_trials, "rerun_best": rerun_best, "seeds": seeds}
    sweep = Sweep.create(trials, definition, cache_dir, runs, out, storage, workers, budget, quiet, lr_batching)
    done = sweep.finished()
    click.echo(f"sweep {sweep.name}: {len(trials.trials)} trials, {done} already finished (skipped), "
               f"{len(trials.trials) - done} to run on {workers} worker(s); runs in {sweep.runs}", err=True)
    work_until_done(sweep)
    if search == "random" and rerun_best and not sweep.over_budget():
        sweep.rerun_best(rerun_best)
        work_until_done(sweep)
    click.echo(report(sweep, top_k))
    unfinished = len(sweep.plan.trials) - sweep.finished()
    if unfinished and sweep.over_budget():
        click.echo(f"--budget reached with {unfinished} trial(s) to go: run the same command to continue", err=True)
    elif unfinished:  # their errors were logged as they failed
        click.echo(f"{unfinished} trial(s) failed: run the same command to retry them", err=True)
        sys.exit(1)


if __name__ == "__main__":
    mp.freeze_support()
    sys.exit(main())

