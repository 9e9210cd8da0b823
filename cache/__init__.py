"""The feature cache: one HDF5 file per (dataset, feature), crash-safe, resumable, shardable.

Read:   `open_feature(dataset, feature)` -> FeatureReader (ids, array(), sequence(), provenance)
Write:  `FeatureWriter` (used by `python -m extract`)
CLI:    `python -m cache ls|info|verify|import-npy|rm`
"""
from .provenance import config_fingerprint, library_versions, non_default_config
from .reader import FeatureReader, list_features, open_feature
from .store import ConfigMismatch, feature_slug
from .writer import FeatureWriter, cache_root, feature_path

__all__ = ["FeatureReader", "FeatureWriter", "ConfigMismatch", "open_feature", "list_features",
           "cache_root", "feature_path", "feature_slug", "config_fingerprint",
           "non_default_config", "library_versions"]
