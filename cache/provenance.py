"""What produced a cached feature: fingerprints and library versions."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from importlib import metadata

# options that change how fast, not what: never part of a fingerprint
RUNTIME_FIELDS = frozenset({"device", "batch_seconds", "batch_tokens"})
LIBRARIES = ("numpy", "h5py", "av", "opensmile", "librosa", "torch", "transformers", "dlib-bin")


def non_default_config(config) -> dict:
    """Fields of a config dataclass whose value differs from the field's default.

    Only these enter the fingerprint, so adding an option later (with a default) keeps old caches valid.
    """
    out = {}
    for f in dataclasses.fields(config):
        if f.name in RUNTIME_FIELDS:
            continue
        value = getattr(config, f.name)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if value != default:
            out[f.name] = value
    return out


def config_fingerprint(extractor: str, version: str, config) -> str:
    """Hash of extractor name, version and non-default config (never a path of this machine).

    `config` is a config dataclass, or the dict an extractor builds from it (see
    Extractor.identity, where a model folder is replaced by its weights hash)."""
    if dataclasses.is_dataclass(config):
        config = non_default_config(config)
    blob = json.dumps({"extractor": extractor, "version": version, "config": config},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions
