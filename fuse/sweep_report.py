"""What a sweep tells its user: leaderboard (CSV and markdown), MER 2023 Table-3 layout, plots,
and the decision-level fusion of the best trials as its own leaderboard row."""
from __future__ import annotations

import json
import os

from . import leaderboard, plots
from .decision import fuse_runs


def report(sweep, top_k: int = 3) -> str:
    """Write the sweep's reports to `sweep.out`; returns the text printed at the end."""
    out = sweep.out
    out.mkdir(parents=True, exist_ok=True)
    trials = ({r: sweep.plan.trials[r] for r in sweep.plan.reruns} if sweep.plan.reruns else sweep.plan.trials)
    frame = leaderboard.rows(trials, sweep.runs)
    if not len(frame):
        return f"sweep {sweep.name}: no finished trial yet (re-run the same command to continue)"
    link = os.path.relpath(sweep.runs, out)
    frame.to_csv(out / "leaderboard.csv", index=False)
    fusion = _fusion(sweep, frame, top_k)
    board = leaderboard.markdown(frame, link)
    if fusion:
        board += "\n\n" + fusion
    (out / "leaderboard.md").write_text(board + "\n")
    (out / "table3.md").write_text(leaderboard.table3(frame) + "\n")
    if (frame["n_modalities"] <= 2).any():
        plots.pair_heatmap(out / "pair_heatmap.png", frame)
    gains = leaderboard.fusion_gain(frame)
    if len(gains):
        plots.fusion_gain(out / "fusion_gain.png", gains)
    (out / "sweep.json").write_text(json.dumps({"study": sweep.name, "storage": sweep.storage,
                                                "definition": sweep.definition, "runs": str(sweep.runs)},
                                               indent=2, default=str))
    best = frame.iloc[0]
    lines = [f"sweep {sweep.name}: {len(frame)}/{len(trials)} trials finished; reports in {out}",
             leaderboard.markdown(frame.head(10), link)]
    if len(gains):
        top = gains.sort_values("gain", ascending=False).iloc[0]
        lines.append(f"largest fusion gain: {top['set']} {top['combined']:.3f} vs {top['best_single']:.3f} "
                     f"(+{top['gain']:.3f} CV combined)")
    lines.append(f"best: {best['model']} {best['modalities']} ({best['run']}), CV combined {best['cv_combined']:.3f}")
    if fusion:
        lines.append(fusion)
    return "\n".join(lines)


def _fusion(sweep, frame, top_k: int) -> str:
    """Fuse the top-k trials; a markdown line with its CV and test combined scores ('' when k < 2)."""
    if top_k < 2 or len(frame) < 2:
        return ""
    runs = [sweep.runs / r for r in frame["run"].head(top_k)]
    metrics = fuse_runs(runs, sweep.plan.dataset, sweep.cache_dir, sweep.out / "fusion")
    cells = [f"{s} {m['combined']['mean']:.3f} ± {m['combined']['std']:.3f}" for s, m in metrics.items()
             if isinstance(m, dict) and "combined" in m]
    weights = ", ".join(f"{w:.1f}" for w in metrics["weights"])
    return f"decision-level fusion of the top {len(runs)} (weights {weights}, chosen on CV): " + "; ".join(cells)
