"""The FER2013 mini-Xception port against Keras reference outputs (shared/fixtures)."""
from pathlib import Path

import numpy as np
import pytest

from extract.visual import fer2013_predict as public_predict
from extract.visual.fer2013 import LABELS, fer2013_predict

FIXTURE = Path(__file__).parents[2] / "fixtures" / "fer2013_keras_reference.npz"


@pytest.fixture(scope="module")
def reference():
    if not FIXTURE.exists():
        pytest.fail(f"{FIXTURE} is missing: the port cannot be checked")
    return np.load(FIXTURE)


def test_port_reproduces_keras_probs_and_last_residual_embedding(reference):
    probs, embedding = fer2013_predict(reference["inputs_gray_0_255"])
    assert probs.shape == (11, 7) and embedding.shape == (11, 128)
    np.testing.assert_allclose(probs, reference["probs"], atol=1e-4)
    np.testing.assert_allclose(embedding, reference["last_residual_gap"], atol=1e-4)
    assert tuple(reference["labels"]) == LABELS


def test_public_function_takes_uint8_and_batches_consistently(reference):
    images = reference["inputs_gray_0_255"].round().astype(np.uint8)
    probs, embedding = public_predict(images)
    one, _ = public_predict(images[3:4])
    np.testing.assert_allclose(probs[3:4], one, atol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # uint8 rounding moves the outputs only slightly
    np.testing.assert_allclose(probs, reference["probs"], atol=2e-2)


def test_wrong_input_shape_is_refused_with_the_expected_shape():
    with pytest.raises(ValueError, match=r"\[B, 64, 64\].*\(2, 48, 48\)"):
        fer2013_predict(np.zeros((2, 48, 48)))


def test_our_aligned_astronaut_chip_is_the_fixtures_input(reference, astronaut):
    """face-fer2013 feeds the model what the reference was computed on: a 64 px dlib chip, padding 0.25."""
    from extract.visual.face_track import align_face, face_track, to_gray

    track = face_track(astronaut[None])
    chip = to_gray(align_face(astronaut, track.boxes[0], track.landmarks5[0], 64, 0.25)).astype(np.float32)
    assert np.abs(chip - reference["inputs_gray_0_255"][0]).mean() < 5  # of 255 (resampling differences)
    probs, _ = fer2013_predict(chip[None])
    assert LABELS[int(probs.argmax())] == LABELS[int(reference["probs"][0].argmax())]
