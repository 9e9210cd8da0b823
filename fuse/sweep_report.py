"""What a sweep tells its user: leaderboard (CSV and markdown), MER 2023 Table-3 layout, plots,
and the decision-level fusion of the best trials as its own leaderboard row."""
from __future__ import annotations

import json
import os

import pandas as pd

from . import leaderboard, plots
from .decision import fuse_runs
from .folders import written
from .study import masked


def report(sweep, top_k: int = 3) -> str:
    """Write the sweep's reports to `sweep.out`; returns the text printed at the end."""
    out = sweep.out
    trials = ({r: sweep.plan.trials[r] for r in sweep.plan.reruns} if sweep.plan.reruns else sweep.plan.trials)
    frame = leaderboard.rows(trials, sweep.runs)
    if not len(frame):
        return f"sweep {sweep.name}: no finished trial yet (re-run the same command to continue)"
    link = os.path.relpath(sweep.runs, out)
    with written(out, "sweep") as tmp:  # the reports of the last invocation, whole
        fused = _fusion(sweep, frame, top_k, tmp / "fusion")
        row = leaderboard.fusion_row(fused, frame) if fused else None
        layout, gains = _write_reports(tmp, sweep, frame, link, row)
    best = frame.iloc[0]
    lines = [f"sweep {sweep.name}: {len(frame)}/{len(trials)} trials finished; reports in {out}",
             leaderboard.markdown(frame.head(10), link, row), "", "MER 2023 Table-3 layout (best trial per feature set):",
             layout, ""]
    if len(gains):
        top = gains.sort_values("gain", ascending=False).iloc[0]
        lines.append(f"largest fusion gain: {top['set']} {top['combined']:.3f} vs {top['best_single']:.3f} "
                     f"({top['gain']:+.3f} CV combined)")
    lines.append(f"best: {best['model']} {best['modalities']} ({best['run']}), CV combined {best['cv_combined']:.3f}")
    if fused:
        cells = "; ".join(f"{s} {m['combined']['mean']:.3f}" for s, m in fused.items()
                          if isinstance(m, dict) and "combined" in m)
        lines.append(f"decision-level fusion, {row['params']}; test weights chosen on all folds. Combined "
                     f"{cells}; predictions in {out / 'fusion' / 'predictions'}")
    return "\n".join(lines)


def _write_reports(tmp, sweep, frame, link, row):
    """Leaderboards, the Table-3 layout, plots and sweep.json into `tmp`; returns (layout, gains)."""
    (pd.concat([frame, pd.DataFrame([row])], ignore_index=True) if row else frame).to_csv(
        tmp / "leaderboard.csv", index=False)
    (tmp / "leaderboard.md").write_text(leaderboard.markdown(frame, link, row) + "\n")
    layout = leaderboard.table3(frame)
    (tmp / "table3.md").write_text(layout + "\n")
    if (frame["n_modalities"] <= 2).any():
        plots.pair_heatmap(tmp / "pair_heatmap.png", frame)
    gains = leaderboard.fusion_gain(frame)
    if len(gains):
        plots.fusion_gain(tmp / "fusion_gain.png", gains)
    (tmp / "sweep.json").write_text(json.dumps({"study": sweep.name, "storage": masked(sweep.storage),
                                                "definition": sweep.definition, "runs": str(sweep.runs)},
                                               indent=2, default=str))
    return layout, gains


def _fusion(sweep, frame, top_k: int, out) -> dict | None:
    """Fuse the top-k trials (fuse.decision) into `out`: its metrics, or None when k < 2 or fewer trials."""
    if top_k < 2 or len(frame) < 2:
        return None
    runs = [sweep.runs / r for r in frame["run"].head(top_k)]
    return fuse_runs(runs, sweep.plan.dataset, sweep.cache_dir, out)
