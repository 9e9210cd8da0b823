"""Dataset manifests: every corpus as one table of clips (id, media, transcript, labels, split).

    from manifests import load_manifest
    m = load_manifest("mer2023", root="/data/MER2023/dataset-release")
    m = load_manifest("mycorpus", clips="mycorpus/clips.csv")
"""
from __future__ import annotations

from pathlib import Path

from . import folder, mer2023, samsemo
from .table import MER_CLASSES, Clip, Manifest

# layout name -> loader(root, name); `demo` is written in the mer2023 layout
LAYOUTS = {"mer2023": mer2023.load, "mer2024": mer2023.load, "demo": mer2023.load,
           "samsemo": samsemo.load}
DEFAULT_ROOTS = {"demo": Path("data/demo")}

__all__ = ["Clip", "Manifest", "MER_CLASSES", "LAYOUTS", "load_manifest"]


def load_manifest(dataset: str, layout: str | None = None, root=None, clips=None) -> Manifest:
    """The clip table of `dataset`: from a user's CSV (`clips`) or a layout loader at `root`.

    `layout` defaults to `dataset` itself when that is a layout name (mer2023, samsemo, demo).
    """
    if clips is not None:
        return folder.load(Path(clips), dataset)
    layout = layout or dataset
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} for dataset {dataset!r}: choose --layout from "
                         f"{sorted(LAYOUTS)}, or describe your corpus with --clips FILE.csv")
    root = root or DEFAULT_ROOTS.get(layout)
    if root is None:
        raise ValueError(f"dataset {dataset!r}: give the corpus folder with --root DIR")
    return LAYOUTS[layout](Path(root), dataset)
