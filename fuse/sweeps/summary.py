"""The plan a sweep prints before it trains anything (and all that `--dry-run` prints):

    plan: 71 trials of attention, 1 seed each: 11 unimodal (A 7, L 2, V 2), 32 bimodal (AL 14, AV 14, LV 4), 28 trimodal (ALV 28)
      A (7): egemaps, is09, is10, logmel, mfcc, random-tiny-hubert@-1, random-tiny-hubert@-4:
      ...
      left to the sequence models: e2el-spectrogram, face-crops, face-crops-crossbert
    finished: 0 of 71 (skipped); to run: 71
    estimated time: 3 min on 2 workers (71 trials: 0 from finished runs of their shape, 71 from 2 timed epochs)
"""
from __future__ import annotations

from .estimate import TIMED_EPOCHS, Estimate
from .leaderboard import SIZES
from .plan import Plan


def duration(seconds: float) -> str:
    """12 s, 4 min, 2.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _sets(plan: Plan) -> str:
    counts: dict[int, dict[str, int]] = {}
    for trial in plan.trials.values():
        per_set = counts.setdefault(len(trial.features), {})
        per_set[trial.modalities] = per_set.get(trial.modalities, 0) + 1
    return ", ".join(f"{sum(c.values())} {SIZES[size]} (" + ", ".join(f"{m} {n}" for m, n in c.items()) + ")"
                     for size, c in sorted(counts.items()))


def _features(plan: Plan) -> list[str]:
    """One line per modality and the models that try the same features; then what is left out."""
    groups: dict[str, list[str]] = {}
    for model, alternatives in plan.alternatives.items():
        groups.setdefault(repr(alternatives), []).append(model)
    lines = []
    for models in groups.values():
        head = f"{', '.join(models)}: " if len(groups) > 1 else ""
        lines += [f"  {head}{m} ({len(specs)}): {', '.join(specs)}" for m, specs in plan.alternatives[models[0]].items()]
    used = {m for alternatives in plan.alternatives.values() for m in alternatives}
    sequence = [e.name for e in plan.cached if e.left_out == "sequence input" and e.modality in used]
    unknown = [e.name for e in plan.cached if e.modality is None]
    if sequence:
        lines.append(f"  left to the sequence models: {', '.join(sequence)}")
    if unknown:
        lines.append(f"  modality unknown, not tried: {', '.join(unknown)} (python -m cache import-npy --modality A|L|V)")
    return lines


def summary(plan: Plan, finished: int, estimate: Estimate, workers: int, budget: float | None) -> str:
    """The plan's lines: trials per modality set, features per modality, finished, estimated time."""
    models = ", ".join(plan.alternatives)
    seeds = sorted(set(plan.seeds.values()))
    lines = [f"plan: {len(plan.trials)} trials of {models}, {'/'.join(map(str, seeds))} seed(s) each: {_sets(plan)}",
             *_features(plan),
             f"finished: {finished} of {len(plan.trials)} (skipped); to run: {len(plan.trials) - finished}"]
    to_run = len(estimate.seconds)
    if to_run:
        lines.append(f"estimated time: {duration(estimate.wall(workers))} on {workers} worker(s) ({to_run} trials: "
                     f"{estimate.measured} from finished runs of their shape, {estimate.timed} from "
                     f"{TIMED_EPOCHS} timed epochs)")
    if budget and to_run:
        lines.append(_budget_line(plan, estimate, workers, budget))
    return "\n".join(lines)


def _budget_line(plan: Plan, estimate: Estimate, workers: int, budget: float) -> str:
    baselines = [r for r in estimate.seconds if len(plan.trials[r].features) == 1]
    first = estimate.wall(workers, baselines)
    fits = "every trial is estimated to fit" if estimate.wall(workers) <= budget else \
        "the rest are left out when it runs out, and named at the end"
    warning = f"; the baselines alone ({duration(first)}) exceed it" if first > budget else ""
    return (f"budget {duration(budget)}: unimodal baselines first ({duration(first)}{warning}), then the "
            f"combinations ranked by the sum of their parts' unimodal scores, the best of each modality set "
            f"first; {fits}")
