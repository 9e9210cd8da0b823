"""The order of a budgeted sweep: what it must have before the budget runs out.

First the unimodal baseline of every feature (every other trial is compared with them, and they
rank the combinations), run whatever the budget; then the combinations, ranked by the sum of their
parts' unimodal CV combined scores (a part's best over models and options), the best of each
modality set (AL, AV, LV, ALV) first so that every set is covered once before any is covered twice.
"""
from __future__ import annotations

from pathlib import Path

from fuse.results.run_folder import read_metrics
from fuse.training.saved_run import DamagedRun
from .trials import Trial


def baselines(trials: dict[str, Trial]) -> dict[str, Trial]:
    """The unimodal trials (run id -> Trial), in plan order."""
    return {run: t for run, t in trials.items() if len(t.features) == 1}


def unimodal_scores(trials: dict[str, Trial], runs: Path) -> dict[tuple, float]:
    """(modality, feature spec) -> the best CV combined score of its finished unimodal trials."""
    best: dict[tuple, float] = {}
    for run, trial in baselines(trials).items():
        try:
            metrics = read_metrics(Path(runs) / run)
        except DamagedRun:  # named where the sweep reads its runs (run.finished_run)
            metrics = None
        if metrics is not None:
            score = metrics["cv"]["combined"]["mean"]
            part = trial.features[0]
            best[part] = max(score, best.get(part, score))
    return best


def ranked_combinations(trials: dict[str, Trial], runs: Path) -> dict[str, Trial]:
    """The multimodal trials in budget order (a combination with a part that has no score: last)."""
    scores = unimodal_scores(trials, runs)

    def rank(item) -> float:
        parts = [scores.get(part) for part in item[1].features]
        return sum(parts) if None not in parts else float("-inf")

    ranked = sorted(((run, t) for run, t in trials.items() if len(t.features) > 1), key=rank, reverse=True)
    first = {}
    for run, trial in ranked:
        first.setdefault(trial.modalities, run)
    heads = set(first.values())
    return {run: trials[run] for run in [r for r, _ in ranked if r in heads] + [r for r, _ in ranked if r not in heads]}
