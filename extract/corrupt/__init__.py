"""MER-NOISE: corrupted copies of a corpus (`python -m extract.corrupt`)."""
