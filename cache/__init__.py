"""The feature cache: one HDF5 file per (dataset, feature), crash-safe, resumable, shardable.

Specs:  `parse_spec("hubert-large#mean@18,19,20")` -> FeatureSpec (feature, key, layer selector);
        `select_layers(array, selector)` (cache.specs: the FEATURE[#KEY][@LAYERS] grammar)
Read:   `open_feature(dataset, feature)` -> FeatureReader (ids, array(), sequence(), provenance)
        `open_features(dataset, ["hubert-large@18,19,20", "face-fer2013"])` -> AlignedFeatures
        (several features in one clip order, failed clips listed, never zero-filled)
        `open_clips(dataset)` -> ClipTable (ids, splits, labels, valence: stage 2 needs no corpus)
Write:  `FeatureWriter`, `write_clips(manifest)` (used by `python -m extract`)
Trust:  every value is stored under a checksum (cache.checksums); a file that is truncated or
        whose bytes changed raises `DamagedFile` (an OSError) naming it; `python -m cache verify`
CLI:    `python -m cache ls|info|clips|verify|import-npy|rm`
"""
from .aligned import AlignedFeatures, open_features
from .clips import ClipsDropped, ClipTable, clips_path, open_clips, write_clips
from .hdf5 import DamagedFile
from .provenance import config_fingerprint, library_versions, non_default_config
from .reader import EveryClipFailed, FeatureReader, list_features, open_feature
from .specs import FeatureSpec, LayerSelectionError, LayerSelector, parse_feature_spec, parse_spec, select_layers
from .store import ConfigMismatch, feature_slug
from .writer import FeatureWriter, cache_root, feature_path

__all__ = ["AlignedFeatures", "open_features", "FeatureSpec", "LayerSelectionError", "LayerSelector",
           "parse_feature_spec", "parse_spec", "select_layers", "ClipTable", "ClipsDropped",
           "clips_path", "open_clips", "write_clips", "DamagedFile", "EveryClipFailed", "FeatureReader",
           "FeatureWriter", "ConfigMismatch", "open_feature",
           "list_features", "cache_root", "feature_path", "feature_slug", "config_fingerprint",
           "non_default_config", "library_versions"]
