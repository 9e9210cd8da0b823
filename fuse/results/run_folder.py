"""Score a trained request and write its run folder: resolved config, metrics, predictions, fold
weights, folds and plots:

    <run>/config.json              the resolved command: dataset, features, model, options
    <run>/metrics.json             cv and per-split metrics (mean, std, per seed), ensemble, seconds
    <run>/predictions/<split>.csv  MER submission format: name,discrete,valence (multi-label: a 0/1
                                   column per class, then valence; no valence column when no
                                   clip has one)
    <run>/submission.csv           the corpus's challenge track's file (fuse.results.submission)
    <run>/scores/<split>.npz       ids, probabilities [S, n, C] and valence [S, n] per seed
    <run>/scores/cv.npz            out-of-fold validation predictions, folds, labels
    <run>/weights/<system>/seed<s>-fold<k>.pt (.lgbm.json)   every fold model at its best epoch
    <run>/model.json               what `fuse.predict` needs to rebuild the fold models, and the
                                   SHA-256 of every fold weight file (read back: fuse.training.saved_run)
    <run>/confusion.png, curves.png
"""
from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fuse.folders import derived_outputs, kind_of, written
from fuse.inputs.extras import TRAIN_ONLY
from fuse.inputs.folds import fold_kind
from fuse.metrics import mean_std, show_mean_std
from fuse.training.loop import standardized
from fuse.training.members import combine, config_dict, save_weights
from fuse.training.saved_run import DamagedRun
from . import plots
from .submission import describe, write_submission
from .scoring import NESTED, cv_scores, fused, nested_fusion, oof_thresholds, score


@dataclass
class Result:
    folder: Path
    metrics: dict
    title: str
    replaced: list | None = None   # the run folder replaced (with what other commands made from it), or None

    def table(self) -> str:
        """The compact result table printed at the end of a run."""
        scores = SCORES if self.metrics.get("has_valence", True) else SCORES[:2]  # no valence: F1 is the score
        head = f"{'split':<8}{'clips':>6}  " + "".join(f"{HEADINGS[k]:<18}" for k in scores)
        lines = [self.title, head]
        for split, counts in self.metrics["clips"].items():
            m = self.metrics.get(split)
            if not m:
                lines.append(f"{split:<8}{counts:>6}  (unlabelled: predictions only)")
                continue
            cells = [_cell(m.get(k)) for k in scores]
            lines.append(f"{split:<8}{counts:>6}  " + "".join(f"{c:<18}" for c in cells))
        if "decision_fusion" in self.metrics:
            weights = ", ".join(f"{w:.1f}" for w in self.metrics["decision_fusion"]["weights"])
            lines.append(f"fused with weights {weights} (test splits); cv: each fold scored with the weights chosen "
                         f"on its seed's other folds (metrics.json decision_fusion)")
        if "macro_f1" in self.metrics["cv"]:
            lines.append(f"multi-label: CV macro F1 {_cell(self.metrics['cv']['macro_f1'])}; per class in metrics.json")
        if self.metrics.get("missing"):
            lines.append(f"left out: {self.metrics['missing']} clips failed or absent in a feature (missing.csv)")
        if self.metrics["config"].get("training_only_clips"):
            lines.append(f"trained also on: {self.metrics['config']['training_only']}")
        if not self.metrics.get("has_valence", True):
            lines.append("no clip has a valence: scored by weighted F1 alone (combined = weighted F1)")
        if describe(self.metrics.get("submission")):
            lines.append(f"submission: {describe(self.metrics['submission'])}")
        lines += [f"warning: {w}" for w in self.metrics.get("warnings", [])]
        return "\n".join(lines)


SCORES = ("weighted_f1", "accuracy", "mse", "combined")  # the result table's columns, by metric key
HEADINGS = {"weighted_f1": "weighted F1", "accuracy": "accuracy", "mse": "valence MSE", "combined": "combined"}


def _cell(entry) -> str:
    if not entry:
        return "-"
    return show_mean_std(entry["mean"], entry["std"], len(entry.get("per_seed", ())))


def write_run(folder: Path, request, problem, systems, weights, splits, lr_group=None) -> Result:
    """Score the systems and write the run folder (fuse.folders: swapped in whole, or nothing).
    `lr_group`: the learning rates this run was trained with as one model (fuse.sweep), recorded."""
    started = time.perf_counter()
    folder = Path(folder)
    replaced = derived_outputs(folder, "run") if kind_of(folder) == "run" else None
    with written(folder, "run") as tmp:
        out = _write_contents(tmp, request, problem, systems, weights, splits)
        out["seconds"] = round(sum(s.fit.seconds for s in systems) + time.perf_counter() - started, 2)
        if lr_group:
            out["lr_group"] = list(lr_group)  # seconds: an equal share of the group's training
        (tmp / "metrics.json").write_text(json.dumps(out, indent=2))
    title = (f"{request.model} on {problem.dataset}: " + ", ".join(f"{m}={s}" for m, s in zip(problem.modalities, problem.specs))
             + f" ({len(request.train.seeds)} seed(s) x {request.train.folds} folds, {out['seconds']:.1f} s)")
    return Result(folder, out, title, replaced)


def _write_contents(tmp: Path, request, problem, systems, weights, splits) -> dict:
    """Everything of a run folder but metrics.json into `tmp`; returns the metrics."""
    first = systems[0].fit
    tr, folds = first.train_index, first.folds
    oof_probs, oof_valence = fused(weights, [s.fit.oof_probs for s in systems], [s.fit.oof_valence for s in systems])
    thresholds = oof_thresholds(problem, tr, oof_probs)  # for the test splits, fused with `weights`
    out = {"cv": {}, "ensemble": {}, "clips": {"cv": int(len(tr))}, "has_valence": problem.has_valence}
    if len(systems) > 1:  # decision-level fusion: no fold scored with weights chosen on it
        per_seed, oof_probs, oof_valence, fold_weights = nested_fusion(
            [s.fit.oof_probs for s in systems], [s.fit.oof_valence for s in systems], problem, tr, folds)
        out["decision_fusion"] = {"cv": NESTED, "weights": [float(w) for w in weights],
                                  "fold_weights": np.round(fold_weights, 6).tolist()}
    else:
        per_seed = cv_scores(problem, tr, folds, oof_probs, oof_valence)
    out["cv"] = mean_std(per_seed)
    (tmp / "scores").mkdir()
    np.savez_compressed(tmp / "scores" / "cv.npz", ids=problem.ids[tr].astype(str), folds=folds,
                        probs=oof_probs, valence=oof_valence, labels=problem.labels[tr])
    meta = _meta(problem, request, systems, weights, thresholds)
    panels = [("CV", problem.labels[tr], oof_probs[0].argmax(1))] if not problem.multi_label else []
    for split in splits:
        panel = _score_split(tmp, split, problem, systems, weights, meta, out, thresholds, request)
        panels += [panel] if panel else []
    _write_extras(tmp, request, problem, systems, weights, meta, panels, out)
    return out


def _score_split(tmp, split, problem, systems, weights, meta, out, thresholds, request):
    rows = problem.index(split)
    out["clips"][split] = int(len(rows))
    if not len(rows):
        return None
    labelled = problem.labelled[rows]
    ens_p = predict_split(tmp, split, rows, problem, systems, weights, meta, out, thresholds,
                          request.train.device, request.train.precision)
    if not labelled.any() or problem.multi_label:
        return None
    return (split, problem.labels[rows[labelled]], ens_p[labelled].argmax(1))


def read_metrics(folder) -> dict | None:
    """A run folder's metrics.json as fuse.train wrote it; None when there is none (the run did not
    finish); DamagedRun naming the file and the cause when it cannot be read as one."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
        if not isinstance(metrics, dict) or not isinstance(metrics["cv"]["combined"]["mean"], (int, float)):
            raise ValueError("not the metrics fuse.train writes")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise DamagedRun(f"{path} is damaged ({' '.join(str(err).split())[:160] or type(err).__name__})") from None
    return metrics


def write_predictions(path: Path, ids, probs, valence, classes, multi_label, thresholds=None):
    """MER submission CSV: name,discrete,valence (multi-label: one 0/1 column per class); no
    valence column when `valence` is None."""
    frame = pd.DataFrame({"name": list(ids)})
    if multi_label:
        for c, name in enumerate(classes):
            frame[name] = (probs[:, c] >= thresholds[c]).astype(int)
    else:
        frame["discrete"] = [classes[i] for i in probs.argmax(axis=1)]
    if valence is not None:
        frame["valence"] = np.round(valence, 6)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def predict_split(folder, split, rows, problem, systems, weights, meta, out, thresholds, device="auto",
                  precision="fp32") -> np.ndarray:
    """Predict problem `rows` with the systems: predictions CSV, scores npz and (the track's split)
    the submission file under `folder`, the split's metrics (mean +- std over seeds, and the all-seed ensemble) into `out` when labelled.
    Returns the ensemble probabilities [n, C]."""
    probs, valence = combine(systems, weights, [b[rows] for b in problem.blocks], meta, device, precision)
    S, K = len(meta["seeds"]), meta["folds"]
    per_seed_p = probs.reshape(S, K, *probs.shape[1:]).mean(1)  # fold models: probabilities averaged
    per_seed_v = valence.reshape(S, K, -1).mean(1)
    ens_p, ens_v = per_seed_p.mean(0), per_seed_v.mean(0)
    write_predictions(Path(folder) / "predictions" / f"{split}.csv", problem.ids[rows], ens_p,
                      ens_v if meta.get("has_valence", True) else None, meta["classes"], meta["multi_label"], thresholds)
    submission = write_submission(folder, problem, split, rows, ens_p)
    if submission:
        out["submission"] = submission
    (Path(folder) / "scores").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(Path(folder) / "scores" / f"{split}.npz", ids=problem.ids[rows].astype(str),
                        probs=per_seed_p, valence=per_seed_v)
    labelled = problem.labelled[rows]
    if labelled.any():
        sub = rows[labelled]
        out[split] = mean_std([score(problem, sub, per_seed_p[s][labelled], per_seed_v[s][labelled], thresholds)
                               for s in range(S)])
        out.setdefault("ensemble", {})[split] = score(problem, sub, ens_p[labelled], ens_v[labelled], thresholds)
    return ens_p


def _meta(problem, request, systems, weights, thresholds) -> dict:
    return {"dataset": problem.dataset, "specs": problem.specs, "modalities": problem.modalities,
            "shapes": problem.shapes, "classes": list(problem.classes), "multi_label": problem.multi_label,
            "has_valence": problem.has_valence, "seeds": list(request.train.seeds), "folds": request.train.folds,
            "standardize": standardized(request.model, problem.shapes, problem.modalities, request.train.standardize),
            "max_items": problem.max_items,
            "fingerprints": problem.fingerprints,
            "thresholds": None if thresholds is None else thresholds.tolist(),
            "systems": [{"model": s.model, "label": s.label, "config": config_dict(s.config), "weight": float(w)}
                        for s, w in zip(systems, weights)]}


def _write_extras(tmp, request, problem, systems, weights, meta, panels, out):
    meta["sha256"] = {}  # of each fold weight file, checked when the run is read back (fuse.training.saved_run)
    for system in systems:
        digests = save_weights(tmp / "weights" / system.label, system, request.train.seeds, request.train.folds)
        meta["sha256"].update({f"weights/{system.label}/{name}": d for name, d in digests.items()})
    (tmp / "model.json").write_text(json.dumps(meta, indent=2))
    config = {"dataset": problem.dataset, "model": request.model, "features": dict(zip(problem.specs, problem.modalities)),
              "train": dataclasses.asdict(request.train), "test_splits": list(out["clips"])[1:],
              "systems": meta["systems"], "corpus_override": bool(request.corpus),
              "augment": request.augment, "pseudo": request.pseudo,
              "training_only_clips": int((problem.split == TRAIN_ONLY).sum()),
              "training_only": "; ".join(problem.notes)}
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    out["config"] = config
    out["features"] = problem.provenance
    out["best_epoch"] = systems[0].fit.best_epoch.tolist()
    if len(systems) > 1:
        out["systems"] = {s.label: {"weight": float(w), "cv": mean_std(cv_scores(
            problem, s.fit.train_index, s.fit.folds, s.fit.oof_probs, s.fit.oof_valence))} for s, w in zip(systems, weights)}
    if problem.missing:
        with open(tmp / "missing.csv", "w", newline="") as f:  # csv quotes reasons with quotes or commas
            writer = csv.writer(f, lineterminator="\n")
            writer.writerows([("id", "reason"), *sorted(problem.missing.items())])
    out["missing"] = len(problem.missing)
    out["folds"] = fold_kind(problem.labels[systems[0].fit.train_index], request.train.folds, problem.multi_label,
                             problem.classes)
    out["warnings"] = problem.warnings + ([f"--folds {request.train.folds}: {out['folds']['why']}"]
                                          if not out["folds"]["stratified"] and not problem.multi_label else [])
    if panels:
        plots.confusion_matrices(tmp / "confusion.png", panels, problem.classes)
    estimator = systems[0].estimator
    plots.training_curves(tmp / "curves.png", systems[0].fit.history, systems[0].fit.best_epoch,
                          "validation -loss" if estimator else "validation selection score",
                          plots.curves_title(request.model, systems[0].label, request.train.seeds[0]))
