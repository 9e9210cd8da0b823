"""Facial expressions of the demo face as moves of control points (dlib's 68 landmarks and a few more).

The photograph (`skimage.data.astronaut()`) smiles with teeth showing, which a real expression
classifier reads as happy whatever else moves. So the demo's rest face is a neutralised one: the
lips closed over the teeth on one line, the mouth corners lowered and widened. Each expression is
a set of moves from that rest face, in face widths; `happy` undoes the neutralising (the photo's
own smile) and lifts the corners further. The sizes were tuned with the pretrained FER2013 CNN
in the loop (its class probabilities on dlib-aligned frames, `bench/extract/demo_signal.py`), within
plausible bounds: sad raises and draws together the inner brows, droops the upper lids and lifts
the chin; angry lowers the inner brows, raises the outer ones and bares the upper teeth; surprise
raises the brows and eyelids and drops the jaw (a dark open mouth); worried raises the inner brows
and parts the lips.
"""
from __future__ import annotations

import numpy as np

EXPRESSIONS = ("neutral", "angry", "happy", "sad", "worried", "surprise")

# 68-point landmark groups (iBUG 300-W numbering)
CHIN = (6, 7, 8, 9, 10)
BROWS = tuple(range(17, 27))
BROW_INNER, BROW_MID, BROW_OUTER = (20, 21, 22, 23), (19, 24), (17, 18, 25, 26)
UPPER_LIDS, LOWER_LIDS = (37, 38, 43, 44), (40, 41, 46, 47)
MOUTH_CORNERS = (48, 54, 60, 64)
UPPER_LIP_OUTER, LOWER_LIP_OUTER = (49, 50, 51, 52, 53), (55, 56, 57, 58, 59)
UPPER_LIP_INNER, LOWER_LIP_INNER = (61, 62, 63), (65, 66, 67)
MOUTH_INNER = tuple(range(60, 68))
# control points added after the 68 landmarks: cheeks, forehead, glabella
CHEEKS, FOREHEAD, GLABELLA = (68, 69), (70, 71, 72), (73,)
N_POINTS = 74
UPPER_FACE = (*BROWS, *range(36, 48), *FOREHEAD, *GLABELLA)

# (points, dx, dy, dx_is_outward) in face widths, x right and y down; outward dx moves away from
# the face's midline. The photo's inner lip landmarks sit inside the teeth: closing meets them at
# the lip line, so the teeth vanish between them.
_NEUTRALISE = [(MOUTH_CORNERS, 0.034, 0.085, True), (LOWER_LIP_INNER, 0.0, 0.043, False), (CHIN, 0.0, 0.02, False),
               (BROW_INNER, -0.018, 0.005, True), (BROW_MID, 0.0, 0.017, False), (BROW_OUTER, 0.0, 0.022, False),
               (UPPER_LIDS, 0.0, -0.009, False), (LOWER_LIDS, 0.0, -0.016, False)]

MOVES = {
    "neutral": [],
    "happy": [(MOUTH_CORNERS, 0.03, -0.06, True)],  # plus the inverse of _NEUTRALISE
    "sad": [(MOUTH_CORNERS, 0.014, 0.0, True), (CHIN, 0.0, -0.063, False),
            (BROW_INNER, -0.045, -0.065, True), (BROW_MID, 0.0, 0.06, False), (UPPER_LIDS, 0.0, 0.045, False),
            (CHEEKS, 0.0, -0.014, False), (GLABELLA, 0.0, -0.007, False)],
    "angry": [(MOUTH_CORNERS, -0.015, 0.005, True), (UPPER_LIP_INNER, 0.0, -0.014, False), (CHIN, 0.0, 0.101, False),
              (BROW_INNER, -0.015, 0.034, True), (BROW_MID, 0.0, 0.032, False), (BROW_OUTER, 0.0, -0.043, False),
              (UPPER_LIDS, 0.0, 0.006, False), (LOWER_LIDS, 0.0, 0.007, False), (CHEEKS, 0.0, 0.016, False)],
    "surprise": [(MOUTH_CORNERS, -0.017, -0.025, True), (LOWER_LIP_INNER, 0.0, 0.18, False), (CHIN, 0.0, 0.085, False),
                 (BROW_INNER, 0.0, -0.05, False), (BROW_MID, 0.0, -0.05, False), (BROW_OUTER, 0.0, -0.04, False),
                 (UPPER_LIDS, 0.0, -0.02, False)],
    "worried": [(MOUTH_CORNERS, 0.023, 0.053, True), (UPPER_LIP_INNER, 0.0, -0.011, False),
                (LOWER_LIP_INNER, 0.0, 0.018, False), (CHIN, 0.0, -0.07, False), (BROW_INNER, -0.034, -0.077, True),
                (BROW_MID, 0.0, 0.021, False), (BROW_OUTER, 0.0, 0.011, False), (CHEEKS, 0.0, 0.008, False),
                (GLABELLA, 0.0, -0.02, False)],
}
# how dark the open mouth's inside is drawn per expression (the photo's teeth otherwise fill it)
MOUTH_DARK = {"surprise": 1.0, "worried": 0.8}

# the mouth opening: N_OPENING points along its upper and lower edge between the corners 48 and 54
N_OPENING = 9
OPENING_TOP = tuple(range(N_POINTS, N_POINTS + N_OPENING))
OPENING_BOTTOM = tuple(range(N_POINTS + N_OPENING, N_POINTS + 2 * N_OPENING))
_TOP_GUIDE, _BOTTOM_GUIDE = (48, 61, 62, 63, 54), (48, 67, 66, 65, 54)
MESH_EXCLUDED = MOUTH_INNER  # the opening's edges stand for dlib's inner lip points in the mesh
OUTER_LIPS = tuple(range(48, 60))
_UPPER_CHAIN, _LOWER_CHAIN = (48, 49, 50, 51, 52, 53, 54), (48, 59, 58, 57, 56, 55, 54)


def opening_polygon(points: np.ndarray) -> np.ndarray:
    """The mouth opening's outline: float32 [2 * N_OPENING + 2, 2] (corner, upper edge, corner, lower edge)."""
    return points[[48, *OPENING_TOP, 54, *OPENING_BOTTOM[::-1]]]


def _zip(a: tuple, b: tuple, x: np.ndarray) -> list[tuple[int, int, int]]:
    """Triangles of the strip between two point chains that share their end points, left to right."""
    triangles, i, j = [], 0, 0
    while i < len(a) - 1 or j < len(b) - 1:
        if j == len(b) - 1 or (i < len(a) - 1 and x[a[i + 1]] <= x[b[j + 1]]):
            triangles.append((a[i], b[j], a[i + 1]))
            i += 1
        else:
            triangles.append((a[i], b[j], b[j + 1]))
            j += 1
    return [t for t in triangles if len(set(t)) == 3]


def lip_triangles(points: np.ndarray) -> np.ndarray:
    """A mesh of the lips: upper lip, opening and lower lip as strips between their edges, so that
    no triangle crosses an edge of the opening. int [M, 3] indices into `points`."""
    top, bottom = (48, *OPENING_TOP, 54), (48, *OPENING_BOTTOM, 54)
    x = points[:, 0]
    return np.array(_zip(_UPPER_CHAIN, top, x) + _zip(top, bottom, x) + _zip(bottom, _LOWER_CHAIN, x))


def control_points(landmarks: np.ndarray) -> np.ndarray:
    """The 68 landmarks, then cheeks, forehead, glabella and the mouth opening's edges:
    float32 [N_POINTS + 2 * N_OPENING, 2] (x, y)."""
    from scipy.interpolate import CubicSpline

    lm = landmarks.astype(np.float64)
    face_width = lm[16, 0] - lm[0, 0]
    up = np.array([0, -0.22 * face_width])
    extra = [(lm[2] + lm[31]) / 2, (lm[14] + lm[35]) / 2,            # cheeks
             lm[19] + up, lm[27] + up, lm[24] + up,                  # forehead, above the brows
             (lm[21] + lm[22]) / 2 + np.array([0, 0.03 * face_width])]  # between the brows
    # dlib's inner lip points sit on the teeth: a spline through them, widened, holds all the teeth
    xs = np.linspace(lm[48, 0], lm[54, 0], N_OPENING + 2)[1:-1]
    top, bottom = lm[list(_TOP_GUIDE)], lm[list(_BOTTOM_GUIDE)]
    top[1:4, 1] -= 0.02 * face_width
    bottom[1:4, 1] += 0.005 * face_width
    edges = [np.stack([xs, CubicSpline(guide[:, 0], guide[:, 1])(xs)], 1) for guide in (top, bottom)]
    return np.concatenate([lm, np.stack(extra), *edges]).astype(np.float32)


def _follow(points: np.ndarray, moves: np.ndarray, edge: tuple, at: tuple) -> np.ndarray:
    """Moves of the points `at`, interpolated along x from those of the opening edge `edge`
    (with the corners 48 and 54): [len(at), 2]."""
    chain = [48, *edge, 54]
    return np.stack([np.interp(points[list(at), 0], points[chain, 0], moves[chain, c]) for c in range(2)], 1)


def _apply(moves_spec, points: np.ndarray) -> np.ndarray:
    """Moves of a spec in pixels, [K, 2]. The opening's edges follow dlib's inner lip points, the
    outer lip points their edge (a spec's move of an outer lip point adds to that): lips this thin
    at the corners would fold if moved apart."""
    face_width = points[16, 0] - points[0, 0]
    midline = points[27:31, 0].mean()  # nose bridge
    moves = np.zeros_like(points)
    for indices, dx, dy, outward in moves_spec:
        for i in indices:
            side = np.sign(points[i, 0] - midline) if outward else 1.0
            moves[i] += (side * dx * face_width, dy * face_width)
    for edge, guide, outer in ((OPENING_TOP, _TOP_GUIDE, UPPER_LIP_OUTER),
                               (OPENING_BOTTOM, _BOTTOM_GUIDE, LOWER_LIP_OUTER)):
        guide_x = (points[list(_TOP_GUIDE), 0] + points[list(_BOTTOM_GUIDE), 0]) / 2  # one x: closed lips stay shut
        for c in range(2):
            moves[list(edge), c] = np.interp(points[list(edge), 0], guide_x, moves[list(guide), c])
        moves[list(outer)] += _follow(points, moves, edge, outer)
    return moves


def rest_moves(points: np.ndarray) -> np.ndarray:
    """Moves from the photo's control points to the neutral rest face: float32 [K, 2] pixels.
    The lips close on one line, so no tooth is left between them."""
    moves = _apply(_NEUTRALISE, points)
    rest = points + moves
    line = (rest[list(OPENING_TOP)] + rest[list(OPENING_BOTTOM)]) / 2
    for edge, outer in ((OPENING_TOP, UPPER_LIP_OUTER), (OPENING_BOTTOM, LOWER_LIP_OUTER)):
        closing = np.zeros_like(points)
        closing[list(edge)] = line - rest[list(edge)]
        moves[list(edge)] += closing[list(edge)]
        moves[list(outer)] += _follow(points, closing, edge, outer)
    inner = list(MOUTH_INNER)
    moves[inner] = moves[inner].mean(0)  # not in the mesh: kept near the mouth for the record
    return moves


def expression_moves(expression: str, points: np.ndarray, upper_only: bool = False) -> np.ndarray:
    """Moves from the rest face at full intensity: float32 [K, 2] in pixels of `points` (the
    photo's control points); `upper_only`: only those of the brows, eyes and forehead."""
    if expression not in MOVES:
        raise ValueError(f"unknown expression {expression!r}; choose from {EXPRESSIONS}")
    moves = _apply(MOVES[expression], points)
    if expression == "happy":
        moves -= rest_moves(points)
    if upper_only:
        keep = np.zeros(len(points), bool)
        keep[list(UPPER_FACE)] = True
        moves[~keep] = 0
    return moves


def mouth_darkness(blend: dict[str, float]) -> float:
    """How dark the mouth opening of a blend {expression: weight} is drawn at full intensity (>= 0)."""
    return sum(w * MOUTH_DARK.get(e, 0.0) for e, w in blend.items())


def uncross_lips(points: np.ndarray) -> np.ndarray:
    """`points` with the opening's lower edge kept from rising above its upper edge (lips pressed
    together meet on their mean line instead of passing through each other): float32 [K, 2]."""
    points = points.copy()
    top, bottom = list(OPENING_TOP), list(OPENING_BOTTOM)
    crossed = points[bottom, 1] < points[top, 1]
    meet = (points[top] + points[bottom]) / 2
    points[np.array(top)[crossed]] = meet[crossed]
    points[np.array(bottom)[crossed]] = meet[crossed]
    return points
