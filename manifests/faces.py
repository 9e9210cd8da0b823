"""Animated talking-head frames from one real face photograph.

The face of `skimage.data.astronaut()` is located once with dlib (HOG detector and the
68-point shape predictor shipped by `face_recognition_models`). An expression moves the
landmarks (mouth corners, brows, eyelids, jaw); a smooth Gaussian-RBF displacement field
interpolates those moves over the whole image and `cv2.remap` applies it, scaled by a
per-frame intensity. Small head motion (rotation, scale, translation) is added on top.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

EXPRESSIONS = ("neutral", "angry", "happy", "sad", "worried", "surprise")

# 68-point landmark groups (iBUG 300-W numbering)
_BROWS = tuple(range(17, 27))
_BROW_INNER, _BROW_OUTER = (20, 21, 22, 23), (17, 18, 25, 26)
_UPPER_LIDS, _LOWER_LIDS = (37, 38, 43, 44), (40, 41, 46, 47)
_MOUTH_CORNERS = (48, 54, 60, 64)
_LOWER_LIP, _UPPER_LIP = (55, 56, 57, 58, 59, 65, 66, 67), (49, 50, 51, 52, 53, 61, 62, 63)
_CHIN = (6, 7, 8, 9, 10)

_CROP_FACES = 3.0  # working canvas side, in face widths: room for head motion
_VIEW_FACES = 2.4  # output frame side, in face widths: a large face for downstream detectors


def shape_predictor_path() -> Path:
    """Path of dlib's 68-landmark model inside the face_recognition_models wheel."""
    # importing face_recognition_models needs pkg_resources: find its folder instead
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed")
    root = Path(list(spec.submodule_search_locations)[0])
    return root / "models" / "shape_predictor_68_face_landmarks.dat"


@functools.lru_cache(maxsize=1)
def astronaut_landmarks() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo (uint8 [512, 512, 3] RGB) and its 68 landmarks (float32 [68, 2], x/y)."""
    import dlib
    import skimage.data

    image = skimage.data.astronaut()
    boxes, scores, _ = dlib.get_frontal_face_detector().run(image, 1)
    if not boxes:
        raise RuntimeError("dlib found no face in skimage.data.astronaut()")
    box = boxes[int(np.argmax(scores))]  # the mission patch is a weaker second detection
    shape = dlib.shape_predictor(str(shape_predictor_path()))(image, box)
    points = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
    return image, points


# per expression: (landmarks, dx, dy, dx_is_outward), in face widths (x right, y down)
_EXPRESSION_MOVES = {
    "neutral": [],
    "happy": [(_MOUTH_CORNERS, 0.03, -0.05, True), (_LOWER_LIDS, 0.0, -0.015, False)],
    "sad": [(_MOUTH_CORNERS, -0.005, 0.05, True), (_BROW_INNER, 0.0, -0.04, False),
            (_BROW_OUTER, 0.0, 0.015, False)],
    "angry": [(_BROWS, 0.0, 0.04, False), (_BROW_INNER, -0.02, 0.015, True),
              (_UPPER_LIDS, 0.0, 0.01, False), (_UPPER_LIP, 0.0, 0.01, False),
              (_LOWER_LIP, 0.0, -0.015, False)],
    "surprise": [(_BROWS, 0.0, -0.06, False), (_UPPER_LIDS, 0.0, -0.02, False),
                 (_LOWER_LIDS, 0.0, 0.008, False), (_LOWER_LIP, 0.0, 0.06, False),
                 (_CHIN, 0.0, 0.05, False), (_MOUTH_CORNERS, -0.015, 0.025, True)],
    "worried": [(_BROW_INNER, 0.01, -0.045, True), (_BROW_OUTER, 0.0, 0.01, False),
                (_MOUTH_CORNERS, 0.02, 0.02, True), (_UPPER_LIDS, 0.0, -0.008, False)],
}


def expression_moves(expression: str, landmarks: np.ndarray) -> np.ndarray:
    """Landmark displacements at full intensity: float32 [68, 2] in pixels of `landmarks`."""
    if expression not in _EXPRESSION_MOVES:
        raise ValueError(f"unknown expression {expression!r}; choose from {EXPRESSIONS}")
    face_width = landmarks[16, 0] - landmarks[0, 0]
    midline = landmarks[27:31, 0].mean()  # nose bridge
    moves = np.zeros_like(landmarks)
    for indices, dx, dy, outward in _EXPRESSION_MOVES[expression]:
        for i in indices:
            sign = np.sign(landmarks[i, 0] - midline) if outward else 1.0
            moves[i] += (sign * dx * face_width, dy * face_width)
    return moves


def rbf_displacement(points: np.ndarray, moves: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Smooth field through given point moves: Gaussian RBF weights solved exactly.

    points: float32 [K, 2] control points (x, y) in pixels; moves: float32 [K, 2] their
    displacements (0 for anchors). Returns float32 [size, size, 2] displacement (dx, dy).
    """
    d2 = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    kernel = np.exp(-d2 / (2 * sigma**2)) + 1e-3 * np.eye(len(points))  # ridge: near-duplicate points
    weights = np.linalg.solve(kernel, moves.astype(np.float64))  # [K, 2]
    axis = np.arange(size, dtype=np.float32)
    gx = np.exp(-((axis[None, :] - points[:, 0:1]) ** 2) / (2 * sigma**2))  # [K, W]
    gy = np.exp(-((axis[None, :] - points[:, 1:2]) ** 2) / (2 * sigma**2))  # [K, H]
    # Gaussian is separable: sum_k w_k gy_k(y) gx_k(x) as one matrix product per component
    field = np.einsum("ky,kx,kc->yxc", gy, gx, weights.astype(np.float32), optimize=True)
    return field.astype(np.float32)


def head_motion(motion_seed: int, n_frames: int, fps: float = 15.0) -> np.ndarray:
    """Smooth random head pose per frame: float32 [T, 4] = (angle deg, scale, dx, dy).

    dx, dy are fractions of the frame side. Sums of slow sinusoids with seeded phases.
    """
    rng = np.random.default_rng(motion_seed)
    t = np.arange(n_frames, dtype=np.float64) / fps
    amplitudes = np.array([4.0, 0.04, 0.03, 0.025])  # degrees, relative scale, frame fractions
    pose = np.zeros((n_frames, 4))
    for k in range(4):
        freqs = rng.uniform(0.15, 0.6, size=2)  # Hz: slow, like a speaker's head sway
        phases = rng.uniform(0, 2 * np.pi, size=2)
        pose[:, k] = amplitudes[k] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None]).mean(0)
    pose[:, 1] += 1.0
    return pose.astype(np.float32)


class FaceAnimator:
    """Renders the astronaut's face with an expression and head motion.

    Builds a working canvas (face centred, `_CROP_FACES` face widths wide) once per output
    size and caches each expression's unit displacement field.
    """

    def __init__(self):
        self._canvas: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._fields: dict[tuple[str, int], np.ndarray] = {}

    def _working_canvas(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Canvas uint8 [W, W, 3] (W = canvas side for frame `size`) and landmarks [68, 2] on it."""
        if size not in self._canvas:
            image, points = astronaut_landmarks()
            side = int(round(size * _CROP_FACES / _VIEW_FACES))
            face_width = points[16, 0] - points[0, 0]
            centre = points[[0, 16, 8, 19, 24]].mean(0)  # jaw sides, chin, brows
            scale = side / (_CROP_FACES * face_width)
            crop = np.array([[scale, 0, side / 2 - scale * centre[0]],
                             [0, scale, side / 2 - scale * centre[1]]], np.float32)
            canvas = cv2.warpAffine(image, crop, (side, side), flags=cv2.INTER_AREA,
                                    borderMode=cv2.BORDER_REFLECT)
            landmarks = points @ crop[:, :2].T + crop[:, 2]
            self._canvas[size] = (canvas, landmarks.astype(np.float32))
        return self._canvas[size]

    def _unit_field(self, expression: str, size: int) -> np.ndarray:
        """Backward-warp displacement at intensity 1: float32 [W, W, 2]."""
        key = (expression, size)
        if key not in self._fields:
            canvas, landmarks = self._working_canvas(size)
            side = canvas.shape[0]
            # frame corners and edge midpoints stay put, so the background does not drift
            border = np.array([(x, y) for x in (0, side / 2, side - 1) for y in (0, side / 2, side - 1)
                               if (x, y) != (side / 2, side / 2)], np.float32)
            moves = expression_moves(expression, landmarks)
            face_width = landmarks[16, 0] - landmarks[0, 0]
            sigma = 0.14 * face_width
            moving = np.abs(moves).sum(1) > 0
            gap = np.linalg.norm(landmarks[:, None] - landmarks[None, moving], axis=-1)
            # still landmarks pin the field only away from moving ones: close pins would fold it
            pinned = ~moving & (gap.min(1, initial=np.inf) > 1.2 * sigma)
            points = np.concatenate([landmarks[moving | pinned], border])
            moves = np.concatenate([moves[moving | pinned], np.zeros_like(border)])
            self._fields[key] = rbf_displacement(points, moves, side, sigma=sigma)
        return self._fields[key]

    def render(self, expression: str | dict[str, float], intensity_curve: np.ndarray, motion_seed: int,
               n_frames: int, size: int = 256) -> np.ndarray:
        """Frames uint8 [n_frames, size, size, 3] RGB.

        expression: one of EXPRESSIONS, or a blend {expression: weight} (e.g. the felt emotion and
        a weaker distractor); intensity_curve: float [n_frames] in [0, 1] (strength per frame);
        motion_seed: seeds the head motion.
        """
        intensity = np.clip(np.asarray(intensity_curve, np.float32), 0, 1)
        if intensity.shape != (n_frames,):
            raise ValueError(f"intensity_curve has shape {intensity.shape}, expected ({n_frames},)")
        canvas, _ = self._working_canvas(size)
        blend = {expression: 1.0} if isinstance(expression, str) else expression
        field = sum(weight * self._unit_field(name, size) for name, weight in blend.items())
        side = canvas.shape[0]
        grid_x, grid_y = np.meshgrid(np.arange(side, dtype=np.float32),
                                     np.arange(side, dtype=np.float32))
        frames = np.empty((n_frames, size, size, 3), np.uint8)
        for t, (angle, scale, dx, dy) in enumerate(head_motion(motion_seed, n_frames)):
            # out(x) = in(x - D(x)) moves each landmark by about +D
            expressive = cv2.remap(canvas, grid_x - intensity[t] * field[..., 0],
                                   grid_y - intensity[t] * field[..., 1],
                                   cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            pose = cv2.getRotationMatrix2D((side / 2, side / 2), float(angle), float(scale))
            pose[:, 2] += (dx * size - (side - size) / 2, dy * size - (side - size) / 2)
            frames[t] = cv2.warpAffine(expressive, pose, (size, size), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REFLECT)
        return frames
