"""dlib face track: detection on real faces, alignment to the template, one consistent face."""
import cv2
import numpy as np
import pytest

from extract.visual.face_track import (TrackConfig, align_face, detect_all, face_track, link_tracks,
                                sample_indices, dominant_track, _landmarks)
from tests.extract.visual.conftest import lfw_rgb, two_face_frames

# dlib's 5-point mean-face template (get_face_chip_details): eye corners, in [0, 1] of the face
TEMPLATE_EYE_CORNERS = np.array([[0.8595675, 0.2134982], [0.6460605, 0.2289674],
                                 [0.1205751, 0.2137275], [0.3340851, 0.2290642]])


def test_lfw_faces_are_found_and_non_faces_are_not(lfw):
    faces, non_faces = lfw
    found = detect_all(np.stack([lfw_rgb(f) for f in faces[:40]]), TrackConfig())
    assert sum(bool(f) for f in found) / 40 >= 0.85
    false = detect_all(np.stack([lfw_rgb(f) for f in non_faces[:40]]), TrackConfig())
    assert sum(bool(f) for f in false) <= 2


def test_small_faces_need_upsampling(lfw):
    frames = np.stack([lfw_rgb(f, side=60) for f in lfw[0][:10]])
    plain = detect_all(frames, TrackConfig(upsample="0"))
    auto = detect_all(frames, TrackConfig(upsample="auto"))
    assert sum(bool(f) for f in auto) >= 7 > sum(bool(f) for f in plain)


@pytest.mark.parametrize("angle, scale", [(0, 1.0), (18, 0.7), (-12, 1.2)])
def test_alignment_puts_the_eyes_on_the_template(astronaut, angle, scale):
    """Whatever the head roll and size, the chip's eyes (found again by the 68-point predictor
    on the chip) sit where dlib's template puts them: (padding + p) / (1 + 2 padding) * size."""
    rotation = cv2.getRotationMatrix2D((256, 256), angle, scale)
    frame = cv2.warpAffine(astronaut, rotation, (512, 512), borderMode=cv2.BORDER_REFLECT)
    track = face_track(frame[None])
    size, padding = 150, 0.25
    chip = align_face(frame, track.boxes[0], track.landmarks5[0], size, padding)
    face = (np.array([padding, padding, 1 + padding, 1 + padding]) / (1 + 2 * padding) * size).round()
    on_chip = _landmarks(chip, face, "68")  # the template's face square as the box
    eyes = np.stack([on_chip[42:48].mean(0), on_chip[36:42].mean(0)])  # person's left, right
    expected = (padding + TEMPLATE_EYE_CORNERS.reshape(2, 2, 2).mean(1)) / (1 + 2 * padding) * size
    np.testing.assert_allclose(eyes, expected, atol=3.5)  # pixels of a 150 px chip
    assert abs(eyes[0, 1] - eyes[1, 1]) < 2  # level eyes: the roll is undone


def test_two_faces_keep_one_consistent_track(astronaut, lfw):
    frames = two_face_frames(astronaut, lfw_rgb(lfw[0][0]))
    found = detect_all(frames, TrackConfig())
    assert [len(f) for f in found] == [1, 1, 2, 2, 2, 2]  # both people are detected
    track = face_track(frames)
    # the astronaut (larger, left) is the clip's face; the other person never fills a gap
    assert track.detected.tolist() == [False, False, True, True, True, True]
    centres = (track.boxes[2:, 0] + track.boxes[2:, 2]) / 2
    assert (centres < 300).all() and np.ptp(centres) < 20
    assert np.isfinite(track.landmarks68[2:]).all() and np.isnan(track.landmarks68[:2]).all()


def test_linking_keeps_identities_apart():
    a, b = np.array([0, 0, 100, 100], np.float32), np.array([300, 0, 360, 60], np.float32)
    found = [[(a, 1.0), (b, 1.0)], [(b + 3, 1.0)], [(a + 4, 1.0), (b + 6, 1.0)]]
    tracks = link_tracks(found)
    assert sorted(sorted(t) for t in tracks) == [[0, 1, 2], [0, 2]]
    assert sorted(dominant_track(tracks)) == [0, 2]  # larger face, though present in fewer frames
    weak = [[(a, 0.02), (b, 1.2)], [(a, 0.03), (b, 1.1)]]  # a face-sized false detection
    assert dominant_track(link_tracks(weak))[0][0].tolist() == b.tolist()


@pytest.mark.parametrize("times, fps, max_frames, sampling, expected", [
    (np.arange(50) / 25, 5, 0, "spread", list(range(0, 50, 5))),  # every 5th frame of 25 fps video
    (np.arange(50) / 25, 5, 4, "spread", [0, 15, 30, 45]),        # then evenly spread
    (np.arange(50) / 25, 5, 4, "first", [0, 5, 10, 15]),          # or the first ones (SAMSEMO's)
    (np.arange(10) / 5, 5, 0, "spread", list(range(10))),         # decoded at this rate: all kept
    (np.arange(3) / 5, 5, 16, "first", [0, 1, 2]),                # short clip: fewer than max
])
def test_frame_sampling(times, fps, max_frames, sampling, expected):
    assert sample_indices(times, fps, max_frames, sampling).tolist() == expected
