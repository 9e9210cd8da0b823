"""One face track per clip with dlib: detection, linking into the dominant face, landmarks, chips.

    track = face_track(frames, TrackConfig())        # frames uint8 [T, H, W, 3] RGB
    chips, mask = face_chips(frames, track, size=48) # aligned crops of the tracked face

Detection is dlib's HOG detector (the MMOD CNN with `detector="cnn"`, for GPU builds of dlib).
Detections are linked frame to frame by overlap into tracks; the dominant track (largest total
face area weighted by confidence: large, clear, present in most frames) is the clip's face, so a second person never takes
over a frame. Alignment uses dlib's 5-point landmarks and `get_face_chip` (eyes and nose moved to
dlib's mean-face template); the 68 iBUG points are kept for the cache.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.base import ClipError

DETECT_SIDE = 640      # frames are scaled down to this long side for detection (speed)
LINK_IOU = 0.2         # boxes of consecutive detections of one face overlap at least this much
LINK_CENTRE = 0.5      # ... or their centres are closer than this fraction of the face width


class NoFaceError(ClipError):
    """No face was detected in any sampled frame of a clip."""


@dataclass(frozen=True)
class TrackConfig:
    detector: str = "hog"     # "hog" (CPU) or "cnn" (dlib MMOD; GPU builds of dlib only in practice)
    upsample: str = "auto"    # 0, 1, 2 or "auto": 0, and 1 for frames where no face was found


@dataclass
class FaceTrack:
    """The clip's dominant face over T sampled frames (NaN where it was not detected).

    boxes: float32 [T, 4] (left, top, right, bottom) in frame pixels; scores: float32 [T];
    landmarks68: float32 [T, 68, 2] (x, y); landmarks5: float32 [T, 5, 2] (dlib 5-point order).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks68: np.ndarray
    landmarks5: np.ndarray

    @property
    def detected(self) -> np.ndarray:
        return ~np.isnan(self.boxes[:, 0])


def model_path(name: str) -> Path:
    """A dlib model file shipped by `face_recognition_models` (found without importing it:
    it imports pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed: pip install face_recognition_models")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / name


@functools.lru_cache(maxsize=None)
def _dlib_model(kind: str):
    import dlib

    if kind == "hog":
        return dlib.get_frontal_face_detector()
    if kind == "cnn":
        return dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))
    if kind in ("5", "68"):
        name = "shape_predictor_5_face_landmarks.dat" if kind == "5" else "shape_predictor_68_face_landmarks.dat"
        return dlib.shape_predictor(str(model_path(name)))
    raise ValueError(f"unknown face detector {kind!r}: choose hog or cnn")


def detect_faces(frame: np.ndarray, detector: str = "hog", upsample: int = 0) -> list[tuple[np.ndarray, float]]:
    """Faces in one RGB frame: [(box float32 [4] left, top, right, bottom, score)]."""
    import cv2

    scale = min(1.0, DETECT_SIDE / max(frame.shape[:2]))
    small = frame if scale == 1.0 else cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    model = _dlib_model(detector)
    if detector == "cnn":
        found = [(d.rect, d.confidence) for d in model(small, upsample)]
    else:
        rects, scores, _ = model.run(small, upsample)
        found = list(zip(rects, scores))
    return [(np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32) / scale, float(s))
            for r, s in found]


def _upsample_levels(upsample: str) -> tuple[int, ...]:
    if str(upsample) == "auto":
        return (0, 1)
    if str(upsample) not in ("0", "1", "2"):
        raise ValueError(f"upsample {upsample!r}: choose 0, 1, 2 or auto")
    return (int(upsample),)


def detect_all(frames: np.ndarray, config: TrackConfig) -> list[list[tuple[np.ndarray, float]]]:
    """Per frame, every face found (auto upsampling retries a frame without faces at 1)."""
    levels = _upsample_levels(config.upsample)
    found = []
    for frame in frames:
        faces = []
        for level in levels:
            faces = detect_faces(frame, config.detector, level)
            if faces:
                break
        found.append(faces)
    return found


def _same_face(a: np.ndarray, b: np.ndarray) -> bool:
    inter = np.maximum(0, np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2])).prod()
    union = (a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter
    centre_gap = np.linalg.norm((a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2)
    return inter / union >= LINK_IOU or centre_gap < LINK_CENTRE * (a[2] - a[0])


def link_tracks(found: list[list[tuple[np.ndarray, float]]]) -> list[dict[int, tuple[np.ndarray, float]]]:
    """Greedy linking: each detection joins the track whose last box is the same face, largest
    faces first; the rest start new tracks. Returns tracks as {frame index: (box, score)}."""
    tracks: list[dict[int, tuple[np.ndarray, float]]] = []
    for t, faces in enumerate(found):
        taken = set()
        for box, score in sorted(faces, key=lambda f: -(f[0][2:] - f[0][:2]).prod()):
            match = next((i for i, tr in enumerate(tracks)
                          if i not in taken and _same_face(tr[max(tr)][0], box)), None)
            if match is None:
                tracks.append({})
                match = len(tracks) - 1
            tracks[match][t] = (box, score)
            taken.add(match)
    return tracks


def dominant_track(tracks: list[dict]) -> dict[int, tuple[np.ndarray, float]]:
    """The track with the largest total face area (large and present in most frames), each box
    weighted by the detector's confidence capped at 1: a weak false detection (a patch, a
    poster) of face size must not beat a clear face."""
    def weight(track):
        return sum(float((box[2:] - box[:2]).prod()) * min(max(score, 0.0), 1.0) for box, score in track.values())
    return max(tracks, key=weight) if tracks else {}


def _landmarks(frame: np.ndarray, box: np.ndarray, kind: str) -> np.ndarray:
    import dlib

    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = _dlib_model(kind)(frame, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


def face_track(frames: np.ndarray, config: TrackConfig = TrackConfig()) -> FaceTrack:
    """Detect, link and landmark the dominant face of frames uint8 [T, H, W, 3] RGB."""
    n = len(frames)
    track = dominant_track(link_tracks(detect_all(frames, config)))
    boxes = np.full((n, 4), np.nan, np.float32)
    scores = np.full(n, np.nan, np.float32)
    marks68 = np.full((n, 68, 2), np.nan, np.float32)
    marks5 = np.full((n, 5, 2), np.nan, np.float32)
    for t, (box, score) in track.items():
        boxes[t], scores[t] = box, score
        marks68[t] = _landmarks(frames[t], box, "68")
        marks5[t] = _landmarks(frames[t], box, "5")
    return FaceTrack(boxes, scores, marks68, marks5)


def align_face(frame: np.ndarray, box: np.ndarray, landmarks5: np.ndarray, size: int,
               padding: float = 0.25) -> np.ndarray:
    """dlib's aligned chip uint8 [size, size, 3]: eyes and nose on the mean-face template,
    `padding` = margin around the template as a fraction of the face (dlib's convention)."""
    import dlib

    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks5])
    return dlib.get_face_chip(frame, shape, size, padding)


def centre_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """The central square of a frame resized to uint8 [size, size, 3] (E2E-L's no-face fallback)."""
    import cv2

    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return cv2.resize(frame[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)


def to_gray(chips: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] RGB -> uint8 [...] gray (ITU-R 601 luma, as OpenCV)."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(chips.astype(np.float32) @ weights), 0, 255).astype(np.uint8)


SAMPLINGS = ("spread", "first")  # which max_frames of the sampled frames: evenly spread, or the first ones


def sample_indices(frame_times: np.ndarray, fps: float, max_frames: int = 0, sampling: str = "spread") -> np.ndarray:
    """Indices of decoded frames at most every 1/fps s, then at most `max_frames` of them (0: no
    limit): evenly spread over the clip, or the first ones (`sampling` "first", as SAMSEMO's
    prep_video.py keeps its first 16). The runner may have decoded at a higher rate for another feature."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling {sampling!r}: choose one of {SAMPLINGS}")
    keep, next_time = [], 0.0
    for i, t in enumerate(frame_times):
        if t + 1e-6 >= next_time:
            keep.append(i)
            next_time += 1.0 / fps  # the decoder's own grid: same fps keeps every frame
    keep = np.asarray(keep, np.int64)
    if max_frames and len(keep) > max_frames:
        spread = np.linspace(0, len(keep) - 1, max_frames).round().astype(int)
        keep = keep[:max_frames] if sampling == "first" else keep[spread]
    return keep


def clip_track(media, fps: float, max_frames: int, config: TrackConfig,
               sampling: str = "spread") -> tuple[np.ndarray, FaceTrack]:
    """(sampled frame indices, their FaceTrack) of a decoded clip, computed once per clip and
    shared through `media.extras` by every face feature with the same sampling and detector."""
    if media.frames is None:
        raise ClipError("no frames decoded for this clip")
    indices = sample_indices(media.frame_times, fps, max_frames, sampling)
    key = ("face_track", config, tuple(indices.tolist()))
    if key not in media.extras:
        media.extras[key] = face_track(media.frames[indices], config)
    return indices, media.extras[key]
