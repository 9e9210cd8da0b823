"""Animated talking-head frames from one real face photograph.

The face of `skimage.data.astronaut()` is located once with dlib (HOG detector and the
68-point shape predictor shipped by `face_recognition_models`). Expressions move control points
(landmarks and a few more, `expressions.py`) from a neutralised rest face: a piecewise affine warp
over a triangle mesh of those points (strips along the lips, so that closed lips hide the photo's
teeth exactly), smoothed off the lips, is applied with `cv2.remap` and interpolated from the rest
face by a per-frame intensity; an open mouth's inside is shaded dark. Small head motion
(rotation, scale, translation) is added on top.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from .expressions import (EXPRESSIONS, MESH_EXCLUDED, OPENING_BOTTOM, OPENING_TOP, OUTER_LIPS,
                          control_points, expression_moves, lip_triangles, mouth_darkness, opening_polygon, rest_moves,
                          uncross_lips)

__all__ = ["EXPRESSIONS", "FaceAnimator", "astronaut_landmarks", "head_motion", "piecewise_affine_map"]

_SMOOTH_FACES = 0.03  # Gaussian smoothing of the warp off the lips, in face widths
_N_BORDER = 16  # canvas border points after the control points
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




def piecewise_affine_map(source: np.ndarray, target: np.ndarray, triangles: np.ndarray, side: int) -> np.ndarray:
    """Backward map of a piecewise affine warp moving `source` points to `target` points.

    source, target: float32 [K, 2] (x, y); triangles: int [M, 3] point indices (a mesh of the
    source points covering the canvas). Returns float32 [side, side, 2]: for each output pixel the
    source pixel it shows. Target triangles of zero area (lips pressed shut) show nothing.
    """
    label = np.full((side, side), -1, np.int32)
    affines = np.zeros((len(triangles), 2, 3), np.float64)
    for k, tri in enumerate(triangles):
        corners = target[tri].astype(np.float32)
        edge1, edge2 = corners[1] - corners[0], corners[2] - corners[0]
        if abs(edge1[0] * edge2[1] - edge1[1] * edge2[0]) < 1e-3:
            continue
        affines[k] = cv2.getAffineTransform(corners, source[tri].astype(np.float32))
        cv2.fillConvexPoly(label, np.round(corners * 16).astype(np.int32), k, cv2.LINE_8, shift=4)
    if (label < 0).any():  # pixels only on collapsed triangles: take the nearest covered pixel's
        from scipy.ndimage import distance_transform_edt

        nearest = distance_transform_edt(label < 0, return_distances=False, return_indices=True)
        label = label[nearest[0], nearest[1]]
    grid_y, grid_x = np.mgrid[0:side, 0:side].astype(np.float64)
    chosen = affines[label]  # [side, side, 2, 3]
    mapped = chosen[..., 0] * grid_x[..., None] + chosen[..., 1] * grid_y[..., None] + chosen[..., 2]
    return mapped.astype(np.float32)


def face_mesh(points: np.ndarray) -> np.ndarray:
    """Triangles int [M, 3] over control and border points: Delaunay outside the lips, strips
    along the lip edges inside them (Delaunay would cross the thin lips)."""
    from scipy.spatial import Delaunay

    outside = np.setdiff1d(np.arange(len(points)), [*MESH_EXCLUDED, *OPENING_TOP, *OPENING_BOTTOM])
    triangles = outside[Delaunay(points[outside]).simplices]
    lips = points[list(OUTER_LIPS)].astype(np.float32)
    centres = points[triangles].mean(1)
    inside = [cv2.pointPolygonTest(lips, (float(cx), float(cy)), False) > 0 for cx, cy in centres]
    return np.concatenate([triangles[~np.array(inside)], lip_triangles(points)])


def smooth_outside_lips(warp: np.ndarray, target: np.ndarray) -> np.ndarray:
    """A backward map float32 [W, W, 2] smoothed everywhere but on the lips: the mesh's creases
    (brows, jaw) vanish, lips closing over the teeth stay exact. `target`: the control points."""
    side = warp.shape[0]
    face_width = target[16, 0] - target[0, 0]
    grid = np.stack(np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32)), -1)
    shift = warp - grid
    smooth = cv2.GaussianBlur(shift, (0, 0), _SMOOTH_FACES * face_width)
    lips = np.zeros((side, side), np.float32)
    cv2.fillPoly(lips, [np.round(target[list(OUTER_LIPS)] * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    lips = cv2.GaussianBlur(cv2.dilate(lips, np.ones((3, 3), np.uint8)), (0, 0), 0.02 * face_width)
    lips = np.clip(lips * 2, 0, 1)[..., None]
    return (grid + lips * shift + (1 - lips) * smooth).astype(np.float32)


class FaceAnimator:
    """Renders the astronaut's face with an expression and head motion.

    Builds a working canvas (face centred, `_CROP_FACES` face widths wide) once per output size,
    a triangle mesh over its control points, and caches the warp of each expression blend.
    """

    def __init__(self):
        self._canvas: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._maps: dict[tuple, np.ndarray] = {}

    def _working_canvas(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canvas uint8 [W, W, 3] (W = canvas side for frame `size`), its control points plus
        border points float32 [K, 2], and mesh triangles int [M, 3]."""
        if size not in self._canvas:
            image, landmarks = astronaut_landmarks()
            side = int(round(size * _CROP_FACES / _VIEW_FACES))
            face_width = landmarks[16, 0] - landmarks[0, 0]
            centre = landmarks[[0, 16, 8, 19, 24]].mean(0)  # jaw sides, chin, brows
            scale = side / (_CROP_FACES * face_width)
            crop = np.array([[scale, 0, side / 2 - scale * centre[0]],
                             [0, scale, side / 2 - scale * centre[1]]], np.float32)
            canvas = cv2.warpAffine(image, crop, (side, side), flags=cv2.INTER_AREA,
                                    borderMode=cv2.BORDER_REFLECT)
            points = control_points(landmarks @ crop[:, :2].T + crop[:, 2])
            # the canvas border stays put, so the background does not drift
            ticks = np.linspace(0, side - 1, 5)
            border = np.array([(x, y) for x in ticks for y in ticks if x in (0, side - 1) or y in (0, side - 1)])
            points = np.concatenate([points, border]).astype(np.float32)
            self._canvas[size] = (canvas, points, face_mesh(points))
        return self._canvas[size]

    def _targets(self, blend: tuple, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Point positions of the rest face and of `blend` ((expression, weight, upper face only),
        ...) at full intensity: float32 [K, 2]."""
        _, points, _ = self._working_canvas(size)
        n = len(points) - _N_BORDER
        rest, full = points.copy(), points.copy()
        rest[:n] += rest_moves(points[:n])
        full[:n] = rest[:n] + sum(w * expression_moves(e, points[:n], upper) for e, w, upper in blend)
        return rest, uncross_lips(full)

    def _map(self, blend: tuple, size: int) -> np.ndarray:
        key = (size, blend)
        if key not in self._maps:
            canvas, points, triangles = self._working_canvas(size)
            target = self._targets(blend, size)[1]
            warp = piecewise_affine_map(points, target, triangles, canvas.shape[0])
            self._maps[key] = smooth_outside_lips(warp, target)
        return self._maps[key]

    def render(self, expression: str | dict[str, float], intensity_curve: np.ndarray, motion_seed: int,
               n_frames: int, size: int = 256, upper: dict[str, float] | None = None) -> np.ndarray:
        """Frames uint8 [n_frames, size, size, 3] RGB.

        expression: one of EXPRESSIONS, or a blend {expression: weight}; upper: a blend moving
        only the brows and eyes (e.g. a weaker distractor); intensity_curve: float [n_frames] in
        [0, 1] (strength per frame, 0 = the neutral rest face); motion_seed: seeds the head motion.
        """
        intensity = np.clip(np.asarray(intensity_curve, np.float32), 0, 1)
        if intensity.shape != (n_frames,):
            raise ValueError(f"intensity_curve has shape {intensity.shape}, expected ({n_frames},)")
        whole = {expression: 1.0} if isinstance(expression, str) else dict(expression)
        unknown = (set(whole) | set(upper or {})) - set(EXPRESSIONS)
        if unknown:
            raise ValueError(f"unknown expression {sorted(unknown)}; choose from {EXPRESSIONS}")
        blend = tuple(sorted((e, round(float(w), 6), False) for e, w in whole.items())) + \
            tuple(sorted((e, round(float(w), 6), True) for e, w in (upper or {}).items()))
        canvas, _, _ = self._working_canvas(size)
        rest_map, full_map = self._map((), size), self._map(blend, size)
        rest, full = self._targets(blend, size)
        dark = mouth_darkness(whole)
        side = canvas.shape[0]
        frames = np.empty((n_frames, size, size, 3), np.uint8)
        for t, (angle, scale, dx, dy) in enumerate(head_motion(motion_seed, n_frames)):
            warp = rest_map + intensity[t] * (full_map - rest_map)
            expressive = cv2.remap(canvas, warp[..., 0], warp[..., 1], cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT)
            mouth = opening_polygon(rest + intensity[t] * (full - rest))
            # fully dark once a third open: a slit showing the photo's teeth reads as a smile
            expressive = _shade(expressive, mouth, min(1.0, 3 * dark * intensity[t]))
            pose = cv2.getRotationMatrix2D((side / 2, side / 2), float(angle), float(scale))
            pose[:, 2] += (dx * size - (side - size) / 2, dy * size - (side - size) / 2)
            frames[t] = cv2.warpAffine(expressive, pose, (size, size), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REFLECT)
        return frames


_MOUTH_SHADOW = np.array([45, 20, 22], np.float32)  # RGB of the inside of an open mouth


def _shade(image: np.ndarray, polygon: np.ndarray, strength: float) -> np.ndarray:
    """`image` with the inside of `polygon` (float [P, 2]) darkened to the mouth shadow by
    `strength` in [0, 1], edges softened over ~1 px."""
    if strength <= 0:
        return image
    mask = np.zeros(image.shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], float(strength), cv2.LINE_AA, shift=4)
    alpha = cv2.GaussianBlur(mask, (0, 0), 0.8)[..., None]
    return np.clip(image * (1 - alpha) + _MOUTH_SHADOW * alpha, 0, 255).astype(np.uint8)
