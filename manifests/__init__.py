"""Dataset manifests: every corpus as one table of clips (id, media, transcript, labels, split).

    from manifests import load_manifest
    m = load_manifest("mer2023", root="/data/MER2023/dataset-release")
    m = load_manifest("mycorpus", clips="mycorpus/clips.csv")
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import folder, mer2023, samsemo
from .table import MER_CLASSES, Clip, Manifest

# layout name -> loader(root, name); `demo` is written in the mer2023 layout
LAYOUTS = {"mer2023": mer2023.load, "mer2024": mer2023.load, "demo": mer2023.load,
           "samsemo": samsemo.load}
DEFAULT_ROOTS = {"demo": Path("data/demo")}
DATASETS = Path("data/datasets")  # where a layout's corpus is looked for when no folder is given

__all__ = ["Clip", "Manifest", "MER_CLASSES", "LAYOUTS", "load_manifest"]


def load_manifest(dataset: str, layout: str | None = None, root=None, clips=None) -> Manifest:
    """The clip table of `dataset`: from a user's CSV (`clips`) or a layout loader at `root`.

    `layout` defaults to `dataset` itself when that is a layout name (mer2023, samsemo, demo).
    ValueError for a corpus named twice (`clips` with `root` or `layout`) or one without a clip.
    """
    if clips is not None:
        if root is not None or layout is not None:
            given = " and ".join(f"--{name} {value}" for name, value in (("root", root), ("layout", layout)) if value)
            raise ValueError(f"--clips {clips} and {given} both name the corpus: give --clips FILE.csv alone "
                             f"(paths in it are relative to its folder), or --root DIR with its layout")
        return _not_empty(folder.load(Path(clips), dataset), clips)
    layout = layout or dataset
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} for dataset {dataset!r}: choose --layout from "
                         f"{sorted(LAYOUTS)}, or describe your corpus with --clips FILE.csv")
    root = root or DEFAULT_ROOTS.get(layout) or _default_root(dataset, layout)
    return _not_empty(LAYOUTS[layout](Path(root), dataset), root)


def _default_root(dataset: str, layout: str) -> Path:
    """data/datasets/<dataset> when it is there; else ValueError saying how to name the corpus
    folder and what it must hold (the lines `ROOT/...` of the layout loader's docstring)."""
    root = DATASETS / dataset
    if root.is_dir():
        return root
    doc = sys.modules[LAYOUTS[layout].__module__].__doc__ or ""
    holds = "\n".join(line for line in doc.splitlines() if line.strip().startswith("ROOT/"))
    raise ValueError(f"dataset {dataset!r}: no corpus folder given, and none at {root}. Give it with --root DIR "
                     f"(make extract: DATA=DIR), or put it at {root}. In the {layout} layout it holds:\n{holds}")


def _not_empty(manifest: Manifest, source) -> Manifest:
    """`manifest`, or ValueError naming `source` (the CSV or corpus folder) when it has no clip:
    nothing to do, and its empty clip table must not replace a cached one."""
    if not len(manifest):
        raise ValueError(f"{source}: the corpus has no clips (no row after the header, or no clip in the "
                         f"folder); nothing to extract or to write as the clip table")
    return manifest
