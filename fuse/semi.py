"""MER-SEMI sample selection: Algorithm 1 of the MER 2023 baseline (Lian et al. 2023, section 2.3).

    python -m fuse.semi --run data/runs/demo/attention-ALV-... --dataset demo --unlabelled test3

For each class j, the threshold lambda_j is the eta-quantile (`--quantile`) of the confidence
(maximum softmax probability) of the training clips of class j that the run classifies correctly,
read from its out-of-fold predictions (averaged over its seeds), so no clip is scored by a model
that trained on it. An unlabelled clip is selected when its confidence exceeds the threshold of
its predicted class; its scores are the run's fold models averaged, as `fuse.predict` gives them.
Class-specific thresholds keep rare classes from being crowded out by frequent, confident ones.

Writes a CSV (`id,split,label,score`, sorted by id) that `fuse.train --pseudo FILE` adds to its
training folds. The run's files are checked as they are read (fuse.saved_run): a damaged run is
refused before anything is written.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import pandas as pd

from cache import open_clips
from cache.cli import Refused, damage_named, ends_cleanly
from cache.commit import atomic_write
from .saved_run import SavedRun

COLUMNS = ("id", "split", "label", "score")  # the pseudo-label CSV


def class_thresholds(probs: np.ndarray, labels: np.ndarray, quantile: float) -> np.ndarray:
    """lambda [C]: per class, the `quantile` of max(probs) over the clips of that class predicted
    correctly (Algorithm 1, lines 1-11); +inf for a class with none. probs [n, C], labels int [n]."""
    predicted, confidence = probs.argmax(1), probs.max(1)
    out = np.full(probs.shape[1], np.inf)
    for j in range(probs.shape[1]):
        correct = confidence[(labels == j) & (predicted == j)]
        if len(correct):
            out[j] = np.quantile(correct, quantile)
    return out


def select(probs: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(selected bool [n], predicted class [n], confidence [n]): s_i > lambda of its predicted
    class (Algorithm 1, lines 13-19)."""
    predicted, confidence = probs.argmax(1), probs.max(1)
    return confidence > thresholds[predicted], predicted, confidence


def out_of_fold(run: SavedRun, cache_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """The run's training clips: out-of-fold probabilities averaged over seeds [n, C], labels [n]."""
    cv = run.scores("cv", ("ids", "probs"))
    if "labels" in cv:
        labels = cv["labels"]
    else:  # runs written before cv.npz kept the labels: the cached clip table
        table = open_clips(run.meta["dataset"], root=cache_dir)
        index = {c: i for i, c in enumerate(run.meta["classes"])}
        labels = np.array([index[names[0]] for names in table.label_names(list(cv["ids"]))])
    return cv["probs"].mean(0), labels


def unlabelled_scores(run: SavedRun, dataset: str, split: str, cache_dir=None):
    """(ids [n], probabilities [n, C]) of `split` of `dataset`: the run's own scores when it scored
    that split of its own dataset, else `fuse.predict`'s."""
    try:
        table = open_clips(dataset, root=cache_dir)
    except FileNotFoundError as err:
        raise Refused(str(err)) from None
    if split not in table.splits:
        raise Refused(f"--unlabelled {split}: dataset {dataset!r} has splits {', '.join(table.splits)}")
    if dataset == run.meta["dataset"] and run.has_scores(split):
        scores = run.scores(split)
        return scores["ids"], scores["probs"].mean(0)
    from .predict import predict_dataset

    with tempfile.TemporaryDirectory(prefix="semi-") as tmp:
        predict_dataset(run.folder, dataset, cache_dir, splits=[split], out=tmp)
        path = Path(tmp) / "scores" / f"{split}.npz"
        if not path.is_file():
            raise Refused(f"--unlabelled {split}: no clip of dataset {dataset!r} in that split can be scored")
        scores = np.load(path)
        return scores["ids"], scores["probs"].mean(0)


def claim_csv(path: Path):
    """Before any work: an existing --out is replaced only if it is a pseudo-label CSV (fuse.semi's
    header); anything else is refused (exit 2)."""
    if not path.exists():
        return
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline().strip()
    except (OSError, UnicodeDecodeError):
        first = None
    if first != ",".join(COLUMNS):
        raise Refused(f"--out {path}: exists and is not a pseudo-label CSV of fuse.semi (its first line is not "
                      f"{','.join(COLUMNS)!r}); nothing is replaced: give another file")


def write_atomic(frame: pd.DataFrame, path: Path):
    """The CSV written beside and renamed into place (a failure or Ctrl-C leaves no temporary)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        frame.to_csv(tmp, index=False)


def report(classes, thresholds, labels, oof, selected, predicted, n) -> str:
    correct = oof.argmax(1) == labels
    lines = [f"{'class':<10}{'threshold':>10}{'correct':>9}{'selected':>10}"]
    for j, name in enumerate(classes):
        shown = "none" if np.isinf(thresholds[j]) else f"{thresholds[j]:.3f}"
        lines.append(f"{name:<10}{shown:>10}{int((correct & (labels == j)).sum()):>9}"
                     f"{int((selected & (predicted == j)).sum()):>10}")
    lines.append(f"selected {int(selected.sum())} of {n} unlabelled clips")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="A fuse.train run folder.")
@click.option("--dataset", required=True, help="Cached dataset holding the unlabelled clips.")
@click.option("--unlabelled", "split", required=True, help="Its split to select from (demo: test3).")
@click.option("--quantile", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5,
              show_default=True, help="eta: per-class quantile of the correct training clips' confidence.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), help="Cache folder (default data/cache).")
@click.option("--out", type=click.Path(dir_okay=False), help="CSV to write (default RUN/semi-DATASET-SPLIT.csv); an "
              "existing file is replaced only if it is a pseudo-label CSV.")
@ends_cleanly("no pseudo-label CSV was written (an earlier one is kept as it was)")
@damage_named
def main(run_dir, dataset, split, quantile, cache_dir, out):
    """Select confidently predicted unlabelled clips with class-specific thresholds (MER-SEMI)."""
    run = SavedRun(run_dir)
    path = Path(out) if out else run.folder / f"semi-{dataset}-{split}.csv"
    claim_csv(path)
    meta = run.meta
    if meta["multi_label"]:
        raise Refused(f"{run.folder} is a multi-label run: Algorithm 1 selects by the maximum softmax "
                      f"probability of single-label models")
    oof, labels = out_of_fold(run, cache_dir)
    thresholds = class_thresholds(oof, labels, quantile)
    ids, probs = unlabelled_scores(run, dataset, split, cache_dir)
    chosen, predicted, confidence = select(probs, thresholds)
    frame = pd.DataFrame({"id": ids[chosen].astype(str), "split": split,
                          "label": [meta["classes"][j] for j in predicted[chosen]],
                          "score": np.round(confidence[chosen], 6)}, columns=COLUMNS).sort_values("id")
    write_atomic(frame, path)
    click.echo(report(meta["classes"], thresholds, labels, oof, chosen, predicted, len(ids)))
    click.echo(_accuracy_note(dataset, cache_dir, frame, meta))
    click.echo(f"pseudo-labels: {path}  (train with: python -m fuse.train ... --pseudo {path})")


def _accuracy_note(dataset, cache_dir, frame, meta) -> str:
    """How many pseudo-labels agree with labels the clip table happens to hold (none for MER-SEMI)."""
    try:
        table = open_clips(dataset, root=cache_dir)
    except FileNotFoundError:
        return ""
    known = [(cid, lab) for cid, lab in zip(frame["id"], frame["label"]) if cid in table and table.labelled([cid])[0]]
    if not known:
        return "the selected clips carry no label in the clip table: pseudo-label accuracy unknown"
    right = sum(lab in table.label_names([cid])[0] for cid, lab in known)
    return f"pseudo-labels agree with the clip table's labels on {right} of {len(known)} labelled selected clips"


if __name__ == "__main__":
    sys.exit(main())
