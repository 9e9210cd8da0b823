"""Small cached problems written through the real cache writer (HDF5 feature files + clip table)."""
from __future__ import annotations

import numpy as np
import pytest

from cache import FeatureWriter, write_clips
from manifests import MER_CLASSES, Clip, Manifest


def synthetic_corpus(n_train=90, n_test=24, n_unlabelled=6, seed=0, noise=0.6, multi_label=False):
    """Clips of the six MER classes, valence tied to the class; features that separate the classes.

    Features: `acoustic` [16], `visual` [8], `layers` per-layer [4, 12] (class signal in layers 1-2).
    Returns (manifest, {feature: {clip id: array}}).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(MER_CLASSES), 16)) * 2.0
    clips, arrays = [], {"acoustic": {}, "visual": {}, "layers": {}}
    splits = ["train"] * n_train + ["test1"] * n_test + ["test3"] * n_unlabelled
    for i, split in enumerate(splits):
        cid = f"clip{i:04d}"
        y = i % len(MER_CLASSES)
        second = (y + 1) % len(MER_CLASSES) if multi_label and i % 3 == 0 else None
        centre = centres[y] + (0.7 * centres[second] if second is not None else 0)
        labelled = split != "test3"
        label = MER_CLASSES[y] + (f";{MER_CLASSES[second]}" if second is not None else "")
        clips.append(Clip(cid, split, label=label if labelled else None,
                          valence=float(y - 2.5 + rng.normal(scale=0.3)) if labelled else None))
        arrays["acoustic"][cid] = (centre + rng.normal(scale=noise, size=16)).astype(np.float32)
        arrays["visual"][cid] = (centre[:8] * 0.5 + rng.normal(scale=noise, size=8)).astype(np.float32)
        layers = rng.normal(scale=noise, size=(4, 12))
        layers[1:3] += centre[:12]
        arrays["layers"][cid] = layers.astype(np.float32)
    return Manifest("synth", clips), arrays


def write_cache(root, dataset, manifest, arrays, failed=None, primary="x"):
    """Write `arrays` as cached features of `dataset` and the clip table; `failed`: {feature: {id: reason}}."""
    manifest = Manifest(dataset, manifest.clips, classes=manifest.classes)
    write_clips(manifest, root=root)
    for feature, values in arrays.items():
        prov = {"extractor": feature, "version": "1", "config": {}, "manifest_fingerprint": manifest.fingerprint()}
        writer = FeatureWriter(root, dataset, feature, f"fp-{feature}", prov, primary=primary)
        for cid, value in values.items():
            reason = (failed or {}).get(feature, {}).get(cid)
            if reason:
                writer.put(cid, status="failed", reason=reason)
            else:
                writer.put(cid, {primary: value})
        writer.merge()
    return root


@pytest.fixture
def synth_cache(tmp_path):
    manifest, arrays = synthetic_corpus()
    return write_cache(tmp_path / "cache", "synth", manifest, arrays,
                       failed={"visual": {"clip0007": "no face found"}})
