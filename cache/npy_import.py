"""Import a folder of per-clip `.npy` files into the cache: the MER 2023 baseline's and MERBench's.

Each `<clip id>.npy` holds an utterance-level vector [D] (or [L, D] per layer), or a frame-level
sequence [T, D]; sequences are stored ragged, with their mean over time as the clip array.
Given the corpus's manifest, the dataset's clip table is written too (stage 2 needs it).

The level comes from the folder's name where it follows MERTools' scripts: `<name>-UTT` /
`<name>_UTT` utterance level, `<name>-FRA` / `<name>_FRA` frame level (`chinese-hubert-large-FRA`,
`eGeMAPS_UTT`, `manet_FRA`, `<model>-noise<case>-UTT`). Their frame-level scripts squeeze each array,
so a clip of one frame is saved as [D]: in a frame-level folder a [D] array is that one frame.
Otherwise the level is inferred from the shapes. A file that cannot be read, or whose shape cannot
join the others', is recorded as a failed clip with the file and the cause; the other clips go on.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from .clips import write_clips
from .provenance import library_versions
from .writer import FeatureWriter


def import_npy(folder: Path, dataset: str, feature: str, root=None, frame_level: bool | None = None,
               overwrite: bool = False, manifest=None, source: str = "import-npy",
               replace_clips: bool = False, modality: str | None = None) -> tuple[Path, int]:
    """Write `folder`/*.npy as the cached feature; returns (feature file, clip count).

    `frame_level` None infers it: 2-D arrays are [T, D] sequences when their first dimension
    varies across clips, per-layer [L, D] arrays when it does not. `manifest` (manifests.Manifest)
    writes the dataset's clip table (one that would lose clips only with `replace_clips`: see
    cache.clips.write_table) and records its fingerprint in the feature's provenance; `modality`
    (A, L or V) is recorded there too, for stage 2 to place the feature (an imported folder names
    no extractor family).
    """
    files = sorted(Path(folder).glob("*.npy"))
    if not files:
        raise FileNotFoundError(f"no .npy files in {folder}")
    arrays, unreadable = _load(files)
    if frame_level is None:
        frame_level = level_of(folder)
    if frame_level is None:
        frame_level = _looks_frame_level(arrays)
    elif frame_level:  # MERTools' scripts squeeze a one-frame [1, D] sequence to [D]
        arrays = {c: a[None] if a.ndim == 1 else a for c, a in arrays.items()}
    digest = hashlib.sha256()
    for clip_id, value in arrays.items():
        digest.update(clip_id.encode() + value.tobytes())
    for clip_id, reason in unreadable.items():
        digest.update(f"{clip_id}:{reason}".encode())
    fingerprint = digest.hexdigest()[:16]
    provenance = {"extractor": "import-npy", "version": "1", "source": Path(folder).name,
                  "config": {"frame_level": frame_level}, "fingerprint": fingerprint,
                  "libraries": library_versions()}
    if manifest is not None:
        provenance["manifest_fingerprint"] = manifest.fingerprint()
    if modality:
        provenance["modality"] = modality
    writer = FeatureWriter(root, dataset, feature, fingerprint, provenance, flush_every=256)
    if overwrite:
        writer.remove()
    writer.check_config()
    for clip_id, value in arrays.items():
        if frame_level and value.ndim != 2:
            writer.put(clip_id, status="failed", reason=f"{clip_id}.npy: a frame-level file holds shape "
                                                        f"{value.shape}, not [T, D]")
        elif frame_level:
            writer.put(clip_id, {"mean": value.mean(axis=0)}, {"frames": value})
        else:
            writer.put(clip_id, {"features": value})
    for clip_id, reason in unreadable.items():
        writer.put(clip_id, status="failed", reason=reason)
    writer.merge()
    if manifest is not None:
        write_clips(manifest, dataset, root, source=source, replace=replace_clips)
    return writer.path, len(arrays) + len(unreadable)


def level_of(folder) -> bool | None:
    """True for a MERTools frame-level folder name (-FRA, _FRA), False for -UTT / _UTT, else None."""
    match = re.search(r"[-_](UTT|FRA)$", Path(folder).name, re.IGNORECASE)
    return None if match is None else match.group(1).upper() == "FRA"


def _load(files: list[Path]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """({clip id: array}, {clip id: why its file could not be read})."""
    arrays, unreadable = {}, {}
    for f in files:
        try:
            value = np.load(f, allow_pickle=False)
            if value.dtype.kind not in "fiu" or value.ndim == 0:
                raise ValueError(f"holds {value.dtype} of shape {value.shape}, not an array of numbers")
            arrays[f.stem] = value
        except (ValueError, OSError, EOFError) as err:
            unreadable[f.stem] = f"{f.name}: cannot be read as an array ({err})"
    if not arrays:
        raise ValueError(f"{files[0].parent}: none of its {len(files)} .npy files can be read "
                         f"(first: {next(iter(unreadable.values()))})")
    return arrays, unreadable


def _looks_frame_level(arrays: dict[str, np.ndarray]) -> bool:
    shapes = {a.shape for a in arrays.values()}
    ndims = {len(s) for s in shapes}
    if ndims != {1} and ndims != {2} and ndims != {3}:
        raise ValueError(f"mixed array ranks across clips: {sorted(shapes)[:4]}")
    return ndims == {2} and len({s[0] for s in shapes}) > 1
