"""MER-SEMI sample selection: Algorithm 1 of the MER 2023 baseline (Lian et al. 2023, section 2.3).

    python -m fuse.semi --run data/runs/demo/attention-ALV-... --dataset demo --unlabelled test3

For each class j, the threshold lambda_j is the eta-quantile (`--quantile`) of the confidence
(maximum softmax probability) of the training clips of class j that the run classifies correctly,
read from its out-of-fold predictions (averaged over its seeds), so no clip is scored by a model
that trained on it. An unlabelled clip is selected when its confidence exceeds the threshold of
its predicted class; its scores are the run's fold models averaged, as `fuse.predict` gives them.
Class-specific thresholds keep rare classes from being crowded out by frequent, confident ones.

Writes a CSV (`id,split,label,score`, sorted by id): the selection of the whole run. Beside it,
the per-member pseudo-labels that `fuse.train --pseudo FILE` trains on (fuse.pseudo): for every
(seed, fold) member of the run, the selection made from that member's training folds alone
(fuse.semi_members), since the whole run's labels come from fold models that trained on every
validation fold. The run's files are checked as they are read (fuse.saved_run): a damaged run is
refused before anything is written.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import pandas as pd

from cache import open_clips
from cache.cli import Refused, damage_named, ends_cleanly
from cache.commit import atomic_write
from .pseudo import COLUMNS, KIND, members_path, written_by_semi
from .saved_run import SavedRun
from .selection import class_thresholds, select
from .semi_members import NoMembers, member_selection


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


def claim_outputs(path: Path):
    """Before any work: an existing --out is replaced only if it is a pseudo-label CSV (fuse.semi's
    header), and the per-member file beside it only if fuse.semi wrote it; anything else is refused
    (exit 2)."""
    if path.exists() and not written_by_semi(path):
        raise Refused(f"--out {path}: exists and is not a pseudo-label CSV of fuse.semi (its first line is not "
                      f"{','.join(COLUMNS)!r}); nothing is replaced: give another file")
    members = members_path(path)
    if members.exists() and _kind(members) != KIND:
        raise Refused(f"--out {path}: {members.name} beside it, where fuse.semi writes the per-member "
                      f"pseudo-labels, exists and is not fuse.semi's; nothing is replaced: give another file")


def _kind(path: Path):
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return blob.get("kind") if isinstance(blob, dict) else None


def per_member(run: SavedRun, dataset: str, split: str, quantile: float, cache_dir) -> tuple[dict | None, str]:
    """(the per-member pseudo-labels, or None and why not)."""
    if dataset != run.meta["dataset"]:
        return None, (f"--dataset {dataset} is not the run's dataset ({run.meta['dataset']}), and fuse.train "
                      f"--pseudo trains on clips of its own dataset")
    try:
        return member_selection(run, split, quantile, cache_dir), ""
    except NoMembers as err:
        return None, str(err)


def write_outputs(frame: pd.DataFrame, path: Path, members: dict | None):
    """The CSV and (with `members`) the per-member file beside it, each written beside and renamed
    into place, the per-member file holding the CSV's SHA-256 (fuse.pseudo checks the pair); an
    earlier per-member file of fuse.semi's is removed when none is made now."""
    text = frame.to_csv(index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    if members is None:
        _write_text(path, text)
        members_path(path).unlink(missing_ok=True)  # fuse.semi's (claim_outputs): of an earlier CSV
        return
    blob = {**members, "csv_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    with atomic_write(members_path(path)) as tmp:
        tmp.write_text(json.dumps(blob, indent=1), encoding="utf-8")
        _write_text(path, text)


def _write_text(path: Path, text: str):
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


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
    claim_outputs(path)
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
    members, why_not = per_member(run, dataset, split, quantile, cache_dir)
    write_outputs(frame, path, members)
    click.echo(report(meta["classes"], thresholds, labels, oof, chosen, predicted, len(ids)))
    click.echo(_accuracy_note(dataset, cache_dir, frame, meta))
    if members is None:
        click.echo(f"pseudo-labels: {path}; no per-member pseudo-labels ({why_not}), so fuse.train --pseudo "
                   f"refuses this file: its labels come from fold models that trained on every validation fold")
        return
    counts = [len(m["selected"]) for m in members["members"]]
    click.echo(f"per-member pseudo-labels: {min(counts)}-{max(counts)} clips for each of the {len(counts)} "
               f"members (seed x fold), each selected by an inner {members['inner_folds']}-fold CV of its own "
               f"training folds -> {members_path(path)}")
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
