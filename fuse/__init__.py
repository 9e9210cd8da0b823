"""Stage 2: fusion models trained on the feature cache.

Today it holds the layer selector shared by every per-layer feature (`fuse.layers`:
`hubert-large@18,19,20`, `@-4:`); the fusion models and sweeps build on it.
"""
