"""Score another cached dataset with a trained run (a noisy copy, unlabelled clips, a new corpus).

    python -m fuse.predict --run data/runs/demo/attention-ALV-... --dataset demo-noisy

Features are read with the run's specs; each must come from the same extractor, version and config
as the run's, or the command is refused. Writes predictions/<split>.csv (MER submission format),
submission.csv where the dataset's clip table names a challenge track (fuse.results.submission),
scores/<split>.npz and, where the clips are labelled, metrics.json (mean +- std over the run's seeds).
A damaged run (a truncated weight file, a broken model.json) is refused before anything is written
(fuse.training.saved_run); inputs far outside a feature's spread are scored with a warning (fuse.inputs.outliers).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from cache.cli import Refused, cache_options, damage_named, device_option, ends_cleanly
from .folders import claim, written
from .results.run_folder import predict_split
from .results.submission import describe
from .inputs.problem import load_problem
from .training.saved_run import SavedRun
from .training.request import clip_table, TrainRequest
from .training.loop import TrainConfig

IDENTITY = ("extractor", "version", "config", "model", "revision", "weights")


def check_features(run_features: dict, new_features: dict):
    """Refuse features made differently from the run's (extractor, version, config, model)."""
    for spec, theirs in run_features.items():
        ours = new_features.get(spec, {})
        differ = [k for k in IDENTITY if theirs.get(k) != ours.get(k)]
        if differ:
            raise Refused(f"feature {spec}: this dataset's was made with another {', '.join(differ)} "
                          f"than the run's ({', '.join(f'{k}={theirs.get(k)!r} vs {ours.get(k)!r}' for k in differ)})")


def remap_classes(problem, classes: list[str]):
    """Express the dataset's labels in the run's class order; refuse classes the run never saw."""
    unknown = sorted(set(problem.classes) - set(classes))
    if unknown:
        raise Refused(f"dataset {problem.dataset!r} has classes {unknown} that the run was not trained on "
                      f"(its classes: {', '.join(classes)})")
    index = np.array([classes.index(c) for c in problem.classes])
    if problem.multi_label:
        labels = np.full((len(problem.labels), len(classes)), np.nan, dtype=np.float32)
        known = ~np.isnan(problem.labels).any(axis=1)
        labels[known] = 0
        labels[np.ix_(known, index)] = problem.labels[known]
    else:
        labels = np.where(problem.labels >= 0, index[np.clip(problem.labels, 0, None)], -1)
    problem.labels, problem.classes = labels, tuple(classes)


def predict_dataset(run: Path, dataset: str, cache_dir=None, splits=None, out=None, device="auto", corpus=None):
    """Score `splits` (default: all) of `dataset` with the fold models of `run`; writes under `out`
    (default RUN/predict-DATASET). Every file of the run is read and checked first (a damaged one
    is refused, fuse.training.saved_run). Returns (out, metrics)."""
    run = Path(run)
    out = Path(out or run / f"predict-{dataset}")
    claim(out, "predict")
    saved = SavedRun(run)
    meta, trained, systems = saved.meta, saved.metrics(), saved.systems()
    request = TrainRequest(model=meta["systems"][0]["model"], configs=[], train=TrainConfig(device=device),
                           dataset=dataset, cache_dir=cache_dir, corpus=corpus or {})
    table = clip_table(request, dataset)
    try:
        problem = load_problem(dataset, list(zip(meta["modalities"], meta["specs"])), root=cache_dir, clips=table,
                               max_items=meta.get("max_items"))
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise Refused(str(err)) from None
    check_features(trained["features"], problem.provenance)
    if [list(s) for s in problem.shapes] != [list(s) for s in meta["shapes"]]:
        raise Refused(f"feature shapes {problem.shapes} differ from the run's {meta['shapes']}")
    if list(problem.classes) != meta["classes"]:
        remap_classes(problem, meta["classes"])
    thresholds = np.asarray(meta["thresholds"]) if meta["thresholds"] else None
    metrics = {"run": run.name, "dataset": dataset, "clips": {}}
    with written(out, "predict") as tmp:
        for split in splits or problem.splits:
            rows = problem.index(split)
            metrics["clips"][split] = int(len(rows))
            if len(rows):
                predict_split(tmp, split, rows, problem, systems, [s["weight"] for s in meta["systems"]], meta,
                              metrics, thresholds, device)
        metrics["missing"] = len(problem.missing)
        metrics["warnings"] = problem.warnings
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return out, metrics


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="A fuse.train run folder.")
@cache_options("Cached dataset to score.", required=True)
@click.option("--splits", help="Splits to score (default: all).")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: RUN/predict-DATASET); an "
              "existing one is replaced only if fuse.predict wrote it.")
@device_option()
@ends_cleanly("no prediction folder was written (an earlier one is kept as it was)")
@damage_named
def main(run_dir, dataset, cache_dir, splits, out, device):
    """Score DATASET's cached features with the fold models of a trained run."""
    folder, metrics = predict_dataset(Path(run_dir), dataset, cache_dir, splits.split(",") if splits else None, out,
                                      device)
    for split, n in metrics["clips"].items():
        m = metrics.get(split)
        result = (f"weighted F1 {m['weighted_f1']['mean']:.3f}" + (f", combined {m['combined']['mean']:.3f}" if "mse" in m else "")
                  if m else "predictions only")
        click.echo(f"{split:<8}{n:>6} clips  {result}")
    if describe(metrics.get("submission")):
        click.echo(f"submission: {describe(metrics['submission'])}")
    for warning in metrics["warnings"]:
        click.echo(f"warning: {warning}")
    click.echo(f"predictions: {folder}")


if __name__ == "__main__":
    sys.exit(main())
