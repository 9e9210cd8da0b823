"""Face embeddings of a clip: workers track and align its faces, the main process embeds them.

`FaceEmbedder` is the base of face-dlib, face-fer2013 (extract.visual.faces) and the `vision:` kind
(extract.visual.vision); `face_crops` also makes the chips of the face-crops features.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.base import BatchExtractor, Output, option
from ..core.models import DTYPES
from .face_track import NoFaceError, TrackConfig, align_face, centre_crop, clip_track, to_gray

DETECTED, FALLBACK, EMPTY = 1, 2, 0  # mask values of a face chip


def track_config(config) -> TrackConfig:
    return TrackConfig(detector=config.detector, upsample=config.upsample)


def face_crops(frames: np.ndarray, track, size: int, padding: float, fallback: str = "none"
               ) -> tuple[np.ndarray, np.ndarray]:
    """Aligned chips uint8 [T, size, size, 3] and mask uint8 [T] (1 face, 2 centre crop, 0 none)."""
    if fallback not in ("none", "centre"):
        raise ValueError(f"fallback {fallback!r}: choose none or centre")
    chips = np.zeros((len(frames), size, size, 3), np.uint8)
    mask = np.zeros(len(frames), np.uint8)
    for t, frame in enumerate(frames):
        if track.detected[t]:
            chips[t], mask[t] = align_face(frame, track.boxes[t], track.landmarks5[t], size, padding), DETECTED
        elif fallback == "centre":
            chips[t], mask[t] = centre_crop(frame, size), FALLBACK
    return chips, mask


@dataclass(frozen=True)
class FaceEmbeddingConfig:
    fps: float = 5.0
    max_frames: int = option(16, at_least=0)  # frames per clip, evenly spread (0: every sampled frame)
    detector: str = "hog"
    upsample: str = "auto"
    pool_std: bool = False       # also store the std over detected frames
    frame_level: bool = False    # also store one embedding per detected frame (ragged)


@dataclass(frozen=True)
class FaceModelConfig(FaceEmbeddingConfig):
    """An embedding network run in batches on a device (FER2013, vision encoders)."""

    device: str = "auto"
    compute_dtype: str = "float32"  # --dtype: float32, float16 (GPU) or bfloat16 (autocast)
    batch_seconds: float = 256.0  # batch budget in face crops (the CLI's --batch-seconds)

    def __post_init__(self):
        if self.compute_dtype not in DTYPES:
            raise ValueError(f"compute_dtype {self.compute_dtype!r}: choose one of {DTYPES}")


class FaceEmbedder(BatchExtractor):
    """Workers track and align faces (`prepare`); the main process embeds crops in batches.

    Subclasses set `chip_size`, `chip_padding`, `gray` and implement `embed(chips) -> {key: [n, ...]}`;
    the first key is the embedding, pooled as mean (and std) over the clip's detected frames."""

    needs = frozenset({"frames"})
    Config = FaceEmbeddingConfig
    chip_size, chip_padding, gray = 150, 0.25, False

    def prepare(self, clip, media):
        c = self.config
        indices, track = clip_track(media, c.fps, c.max_frames, track_config(c))
        if not track.detected.any():
            raise NoFaceError(f"no face detected in {len(indices)} sampled frames")
        frames = media.frames[indices]
        chips, _ = face_crops(frames, track, self.chip_size, self.chip_padding)
        chips = chips[track.detected]
        return {"chips": to_gray(chips) if self.gray else chips,
                "times": media.frame_times[indices][track.detected].astype(np.float32),
                "face_fraction": np.array([track.detected.mean()], np.float32)}

    def cost(self, payload) -> float:
        return float(len(payload["chips"]))

    def embed(self, chips: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def extract_batch(self, clips, payloads) -> list[Output]:
        embedded = self.embed(np.concatenate([p["chips"] for p in payloads]))
        bounds = np.cumsum([0] + [len(p["chips"]) for p in payloads])
        return [self._pool({k: v[a:b] for k, v in embedded.items()}, p)
                for a, b, p in zip(bounds[:-1], bounds[1:], payloads)]

    def _pool(self, frames: dict[str, np.ndarray], payload) -> Output:
        out = Output(arrays={"face_fraction": payload["face_fraction"]})
        for i, (key, values) in enumerate(frames.items()):
            out.arrays[key] = values.mean(0).astype(np.float32)
            if self.config.pool_std and i == 0:
                out.arrays[f"{key}_std"] = values.std(0).astype(np.float32)
            if self.config.frame_level:
                out.ragged[f"frame_{key}"] = values.astype(np.float32)
        if self.config.frame_level:
            out.ragged["frame_times"] = payload["times"]
        return out
