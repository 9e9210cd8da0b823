"""Stage 2: fusion classifiers and regressors trained on the feature cache.

Rooms, lowest first; a room imports only those below it (tests/test_layout.py):

    metrics.py, folders.py   the MER 2023 metrics; folders fuse writes (marker, claim, atomic swap)
    models/                  one module per fusion model, registered in MODELS
    inputs/                  feature specs and defaults, the problem from the cache, folds, training-only clips
    training/                the request, systems, the one loop, the member-batched ensemble, LightGBM's CV
    results/                 scoring by the MER protocol, run folders, plots, decision-level fusion
    sweeps/                  plan, trials, the Optuna study, workers, leaderboard, report
    train.py, predict.py, sweep.py, semi.py (+ semi_members.py)   the command lines: python -m fuse.X

Features are named by the cache's spec grammar (cache.specs: `hubert-large@18,19,20`, `mfcc#stats`);
fuse imports cache, never the reverse.
"""
