"""Real faces for the visual tests: the astronaut photo, LFW faces, clips made from them."""
from __future__ import annotations

import numpy as np
import pytest


def lfw_rgb(image: np.ndarray, side: int = 100) -> np.ndarray:
    """An LFW 25x25 float gray face -> uint8 [side, side, 3] (HOG needs faces of ~80 px)."""
    import cv2

    gray = cv2.resize((image * 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
    return np.repeat(gray[..., None], 3, axis=2)


@pytest.fixture(scope="session")
def astronaut():
    from skimage.data import astronaut

    return astronaut()


@pytest.fixture(scope="session")
def lfw():
    """(faces, non-faces): 100 each, float [25, 25] gray in [0, 1]."""
    from skimage.data import lfw_subset

    images = lfw_subset()
    return images[:100], images[100:]


def two_face_frames(astronaut: np.ndarray, other: np.ndarray, n: int = 6) -> np.ndarray:
    """uint8 [n, 300, 480, 3]: the astronaut's face (~115 px box) at the left, another person
    (~75 px box) at the right; the astronaut is hidden in the first two frames."""
    import cv2

    big = cv2.resize(astronaut[30:250, 120:340], (280, 280), interpolation=cv2.INTER_AREA)
    frames = np.full((n, 300, 480, 3), 90, np.uint8)
    for t in range(n):
        frames[t, 80:180, 360 + t:460 + t] = other
        if t >= 2:
            frames[t, 10:290, 10 + 2 * t:290 + 2 * t] = big
    return frames


def no_face_frames(n: int = 6, size: int = 128) -> np.ndarray:
    """uint8 [n, size, size, 3]: a textured coffee-cup photo, no face."""
    import cv2
    from skimage.data import coffee

    image = cv2.resize(coffee(), (size, size), interpolation=cv2.INTER_AREA)
    return np.stack([np.roll(image, t, axis=1) for t in range(n)])
