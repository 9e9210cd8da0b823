"""A sweep's results: one row per trial read back from its run folder, the MER 2023 Table-3 layout
(feature sets grouped unimodal / bimodal / trimodal, columns Dis / Dim / Com per split) and plots.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from fuse.metrics import show_mean_std
from fuse.results.run_folder import read_metrics
from fuse.training.saved_run import DamagedRun
from .trials import Trial

log = logging.getLogger(__name__)
SIZES = {1: "unimodal", 2: "bimodal", 3: "trimodal"}
CV_NOTE = "CV nested: each fold scored with weights chosen on the other folds"  # the fusion row's CV


def rows(runs: dict[str, Trial], folder: Path) -> pd.DataFrame:
    """One row per finished trial (run id -> Trial; run folders under `folder`), best CV combined first."""
    out = []
    for run, trial in runs.items():
        try:
            m = read_metrics(folder / run)
        except DamagedRun as err:
            log.warning(f"{err}: left out of the leaderboard")
            continue
        if m is None:
            continue
        row = {"run": run, "model": trial.model, "modalities": trial.modalities, "n_modalities": len(trial.features),
               **{m_: spec for m_, spec in trial.features},
               "params": " ".join(trial.label().split(" ")[1 + len(trial.features):]), "seconds": m.get("seconds"),
               "seeds": _seeds(m)}
        for split in ["cv"] + [s for s in m.get("clips", {}) if s != "cv"]:
            for key in ("weighted_f1", "mse", "combined"):
                entry = m.get(split, {}).get(key)
                row[f"{split}_{key}"] = entry["mean"] if entry else None
                row[f"{split}_{key}_std"] = entry["std"] if entry else None
        out.append(row)
    frame = pd.DataFrame(out)
    if len(frame):
        frame = frame.sort_values("cv_combined", ascending=False, kind="stable").reset_index(drop=True)
    return frame


def _seeds(metrics: dict) -> int | None:
    """How many seeds a run's scores are over (None: not recorded)."""
    return len(metrics.get("cv", {}).get("combined", {}).get("per_seed", [])) or None


def splits_of(frame: pd.DataFrame) -> list[str]:
    """Splits with a score in some row (unlabelled splits have none)."""
    return [c[:-len("_combined")] for c in frame.columns
            if c.endswith("_combined") and not c.endswith("_std") and frame[c].notna().any()]


def markdown(frame: pd.DataFrame, runs_link: str = "runs", fusion: dict | None = None) -> str:
    """The leaderboard as a markdown table (the best trial's run folder linked); `fusion`
    (fusion_row) is added last, unranked."""
    splits = splits_of(frame)
    head = ["#", "model", "A", "L", "V", "params"] + [f"{s} F1" for s in splits[:1]] + [f"{s} combined" for s in splits] + ["s"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for i, r in frame.iterrows():
        name = f"[{i + 1}]({runs_link}/{r['run']})" if i == 0 else str(i + 1)
        lines.append("| " + " | ".join([name, *_cells(r, splits)]) + " |")
    if fusion:
        lines.append("| " + " | ".join([f"[fusion]({fusion['run']})", *_cells(pd.Series(fusion), splits)]) + " |")
    return "\n".join(lines)


def _cells(r: pd.Series, splits: list[str]) -> list[str]:
    n = r.get("seeds")
    cells = [r["model"], *(str(r.get(m)) if isinstance(r.get(m), str) else "" for m in "ALV"), r["params"],
             show_mean_std(r.get("cv_weighted_f1"), r.get("cv_weighted_f1_std"), seeds=n)]
    cells += [show_mean_std(r.get(f"{s}_combined"), r.get(f"{s}_combined_std"), seeds=n) for s in splits]
    cells.append("-" if r.get("seconds") is None or pd.isna(r.get("seconds")) else f"{r['seconds']:.1f}")
    return cells


def fusion_row(metrics: dict, frame: pd.DataFrame, folder: str = "fusion") -> dict:
    """Decision-level fusion (fuse.results.decision metrics) as a leaderboard row: the fused trials by rank
    and their test weights, and how its CV was scored (nested: each fold with the weights chosen on
    the other folds). Not ranked among the trials: they were picked for it by their CV ranks."""
    rank = {run: i + 1 for i, run in enumerate(frame["run"])}
    used = frame.set_index("run").loc[metrics["runs"]]
    modalities = "".join(m for m in "ALV" if any(m in s for s in used["modalities"]))
    parts = ", ".join(f"#{rank[r]} x {w:.1f}" for r, w in zip(metrics["runs"], metrics["weights"]))
    row = {"run": folder, "model": "fusion", "modalities": modalities, "n_modalities": len(modalities),
           "params": f"top {len(metrics['runs'])}: {parts}; {CV_NOTE}", "seconds": None, "seeds": _seeds(metrics)}
    for split in ["cv"] + [s for s in splits_of(frame) if s != "cv"]:
        for key in ("weighted_f1", "mse", "combined"):
            entry = metrics.get(split, {}).get(key)
            row[f"{split}_{key}"] = entry["mean"] if entry else None
            row[f"{split}_{key}_std"] = entry["std"] if entry else None
    return row


def table3(frame: pd.DataFrame) -> str:
    """MER 2023 Table 3: the best trial of each feature set, grouped by the number of modalities;
    per split Dis (weighted F1, %), Dim (valence MSE), Com (combined)."""
    splits = splits_of(frame)
    best = frame.drop_duplicates(subset=[c for c in ("A", "L", "V") if c in frame], keep="first")
    head = ["A", "L", "V"] + [f"{s} {k}" for s in splits for k in ("Dis", "Dim", "Com")]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for size, name in SIZES.items():
        group = best[best["n_modalities"] == size]
        if not len(group):
            continue
        lines.append(f"| **{name}** |" + " |" * (len(head) - 1))
        for _, r in group.iterrows():
            cells = [str(r.get(m)) if isinstance(r.get(m), str) else "" for m in "ALV"]
            n = r.get("seeds")
            for s in splits:
                f1 = r[f"{s}_weighted_f1"]
                cells += [show_mean_std(100 * f1 if f1 is not None else None, 100 * (r[f"{s}_weighted_f1_std"] or 0), n, 2),
                          show_mean_std(r[f"{s}_mse"], r[f"{s}_mse_std"], n, 2),
                          show_mean_std(r[f"{s}_combined"], r[f"{s}_combined_std"], n, 2)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fusion_gain(frame: pd.DataFrame) -> pd.DataFrame:
    """For every multimodal feature set: its CV combined minus that of its best single-modality part."""
    best = frame.drop_duplicates(subset=[c for c in ("A", "L", "V") if c in frame], keep="first")
    single = {(m, r[m]): r["cv_combined"] for _, r in best[best["n_modalities"] == 1].iterrows()
              for m in "ALV" if isinstance(r.get(m), str)}
    out = []
    for _, r in best[best["n_modalities"] > 1].iterrows():
        parts = [single.get((m, r[m])) for m in "ALV" if isinstance(r.get(m), str)]
        if all(p is not None for p in parts):
            label = " + ".join(r[m] for m in "ALV" if isinstance(r.get(m), str))
            out.append({"set": label, "combined": r["cv_combined"], "best_single": max(parts),
                        "gain": r["cv_combined"] - max(parts)})
    return pd.DataFrame(out)
