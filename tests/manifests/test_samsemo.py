"""The SAMSEMO layout: split lists, meta.pkl, scene folders of audio.wav and image_<i>.jpg."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from cache import open_clips, open_feature
from extract.core.media import decode_streams
from manifests import load_manifest
from manifests.samsemo import CLASSES
from manifests.table import NO_CLASS
from tests.media import SCENE_SECONDS as SECONDS, write_scene

META = {
    "ab12cd34ef_0": {"label": "disgust, surprise", "text": "That is revolting!"},  # disgust -> anger+
    "ab12cd34ef_1": {"label": ["happiness"], "text": "What a day."},
    "gh56ij78kl_3": {"label": "fear", "text": "Who is there?"},                      # fear only
    "mn90op12qr_0": {"label": [1, 0, 0, 0, 1], "text": "Nie wiem."},                # run.py's 0/1 vector
    "mn90op12qr_1": {"label": "fear, sadness", "text": "Tak."},
    "zz00zz00zz_9": {"label": "neutral", "text": "gone"},
}


@pytest.fixture
def corpus(tmp_path):
    """Two languages, every split, a scene without audio and one listed without a folder."""
    root = tmp_path / "samsemo"
    scenes = root / "segmented" / "combined"
    write_scene(scenes / "ab12cd34ef_0")
    write_scene(scenes / "ab12cd34ef_1", rate=44100)
    write_scene(scenes / "gh56ij78kl_3")
    write_scene(scenes / "mn90op12qr_0")
    write_scene(scenes / "mn90op12qr_1", audio=False)
    meta = root / "meta_and_splits"
    meta.mkdir()
    (meta / "train_split_EN.txt").write_text("ab12cd34ef_0\nab12cd34ef_1\nzz00zz00zz_9\n")
    (meta / "valid_split_EN.txt").write_text("gh56ij78kl_3\n")
    (meta / "test_split_PL.txt").write_text("mn90op12qr_0\nmn90op12qr_1\n")
    with open(meta / "meta.pkl", "wb") as f:
        pickle.dump(META, f)
    return root


def test_loader_reads_splits_labels_and_transcripts(corpus):
    m = load_manifest("samsemo", root=corpus)
    assert m.ids == sorted(META)
    assert m.classes == CLASSES == ("anger+", "happiness", "sadness", "surprise", "neutral")
    assert {c.id: c.split for c in m} == {"ab12cd34ef_0": "train", "ab12cd34ef_1": "train", "zz00zz00zz_9": "train",
                                          "gh56ij78kl_3": "valid", "mn90op12qr_0": "test", "mn90op12qr_1": "test"}
    assert m["ab12cd34ef_0"].labels == ("anger+", "surprise")  # disgust merged into anger+
    assert m["ab12cd34ef_1"].label == "happiness"
    assert m["gh56ij78kl_3"].label == NO_CLASS and m["gh56ij78kl_3"].error is None  # fear only: no class
    assert m["gh56ij78kl_3"].labels == ()
    assert m["mn90op12qr_0"].labels == ("anger+", "neutral")
    assert m["mn90op12qr_1"].label == "sadness"  # fear dropped
    assert m["ab12cd34ef_0"].text == "That is revolting!" and m["mn90op12qr_0"].text == "Nie wiem."
    assert m["ab12cd34ef_0"].media == corpus / "segmented" / "combined" / "ab12cd34ef_0"
    assert m.multi_label and any("fear alone" in w and "all-negative targets" in w for w in m.warnings)


def test_an_all_zero_label_vector_is_an_all_negative_target(corpus):
    """run.py's 0/1 vector with no emotion set (how a fear-only scene reads once fear is dropped) is
    trained and scored as it is: NO_CLASS; an entry without a label stays unlabelled."""
    meta = {**META, "ab12cd34ef_0": {"label": [0, 0, 0, 0, 0], "text": "Hm."},
            "ab12cd34ef_1": {"label": "", "text": "What a day."}, "mn90op12qr_0": {"text": "Nie wiem."}}
    with open(corpus / "meta_and_splits" / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)
    m = load_manifest("samsemo", root=corpus)
    assert m["ab12cd34ef_0"].label == NO_CLASS and m["gh56ij78kl_3"].label == NO_CLASS
    assert m["ab12cd34ef_1"].label is None and m["mn90op12qr_0"].label is None
    assert any(w.startswith("2 scene(s) with none of the 5 classes") for w in m.warnings), m.warnings


def test_unusable_scenes_become_clip_errors(corpus):
    m = load_manifest("samsemo", root=corpus)
    assert "scene folder zz00zz00zz_9/ not found" in m["zz00zz00zz_9"].error
    assert m["mn90op12qr_1"].error == "scene mn90op12qr_1: no audio.wav in its folder"
    assert [c.id for c in m if c.error] == ["mn90op12qr_1", "zz00zz00zz_9"]


def test_a_scene_decodes_like_a_file(corpus):
    scene = corpus / "segmented" / "combined" / "ab12cd34ef_0"
    media = decode_streams(scene, audio=True, fps=5)
    assert media.errors == {} and media.audio.dtype == np.float32
    assert len(media.audio) == int(SECONDS * 16000)
    assert media.frames.shape == (5, 96, 96, 3) and media.frames.dtype == np.uint8
    np.testing.assert_allclose(media.frame_times, [0, 0.5, 1, 1.5, 2])
    assert decode_streams(scene, audio=False, fps=1).frame_times.tolist() == [0, 1, 2]
    assert decode_streams(scene, audio=False, fps=5, max_frames=2).frame_times.tolist() == [0, 2]
    resampled = decode_streams(corpus / "segmented" / "combined" / "ab12cd34ef_1", audio=True)
    assert abs(len(resampled.audio) - SECONDS * 16000) < 160 and resampled.frames is None


def test_broken_scene_streams_name_the_scene(corpus):
    scene = corpus / "segmented" / "combined" / "ab12cd34ef_0"
    (scene / "image_2.jpg").write_bytes(b"not a jpeg")
    media = decode_streams(scene, audio=True, fps=5)
    assert len(media.audio) == int(SECONDS * 16000)
    assert media.errors["frames"].startswith("cannot decode ab12cd34ef_0/image_2.jpg")
    mute = decode_streams(corpus / "segmented" / "combined" / "mn90op12qr_1", audio=True, fps=5)
    assert mute.errors == {"audio": "file not found: mn90op12qr_1/audio.wav"} and len(mute.frames) == 5
    for jpg in scene.glob("*.jpg"):
        jpg.unlink()
    assert decode_streams(scene, audio=False, fps=5).errors == {
        "frames": "scene ab12cd34ef_0: no image_<i>.jpg frames in its folder"}


def test_signature_changes_when_a_frame_changes(corpus):
    clip = load_manifest("samsemo", root=corpus)["ab12cd34ef_0"]
    before = clip.signature()
    assert before == clip.signature() and "folder=" in before
    frame = clip.media / "image_3.jpg"
    stat = frame.stat()
    frame.write_bytes(frame.read_bytes()[::-1])  # same size, other content
    os.utime(frame, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert clip.signature() != before


def test_extract_end_to_end_writes_a_multi_label_clip_table(corpus, tmp_path):
    cache = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-m", "extract", "--dataset", "samsemo_t", "--layout", "samsemo", "--root", str(corpus),
         "--features", "mfcc,face-crops", "--cache", str(cache), "--quiet"],
        capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 1, result.stderr  # two scenes fail, as recorded per clip
    assert ("warning: 1 scene(s) with none of the 5 classes (fear alone, a dropped class, or an all-zero label): "
            "all-negative targets, as run.py trains and scores them") in result.stderr
    assert "manifest: 1 scene(s) with none of the 5 classes" in (cache / "samsemo_t" / "extract.log").read_text()
    clips = open_clips("samsemo_t", cache)
    assert clips.multi_label and clips.classes == CLASSES
    assert clips.ids == sorted(META) and clips.split("valid") == ["gh56ij78kl_3"]
    y = clips.labels(["ab12cd34ef_0", "gh56ij78kl_3"])
    assert y[0].tolist() == [1, 0, 0, 1, 0] and y[1].tolist() == [0, 0, 0, 0, 0]  # fear only: all-negative
    assert clips.labelled(["gh56ij78kl_3"]).tolist() == [True]
    for name in ("mfcc", "face-crops"):
        feat = open_feature("samsemo_t", name, cache)
        assert feat.ok_ids() == ["ab12cd34ef_0", "ab12cd34ef_1", "gh56ij78kl_3", "mn90op12qr_0"]
        assert set(feat.failures()) == {"mn90op12qr_1", "zz00zz00zz_9"}
    assert "no audio.wav" in open_feature("samsemo_t", "mfcc", cache).failures()["mn90op12qr_1"]
    crops = open_feature("samsemo_t", "face-crops", cache)
    mask = crops.array("mask", ids=["ab12cd34ef_0"])[0]
    assert mask[:5].tolist() == [1] * 5 and (mask[5:] == 0).all()  # 5 frames, the face found in each
