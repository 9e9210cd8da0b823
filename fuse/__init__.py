"""Stage 2: fusion classifiers and regressors trained on the feature cache.

Command lines: `python -m fuse.train|predict|sweep|semi`. Features are named by the cache's spec
grammar (cache.specs: `hubert-large@18,19,20`, `mfcc#stats`); fuse/ imports cache, never the reverse.
"""
