"""A synthetic problem shaped like MER 2023's fusion stage, for timing fusion training.

Same sizes as the MER 2023 release (3373 labelled training clips, test1 411, test2 412), its six
classes with a MER-like imbalance (neutral, angry and happy close, surprise rare), valence in
[-5, 5] following the class, and three 1024-d utterance features (acoustic, lexical, visual).
Each feature carries a partial, noisy view of the clip's emotion: per clip a modality shows the
true class only with some probability (else the prototype of another class), in its own random
subspace, plus Gaussian noise; the strengths differ per modality, so fusing beats each one alone.
test2 is noisier in the acoustic and visual features, as MER-NOISE is. Synthetic: no real clip.

Writers: `write_official` (the MER 2023 baseline's .npy-per-clip layout and label-6way.npz) and
`write_cache` (this project's HDF5 cache and clip table); `write_sequence_cache` writes the
sequence models' frame-level inputs of the same clips, with MER 2023's clip lengths.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from manifests.table import MER_CLASSES, Clip, Manifest

SPLIT_SIZES = {"train": 3373, "test1": 411, "test2": 412}
# approximate shares of MER 2023 Train&Val (its Figure 3): three close majors, surprise rare
CLASS_SHARES = np.array([0.27, 0.25, 0.22, 0.13, 0.09, 0.04])
VALENCE_MEAN = np.array([0.0, -2.5, 2.6, -2.4, -1.6, 0.3])
VALENCE_SD = np.array([0.9, 1.1, 1.1, 1.0, 0.9, 2.0])  # surprise: sadly, angrily or happily surprised


@dataclass(frozen=True)
class Modality:
    """How one feature sees the emotion: `shows_class` the chance a clip shows its true class,
    `strength` the norm of the class signal and `valence` of the valence signal, both against
    unit-variance noise per dimension; `test2_noise` scales the noise on test2 (MER-NOISE)."""

    feature: str
    shows_class: float
    strength: float
    valence: float
    test2_noise: float = 1.0


MODALITIES = {"acoustic": Modality("mer-a", 0.55, 4.0, 2.0, test2_noise=1.4),
              "lexical": Modality("mer-l", 0.45, 3.8, 3.5),
              "visual": Modality("mer-v", 0.60, 4.2, 1.5, test2_noise=1.4)}
SUBSPACE = 24  # latent dimensions each modality's signal lives in
# more features of each modality, for sweeps shaped like MER 2023's Table 3 (2 acoustic x 3 lexical x
# 2 visual): other extractors' views of the same clips, each with its own subspace and noise
VARIANTS = {"acoustic": [Modality("mer-a2", 0.50, 3.8, 2.4, test2_noise=1.4)],
            "lexical": [Modality("mer-l2", 0.40, 3.6, 3.0), Modality("mer-l3", 0.50, 4.0, 3.2)],
            "visual": [Modality("mer-v2", 0.55, 4.0, 1.8, test2_noise=1.4)]}


@dataclass
class MerShaped:
    """The problem: `ids` str [N] (sorted), `split` str [N], `label` int64 [N] (index into
    MER_CLASSES), `valence` float32 [N] in [-5, 5], `features` name -> float32 [N, dim]."""

    seed: int
    ids: list[str]
    split: np.ndarray
    label: np.ndarray
    valence: np.ndarray
    features: dict[str, np.ndarray]
    specs: dict[str, tuple[str, Modality]] | None = None  # feature -> (modality, spec); None: MODALITIES

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"mer-shaped seed={self.seed}".encode())
        for name in sorted(self.features):
            digest.update(name.encode() + self.features[name].tobytes())
        digest.update(self.label.tobytes() + self.valence.tobytes())
        return digest.hexdigest()[:16]


def generate(seed: int = 0, dim: int = 1024) -> MerShaped:
    """The problem for `seed` (same seed, same arrays on every machine)."""
    rng = np.random.default_rng(seed)
    n = sum(SPLIT_SIZES.values())
    split = np.repeat(list(SPLIT_SIZES), list(SPLIT_SIZES.values()))
    split = split[rng.permutation(n)]  # splits interleave in id order, as in the release
    label = rng.choice(len(MER_CLASSES), size=n, p=CLASS_SHARES)
    valence = np.clip(VALENCE_MEAN[label] + VALENCE_SD[label] * rng.standard_normal(n), -5, 5)
    features = {m.feature: _feature(rng, m, label, valence, split == "test2", dim)
                for m in MODALITIES.values()}
    ids = [f"sample_{i:08d}" for i in range(1, n + 1)]
    return MerShaped(seed, ids, split, label, valence.astype(np.float32), features)


def with_variants(problem: MerShaped, dim: int = 1024) -> MerShaped:
    """`problem` plus the VARIANTS features (its own three unchanged), each drawn from its own
    seeded generator: 2 acoustic, 3 lexical and 2 visual features in all."""
    specs = {spec.feature: (modality, spec) for modality, spec in MODALITIES.items()}
    features = dict(problem.features)
    for modality, extra in VARIANTS.items():
        for spec in extra:
            rng = np.random.default_rng([problem.seed, len(specs)])
            features[spec.feature] = _feature(rng, spec, problem.label, problem.valence,
                                              problem.split == "test2", dim)
            specs[spec.feature] = (modality, spec)
    return MerShaped(problem.seed, problem.ids, problem.split, problem.label, problem.valence, features, specs)


def _feature(rng, modality: Modality, label, valence, noisier, dim) -> np.ndarray:
    """float32 [N, dim]: class prototype (true class or a distractor) + valence direction, in a
    random subspace, + noise, then a random per-dimension offset and scale (raw, unnormalised)."""
    n, k = len(label), len(MER_CLASSES)
    prototypes = rng.standard_normal((k, SUBSPACE))
    prototypes *= modality.strength / np.linalg.norm(prototypes, axis=1, keepdims=True)
    shown = np.where(rng.random(n) < modality.shows_class, label, rng.integers(0, k, n))
    valence_axis = rng.standard_normal(SUBSPACE)
    valence_axis *= modality.valence / np.linalg.norm(valence_axis) / 5  # valence 5 -> full strength
    latent = prototypes[shown] + valence[:, None] * valence_axis
    basis, _ = np.linalg.qr(rng.standard_normal((dim, SUBSPACE)))  # orthonormal columns
    noise = rng.standard_normal((n, dim)) * np.where(noisier, modality.test2_noise, 1.0)[:, None]
    x = latent @ basis.T + noise
    return (x * rng.uniform(0.5, 1.5, dim) + rng.normal(0, 0.5, dim)).astype(np.float32)


def write_official(problem: MerShaped, root: Path) -> tuple[Path, Path]:
    """The MER 2023 baseline's inputs under `root`: features/<feature>/<clip id>.npy (float32
    [dim]), label-6way.npz ({train,test1,test2}_corpus: {id: {'emo', 'val'}}) and the test labels
    dataset-release/{test1,test2}-label.csv (name,discrete,valence) that it reads from its working
    folder. Returns (features root, label file)."""
    root = Path(root)
    features_root = root / "features"
    for name, x in problem.features.items():
        folder = features_root / name
        folder.mkdir(parents=True, exist_ok=True)
        for clip_id, row in zip(problem.ids, x):
            np.save(folder / f"{clip_id}.npy", row)
    corpora = {}
    for split in SPLIT_SIZES:
        corpora[f"{split}_corpus"] = {problem.ids[i]: {"emo": MER_CLASSES[problem.label[i]],
                                                       "val": float(problem.valence[i])}
                                      for i in problem.rows(split)}
    label_path = root / "label-6way.npz"
    np.savez_compressed(label_path, **{k: np.array(v, dtype=object) for k, v in corpora.items()})
    (root / "dataset-release").mkdir(exist_ok=True)
    for split in ("test1", "test2"):
        lines = ["name,discrete,valence"] + [f"{name},{v['emo']},{v['val']!r}"
                                             for name, v in corpora[f"{split}_corpus"].items()]
        (root / "dataset-release" / f"{split}-label.csv").write_text("\n".join(lines) + "\n")
    return features_root, label_path


def manifest(problem: MerShaped, dataset: str = "mershape") -> Manifest:
    """The clip table: every clip labelled (test labels included, as the test CSVs give them)."""
    clips = [Clip(clip_id, str(problem.split[i]), label=MER_CLASSES[problem.label[i]],
                  valence=float(problem.valence[i])) for i, clip_id in enumerate(problem.ids)]
    return Manifest(dataset, clips, classes=MER_CLASSES)


def write_cache(problem: MerShaped, cache_root: Path, dataset: str = "mershape") -> list[str]:
    """Every feature (the three, or those of `with_variants`) as cached features `dataset/<feature>.h5` (array 'features', float32
    [N, dim]) and the dataset's clip table; returns what it could not write (empty when all)."""
    from cache import FeatureWriter, library_versions

    table = manifest(problem, dataset)
    specs = problem.specs or {spec.feature: (modality, spec) for modality, spec in MODALITIES.items()}
    for modality, spec in specs.values():
        provenance = {"extractor": "mer-shaped", "version": "1", "modality": modality,
                      "config": {"seed": problem.seed, "modality": spec.__dict__},
                      "fingerprint": problem.fingerprint(), "manifest_fingerprint": table.fingerprint(),
                      "libraries": library_versions()}
        fingerprint = hashlib.sha256(f"{problem.fingerprint()}:{spec.feature}".encode()).hexdigest()[:16]
        writer = FeatureWriter(cache_root, dataset, spec.feature, fingerprint, provenance, flush_every=1024)
        writer.remove()  # a scratch problem: always rewritten whole
        for clip_id, row in zip(problem.ids, problem.features[spec.feature]):
            writer.put(clip_id, {"features": row})
        writer.merge(expected_ids=problem.ids)
    try:
        from cache.clips import write_clips
    except ImportError:  # a checkout without the clip-table writer: features only
        return ["clip table (cache.clips.write_clips is missing)"]
    write_clips(table, dataset=dataset, root=cache_root, source="bench/fuse/mer_shaped.py")
    return []


# MER 2023's Train&Val holds 3:45:47 of video over 3373 clips (its Table 1): 4.0 s a clip, kept
# between 2 and 16 s, "most samples last for 2~6 seconds" (its Figure 2)
DURATION_MEDIAN, DURATION_SIGMA, DURATION_RANGE = 3.4, 0.5, (2.0, 16.0)
TEXT_FEATURE, TEXT_LAYERS, TEXT_WIDTH = "chinese-macbert-large", 25, 1024  # MER 2023's lexical default
# per second of a clip: log-mel frames (10 ms hop), spectrogram pieces (32 frames of 12.5 ms),
# Cross-BERT crops (every 5th frame of 25 fps video), Chinese characters (tokens)
FRAMES_PER_S, PIECES_PER_S, CROSSBERT_CROPS_PER_S, TOKENS_PER_S = 100, 2.5, 5, 4


def durations(problem: MerShaped) -> np.ndarray:
    """Seconds of each clip, log-normal in DURATION_RANGE (mean ~4.0 s), from the problem's seed."""
    rng = np.random.default_rng([problem.seed, 1])
    return np.clip(rng.lognormal(np.log(DURATION_MEDIAN), DURATION_SIGMA, len(problem.ids)), *DURATION_RANGE)


def sequence_arrays(problem: MerShaped, i: int, seconds: float, rng) -> dict[str, tuple[dict, dict]]:
    """The sequence models' cached inputs of clip i, shaped and typed as stage 1 writes them:
    {feature: (arrays, ragged arrays)}. Noise with a faint class offset: for memory and time."""
    y = int(problem.label[i])
    pieces, frames = min(32, max(1, int(seconds * PIECES_PER_S))), int(seconds * FRAMES_PER_S)
    crops_cb, tokens = int(seconds * CROSSBERT_CROPS_PER_S), min(50, 2 + int(seconds * TOKENS_PER_S))
    spectrogram = np.zeros((32, 128, 32), np.float16)
    spectrogram[:pieces] = rng.normal(-40 + y, 10, (pieces, 128, 32))
    token_mask = (np.arange(50) < tokens).astype(np.uint8)
    return {
        "face-crops": ({"crops": rng.integers(0, 256, (16, 48, 48, 3), dtype=np.uint8) // (1 + y % 2),
                        "mask": np.ones(16, np.uint8)}, {}),
        "e2el-spectrogram": ({"pieces": spectrogram, "n_pieces": np.int32(pieces)}, {}),
        "face-crops-crossbert": ({"face_fraction": np.ones(1, np.float32)},
                                 {"crops": rng.integers(0, 256, (crops_cb, 64, 64), dtype=np.uint8),
                                  "mask": np.ones(crops_cb, np.uint8)}),
        "logmel": ({"stats": rng.normal(y, 1, 128).astype(np.float32)},
                   {"frames": rng.normal(-40 + y, 10, (frames, 64)).astype(np.float32)}),
        "mfcc": ({"stats": rng.normal(y, 1, 80).astype(np.float32)}, {}),
        "egemaps": ({"functionals": rng.normal(y, 1, 88).astype(np.float32)}, {}),
        TEXT_FEATURE: ({"first": rng.normal(y / 10, 1, (TEXT_LAYERS, TEXT_WIDTH)).astype(np.float16),
                        "tokens": (rng.normal(0, 1, (50, TEXT_WIDTH)) * token_mask[:, None]).astype(np.float16),
                        "token_mask": token_mask}, {}),
    }


def write_sequence_cache(problem: MerShaped, cache_root: Path, dataset: str = "mershape-seq"):
    """The sequence models' inputs (sequence_arrays) of every clip of `problem`, with clip
    lengths from `durations`, as cached features of `dataset` (face-crops, e2el-spectrogram,
    face-crops-crossbert, logmel, mfcc, egemaps, the text encoder's CLS and token vectors) and its
    clip table."""
    from cache import FeatureWriter, library_versions
    from cache.clips import write_clips

    table = manifest(problem, dataset)
    rng = np.random.default_rng([problem.seed, 2])
    seconds = durations(problem)
    writers = {}
    for i, clip_id in enumerate(problem.ids):
        for feature, (arrays, ragged) in sequence_arrays(problem, i, seconds[i], rng).items():
            if feature not in writers:
                provenance = {"extractor": "mer-shaped", "version": "1", "modality": feature,
                              "config": {"seed": problem.seed, "sequence": feature},
                              "fingerprint": problem.fingerprint(), "manifest_fingerprint": table.fingerprint(),
                              "libraries": library_versions()}
                fingerprint = hashlib.sha256(f"{problem.fingerprint()}:seq:{feature}".encode()).hexdigest()[:16]
                writers[feature] = FeatureWriter(cache_root, dataset, feature, fingerprint, provenance,
                                                 flush_every=256, primary=next(iter(arrays)))
                writers[feature].remove()  # a scratch problem: always rewritten whole
            writers[feature].put(clip_id, arrays, ragged or None)
    for writer in writers.values():
        writer.merge(expected_ids=problem.ids)
    write_clips(table, dataset=dataset, root=cache_root, source="bench/fuse/mer_shaped.py")
