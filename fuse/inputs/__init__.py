"""What a run trains on: feature specs and per-dataset defaults (specs), the training problem read
from the cache (problem: arrays, labels, splits; outliers: far-out clips named), the CV folds
(folds), and training-only clips: augmented copies (extras) and pseudo-labelled clips (pseudo,
selection: MER-SEMI's per-class thresholds).

Imports: cache, fuse.metrics. Nothing from the other rooms of fuse.
"""
