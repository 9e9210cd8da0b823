"""Detection rate of the face track on clips of a moving real face (and the demo corpus)."""
import numpy as np

from extract.core.media import decode
from extract.visual.face_track import TrackConfig, clip_track
from tests.media import write_clip


def moving_head(n: int, seed: int) -> np.ndarray:
    """uint8 [n, 240, 320, 3]: the astronaut's head rolling (+-15 deg), scaling and drifting."""
    import cv2
    from skimage.data import astronaut

    rng = np.random.default_rng(seed)
    image, frames = astronaut(), np.empty((n, 240, 320, 3), np.uint8)
    for t in range(n):
        pose = cv2.getRotationMatrix2D((220, 120), rng.uniform(-15, 15), rng.uniform(0.6, 0.9))
        pose[:, 2] += (160 - 220 + rng.uniform(-30, 30), 120 - 120 + rng.uniform(-15, 15))
        frames[t] = cv2.warpAffine(image, pose, (320, 240), borderMode=cv2.BORDER_REFLECT)
    return frames


def test_moving_head_clips_are_detected_in_nearly_every_frame(tmp_path):
    detected = []
    for seed in range(3):
        path = write_clip(tmp_path / f"{seed}.mp4", None, frames=moving_head(8, seed), fps=8)
        indices, track = clip_track(decode(path, audio=False, fps=8), 8, 8, TrackConfig())
        assert len(indices) == 8
        detected += track.detected.tolist()
    assert np.mean(detected) >= 0.9


def test_demo_corpus_faces_are_detected(tmp_path):
    from manifests import load_manifest
    from manifests.demo import generate

    generate(tmp_path / "demo", n_clips=4, seed=0)
    rates = []
    for clip in load_manifest("demo", root=tmp_path / "demo"):
        _, track = clip_track(decode(clip.media, audio=False, fps=2, max_frames=4), 2, 4, TrackConfig())
        rates.append(track.detected.mean())
    assert np.mean(rates) >= 0.9, rates
