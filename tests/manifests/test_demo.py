"""The demo corpus: MER 2023 layout, real media, labels consistent with cues, deterministic."""
import csv
import json

import av
import cv2
import numpy as np
import pytest

from manifests import MER_CLASSES, load_manifest
from manifests.demo import generate
from manifests.demo.design import split_sizes

N = 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("demo") / "demo", n_clips=N, seed=3)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def decode(path):
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().mean(0) for f in c.decode(audio=0)])
        c.seek(0)
        frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
        return audio, frames, c.streams.audio[0].rate


def test_layout_and_tables(corpus):
    sizes = split_sizes(N)
    for split, n in sizes.items():
        assert len(list((corpus / split).glob("sample_*.mp4"))) == n
    train = read_csv(corpus / "train-label.csv")
    assert list(train[0]) == ["name", "discrete", "valence"] and len(train) == sizes["train"]
    assert not (corpus / "test3-label.csv").exists()  # test3 is unlabelled, as in MER 2023
    texts = read_csv(corpus / "transcription.csv")
    assert list(texts[0]) == ["name", "sentence"] and len(texts) == N
    manifest = load_manifest("demo", root=corpus)  # the mer2023 loader reads it as is
    assert len(manifest) == N and not [c for c in manifest if c.error]
    assert {c.label for c in manifest if c.split != "test3"} <= set(MER_CLASSES)


def test_valence_follows_the_class(corpus):
    rows = read_csv(corpus / "train-label.csv") + read_csv(corpus / "test1-label.csv")
    for row in rows:
        v = float(row["valence"])
        assert -5 <= v <= 5
        if row["discrete"] == "happy":
            assert v > 0
        if row["discrete"] in ("angry", "sad"):
            assert v < 0


def test_clips_are_real_video_with_speech(corpus):
    info = json.loads((corpus / "demo-info.json").read_text())
    rates = set()
    for design in info["clip_designs"]:
        path = corpus / design["split"] / f"{design['id']}.mp4"
        with av.open(str(path)) as c:
            assert c.streams.video and c.streams.audio
            assert c.streams.video[0].codec_context.name == "h264"
            assert 2.0 <= float(c.duration / av.time_base) <= 5.3
            rates.add(c.streams.audio[0].rate)
        audio, frames, _ = decode(path)
        assert np.abs(audio).max() > 0.05 and len(frames) >= 28
    assert len(rates) >= 3  # resampling downstream gets exercised


def test_same_seed_same_corpus(corpus, tmp_path):
    again = generate(tmp_path / "again", n_clips=N, seed=3)
    other = generate(tmp_path / "other", n_clips=N, seed=4)
    assert (again / "train-label.csv").read_text() == (corpus / "train-label.csv").read_text()
    assert (other / "transcription.csv").read_text() != (corpus / "transcription.csv").read_text()
    a, _, _ = decode(corpus / "train" / "sample_00000001.mp4")
    b, _, _ = decode(again / "train" / "sample_00000001.mp4")
    np.testing.assert_array_equal(a, b)


def test_test2_is_test1_with_noise_and_blur(corpus):
    info = json.loads((corpus / "demo-info.json").read_text())
    by_id = {d["id"]: d for d in info["clip_designs"]}
    test2 = [d for d in info["clip_designs"] if d["split"] == "test2"]
    assert any(d["blur_factor"] > 1 for d in test2)  # seed 3 blurs: the check below runs
    for d in test2:
        source = by_id[d["source"]]
        assert (source["label"], source["text"]) == (d["label"], d["text"])
        clean, clean_frames, _ = decode(corpus / "test1" / f"{source['id']}.mp4")
        noisy, noisy_frames, _ = decode(corpus / "test2" / f"{d['id']}.mp4")
        n = min(len(clean), len(noisy))
        noise = noisy[:n] - clean[:n]  # AAC of both: the difference is mostly the added speech
        snr = 10 * np.log10(np.mean(clean[:n] ** 2) / np.mean(noise ** 2))
        assert abs(snr - d["snr_db"]) < 2.5
        sharp = np.mean([cv2.Laplacian(f, cv2.CV_64F).var() for f in clean_frames])
        blurred = np.mean([cv2.Laplacian(f, cv2.CV_64F).var() for f in noisy_frames])
        if d["blur_factor"] > 1:
            assert blurred < 0.8 * sharp


def test_a_real_face_detector_finds_the_face(corpus):
    import dlib

    detector = dlib.get_frontal_face_detector()
    _, frames, _ = decode(corpus / "train" / "sample_00000001.mp4")
    found = [len(detector(f, 1)) >= 1 for f in frames[::6]]
    assert np.mean(found) >= 0.9


def test_rerun_is_a_no_op_and_another_corpus_is_refused(corpus):
    stamp = (corpus / "demo-info.json").stat().st_mtime_ns
    generate(corpus, n_clips=N, seed=3)
    assert (corpus / "demo-info.json").stat().st_mtime_ns == stamp
    with pytest.raises(Exception, match="--force"):
        generate(corpus, n_clips=N, seed=5)


def test_synthesize_gives_speech_and_repeats_exactly():
    from manifests.demo.speech import SAMPLE_RATE, synthesize

    text = "The meeting starts at nine tomorrow."
    first = synthesize(text, voice="en+f3", rate=160)
    synthesize("Something else in between.", voice="en+m3", pitch=70)  # engine state must not leak
    again = synthesize(text, voice="en+f3", rate=160)
    assert first.dtype == np.float32 and 1.0 < len(first) / SAMPLE_RATE < 4.0
    assert np.sqrt(np.mean(first ** 2)) > 0.02  # speech, not silence
    np.testing.assert_array_equal(first, again)
    slow = synthesize(text, voice="en+f3", rate=100)
    assert len(slow) > 1.3 * len(first)  # the rate parameter reaches the engine


@pytest.mark.parametrize("expression, landmarks, direction", [
    ("happy", [48, 54], -1),      # mouth corners up
    ("sad", [21, 22], -1),        # inner brows raised
    ("sad", [37, 38, 43, 44], +1),  # upper lids droop
    ("surprise", [19, 24], -1),   # brows raised
    ("surprise", [57], +1),       # lower lip drops: the mouth opens
])
def test_expressions_move_the_landmarks_dlib_finds(expression, landmarks, direction):
    import dlib
    from manifests.demo.faces import FaceAnimator, shape_predictor_path

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(shape_predictor_path()))

    def landmarks_of(image):
        box = detector(image, 1)[0]
        return np.array([(p.x, p.y) for p in predictor(image, box).parts()], float)

    animator = FaceAnimator()
    rest = landmarks_of(animator.render(expression, np.zeros(1), 0, 1, 256)[0])
    full = landmarks_of(animator.render(expression, np.ones(1), 0, 1, 256)[0])
    face_width = rest[16, 0] - rest[0, 0]
    dy = (full[landmarks, 1] - rest[landmarks, 1]).mean() / face_width
    assert direction * dy > 0.015


@pytest.fixture(scope="module")
def fer_table():
    """Mean FER2013 class probabilities [6 expressions, 7 classes] of rendered faces (intensity 0.7,
    3 head motions x 2 frames each), through the face-fer2013 path: dlib track, aligned gray chips."""
    from extract.visual import LABELS, fer2013_predict
    from extract.visual.embedder import face_crops
    from extract.visual.face_track import face_track, to_gray
    from extract.visual.faces import FaceFER2013
    from manifests.demo.faces import EXPRESSIONS, FaceAnimator

    animator, table = FaceAnimator(), []
    for expression in EXPRESSIONS:
        probs = []
        for motion_seed in (11, 12, 13):
            frames = animator.render(expression, np.full(2, 0.7), motion_seed, 2, 256)
            track = face_track(frames)
            assert track.detected.all(), (expression, motion_seed)
            chips, _ = face_crops(frames, track, FaceFER2013.chip_size, FaceFER2013.chip_padding)
            probs.append(fer2013_predict(to_gray(chips))[0])
        table.append(np.concatenate(probs).mean(0))
    return EXPRESSIONS, LABELS, np.array(table)


@pytest.mark.parametrize("emotion", ["happy", "sad", "angry", "surprise"])
def test_a_real_fer2013_cnn_sees_the_expression(fer_table, emotion):
    # each FER class is most probable on its own expression, by a margin: the face carries a
    # real expression, not only a geometric cue a classifier must learn
    expressions, labels, table = fer_table
    column = table[:, labels.index(emotion)]
    own = column[expressions.index(emotion)]
    others = np.delete(column, expressions.index(emotion))
    assert own > others.max() + 0.15, dict(zip(expressions, column.round(2)))


def test_the_rest_face_is_not_the_photos_smile(fer_table):
    # the photo smiles with its teeth; the rest face (no expression) must not read as happy
    expressions, labels, table = fer_table
    neutral, happy = table[expressions.index("neutral")], table[expressions.index("happy")]
    assert neutral[labels.index("happy")] < happy[labels.index("happy")] - 0.3


def test_piecewise_affine_map_inverts_a_global_affine_move():
    # every point moved by one affine transform: the backward map is that transform's inverse
    # everywhere the mesh covers, whatever the triangulation
    from scipy.spatial import Delaunay

    from manifests.demo.faces import piecewise_affine_map

    rng = np.random.default_rng(0)
    source = np.concatenate([[[0, 0], [63, 0], [0, 63], [63, 63]], rng.uniform(5, 58, (20, 2))]).astype(np.float32)
    forward = np.array([[1.1, 0.1, -3.0], [-0.05, 0.95, 2.0]])
    target = source @ forward[:, :2].T + forward[:, 2]
    warp = piecewise_affine_map(source, target.astype(np.float32), Delaunay(source).simplices, 64)
    ys, xs = np.mgrid[10:50, 10:50]
    back = np.linalg.solve(forward[:, :2], np.stack([xs - forward[0, 2], ys - forward[1, 2]]).reshape(2, -1))
    np.testing.assert_allclose(warp[10:50, 10:50].reshape(-1, 2), back.T, atol=1e-3)


def test_pressed_lips_meet_instead_of_crossing():
    from manifests.demo.expressions import N_OPENING, N_POINTS, OPENING_BOTTOM, OPENING_TOP, uncross_lips

    points = np.zeros((N_POINTS + 2 * N_OPENING, 2), np.float32)
    points[list(OPENING_TOP), 1] = 10.0
    points[list(OPENING_BOTTOM), 1] = [12, 12, 8, 8, 12, 12, 12, 12, 6]  # three crossed pairs
    fixed = uncross_lips(points)
    top, bottom = fixed[list(OPENING_TOP), 1], fixed[list(OPENING_BOTTOM), 1]
    np.testing.assert_array_equal(bottom >= top, True)
    np.testing.assert_allclose(top[[2, 3, 8]], [9, 9, 8])
    np.testing.assert_allclose(bottom[[0, 1]], 12)  # open pairs untouched
