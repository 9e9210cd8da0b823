"""Import a MER2023-baseline-style folder of per-clip `.npy` files into the cache.

Each `<clip id>.npy` holds an utterance-level vector [D] (or [L, D] per layer), or a frame-level
sequence [T, D]; sequences are stored ragged, with their mean over time as the clip array.
Given the corpus's manifest, the dataset's clip table is written too (stage 2 needs it).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .clips import write_clips
from .provenance import library_versions
from .writer import FeatureWriter


def import_npy(folder: Path, dataset: str, feature: str, root=None, frame_level: bool | None = None,
               overwrite: bool = False, manifest=None, source: str = "import-npy",
               replace_clips: bool = False) -> tuple[Path, int]:
    """Write `folder`/*.npy as the cached feature; returns (feature file, clip count).

    `frame_level` None infers it: 2-D arrays are [T, D] sequences when their first dimension
    varies across clips, per-layer [L, D] arrays when it does not. `manifest` (manifests.Manifest)
    writes the dataset's clip table (one that would lose clips only with `replace_clips`: see
    cache.clips.write_table) and records its fingerprint in the feature's provenance.
    """
    files = sorted(Path(folder).glob("*.npy"))
    if not files:
        raise FileNotFoundError(f"no .npy files in {folder}")
    arrays = {f.stem: np.load(f) for f in files}
    if frame_level is None:
        frame_level = _looks_frame_level(arrays)
    digest = hashlib.sha256()
    for clip_id, value in arrays.items():
        digest.update(clip_id.encode() + value.tobytes())
    fingerprint = digest.hexdigest()[:16]
    provenance = {"extractor": "import-npy", "version": "1", "source": Path(folder).name,
                  "config": {"frame_level": frame_level}, "fingerprint": fingerprint,
                  "libraries": library_versions()}
    if manifest is not None:
        provenance["manifest_fingerprint"] = manifest.fingerprint()
    writer = FeatureWriter(root, dataset, feature, fingerprint, provenance, flush_every=256)
    if overwrite:
        writer.remove()
    writer.check_config()
    for clip_id, value in arrays.items():
        if frame_level:
            writer.put(clip_id, {"mean": value.mean(axis=0)}, {"frames": value})
        else:
            writer.put(clip_id, {"features": value})
    writer.merge()
    if manifest is not None:
        write_clips(manifest, dataset, root, source=source, replace=replace_clips)
    return writer.path, len(arrays)


def _looks_frame_level(arrays: dict[str, np.ndarray]) -> bool:
    shapes = {a.shape for a in arrays.values()}
    ndims = {len(s) for s in shapes}
    if ndims != {1} and ndims != {2} and ndims != {3}:
        raise ValueError(f"mixed array ranks across clips: {sorted(shapes)[:4]}")
    return ndims == {2} and len({s[0] for s in shapes}) > 1
