"""`python -m extract` with the visual features on small real clips."""
import numpy as np
import pytest
from click.testing import CliRunner

from cache import open_feature
from extract.__main__ import main
from extract.stand_ins import tiny_vit
from extract.visual.fer2013 import fer2013_predict
from tests.conftest import write_table
from tests.extract.visual.conftest import lfw_rgb, no_face_frames, two_face_frames
from tests.media import face_frames, write_clip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, astronaut, lfw):
    """face (12 frames at 10 fps), two people, no face, and an audio-only clip."""
    root = tmp_path_factory.mktemp("visual")
    write_clip(root / "face.mp4", None, frames=face_frames(12, size=160), fps=10)
    write_clip(root / "two.mp4", None, frames=two_face_frames(astronaut, lfw_rgb(lfw[0][0]), n=6), fps=5)
    write_clip(root / "noface.mp4", None, frames=no_face_frames(6), fps=5)
    write_clip(root / "audio.wav", np.sin(np.arange(16000) / 8).astype(np.float32) * 0.3)
    rows = [dict(id=i, path=f"{i}.{'wav' if i == 'audio' else 'mp4'}", split="train")
            for i in ("face", "two", "noface", "audio")]
    return write_table(root / "clips.csv", rows)


def extract(corpus, cache, features, *settings):
    args = ["--dataset", "v", "--clips", str(corpus), "--features", features, "--cache", str(cache), "--quiet"]
    for s in settings:
        args += ["--set", s]
    result = CliRunner().invoke(main, args)
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def cached(corpus, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    result = extract(corpus, cache, "face-crops,face-crops-crossbert,face-dlib,face-fer2013",
                     "face-fer2013.frame_level=true", "face-dlib.pool_std=true")
    assert result.exit_code == 1, result.output  # noface and audio fail
    return cache


def test_crops_have_preset_shapes_and_masks(cached):
    crops = open_feature("v", "face-crops", cached)
    assert crops.shape == (4, 16, 48, 48, 3) and crops.array(ids=crops.ok_ids()).dtype == np.uint8
    with pytest.raises(ValueError, match=r"uint8 and has no value for the failed clips \['audio'\]"):
        crops.array()  # an audio-only clip has no crops: never black pixels
    face = crops.array("mask", ids=["face"])[0]
    assert face.tolist() == [1] * 6 + [0] * 10  # 1.2 s at 5 fps: 6 real faces, then padding
    assert (crops.array(ids=["face"])[0][6:] == 0).all() and crops.array(ids=["face"])[0][:6].std() > 20
    # E2E-L's centre-crop fallback on the no-face clip is marked 2 and the clip flagged
    assert crops.array("mask", ids=["noface"])[0].tolist() == [2] * 6 + [0] * 10
    assert crops.status_of("noface")[0] == "flagged"
    assert crops.array("landmarks68", ids=["face"]).shape == (1, 16, 68, 2)
    gray = open_feature("v", "face-crops-crossbert", cached)
    assert gray.sequence("face", "crops").shape == (6, 64, 64)
    assert gray.sequence("face", "mask").tolist() == [1] * 6


def test_first_frames_sampling_takes_the_clips_beginning(corpus, tmp_path):
    """face-crops.sampling=first: SAMSEMO's first 16 frames (prep_video.py) instead of 16 spread."""
    result = extract(corpus, tmp_path, "first=face-crops,spread=face-crops", "first.max_frames=4",
                     "first.sampling=first", "spread.max_frames=4")
    assert result.exit_code == 1, result.output  # noface and audio fail, as above
    times = {name: open_feature("v", name, tmp_path).array("times", ids=["face"])[0] for name in ("first", "spread")}
    np.testing.assert_allclose(times["first"], [0, 0.2, 0.4, 0.6], atol=1e-6)  # 6 frames at 5 fps: the first 4
    np.testing.assert_allclose(times["spread"], [0, 0.4, 0.6, 1.0], atol=1e-6)
    refused = extract(corpus, tmp_path / "other", "face-crops", "face-crops.sampling=last")
    assert refused.exit_code == 2 and "sampling 'last': choose one of spread, first" in refused.output
    assert not (tmp_path / "other").exists()


def test_two_face_clip_crops_only_the_dominant_face(cached):
    crops = open_feature("v", "face-crops", cached)
    assert crops.array("mask", ids=["two"])[0][:6].tolist() == [2, 2, 1, 1, 1, 1]
    boxes = crops.array("boxes", ids=["two"])[0][2:6]
    assert ((boxes[:, 0] + boxes[:, 2]) / 2 < 300).all()  # the astronaut, on the left


def test_no_face_and_no_video_are_recorded_failures(cached):
    for name in ("face-dlib", "face-fer2013", "face-crops-crossbert"):
        feat = open_feature("v", name, cached)
        failures = feat.failures()
        assert set(failures) == {"noface", "audio"}, name
        assert "NoFaceError: no face detected in 6 sampled frames" in failures["noface"]
        assert "no video stream in audio.wav" in failures["audio"]
        assert np.isnan(feat.array(ids=["noface"])).all()  # never zeros


def test_fer2013_feature_equals_the_public_function_on_its_crops(cached):
    fer = open_feature("v", "face-fer2013", cached)
    gray = open_feature("v", "face-crops-crossbert", cached).sequence("face", "crops")
    probs, embedding = fer2013_predict(gray)  # same track and 64 px chips, padding 0.25
    np.testing.assert_allclose(fer.array("embedding", ids=["face"])[0], embedding.mean(0), atol=1e-4)
    np.testing.assert_allclose(fer.array("probs", ids=["face"])[0], probs.mean(0), atol=1e-5)
    assert fer.sequence("face", "frame_embedding").shape == (6, 128)
    np.testing.assert_allclose(fer.array("face_fraction", ids=["face", "two"])[:, 0], [1.0, 4 / 6], atol=1e-6)


def test_dlib_descriptor_tells_the_tracked_person_from_the_other(cached, lfw):
    import dlib

    from extract.visual.face_track import align_face, face_track, model_path

    dlib_feat = open_feature("v", "face-dlib", cached)
    face, two = dlib_feat.array(ids=["face", "two"])
    assert dlib_feat.shape[1:] == (128,) and dlib_feat.array("descriptor_std", ids=["face"]).shape == (1, 128)
    other = lfw_rgb(lfw[0][0])
    track = face_track(other[None])
    model = dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat")))
    stranger = np.array(model.compute_face_descriptor(align_face(other, track.boxes[0], track.landmarks5[0], 150)))
    # dlib's "same person" threshold is a Euclidean distance of 0.6
    assert np.linalg.norm(face - two) < 0.6 < np.linalg.norm(two - stranger)


def reference_layers(folder, chips: np.ndarray) -> np.ndarray:
    """float32 [L, W]: the HF model's own forward on uint8 chips [n, S, S, 3] through its own image
    processor; each hidden state averaged over tokens (or the spatial grid), then over the chips,
    zero-padded to the widest layer."""
    import torch
    from transformers import AutoImageProcessor, AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    pixels = AutoImageProcessor.from_pretrained(folder)(images=list(chips), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        hidden = getattr(model, "vision_model", model)(pixel_values=pixels, output_hidden_states=True).hidden_states
    pooled = [(h.mean(1) if h.dim() == 3 else h.mean((2, 3))).mean(0).numpy() for h in hidden]
    width = max(len(p) for p in pooled)
    return np.stack([np.pad(p, (0, width - len(p))) for p in pooled])


def check_against_the_model(cache, feature, crops_feature, folder, atol):
    """The cached layers of the face clips equal the model's forward on the face-crops of the same
    sampled frames (same track, chip size and padding), its detected faces only."""
    feat, crops = open_feature("v", feature, cache), open_feature("v", crops_feature, cache)
    for cid in ("face", "two"):
        mask = crops.array("mask", ids=[cid])[0]
        chips = crops.array(ids=[cid])[0][mask == 1]
        expected = reference_layers(folder, chips)
        np.testing.assert_allclose(feat.array(ids=[cid])[0].astype(np.float32), expected, rtol=2e-3, atol=atol)
    assert np.abs(expected[0] - expected[-1]).max() > 0.01  # the layers really differ


def test_vision_model_stores_every_layer_in_float16(corpus, tmp_path):
    tiny_vit(tmp_path / "tiny-vit")
    result = extract(corpus, tmp_path / "cache", f"tinyvit=vision:{tmp_path / 'tiny-vit'},crops=face-crops",
                     "tinyvit.max_frames=3", "tinyvit.chip_size=64",
                     "crops.max_frames=3", "crops.size=64", "crops.fallback=none")
    assert result.exit_code == 1, result.output
    feat = open_feature("v", "tinyvit", tmp_path / "cache")
    assert feat.shape == (4, 3, 32) and feat.array().dtype == np.float16  # embeddings + 2 layers
    assert set(feat.failures()) == {"noface", "audio"}
    check_against_the_model(tmp_path / "cache", "tinyvit", "crops", tmp_path / "tiny-vit", atol=3e-3)
    provenance = feat.provenance
    assert "random-initialised" in str(provenance) and str(tmp_path) not in str(provenance.get("model"))


def test_a_model_folder_names_its_feature_and_may_move(corpus, tmp_path):
    """No path in the file name, the feature name, the provenance or the fingerprint: the model is
    its weights, so a moved folder keeps its cache."""
    import json

    tiny_vit(tmp_path / "before" / "tiny-vit")
    settings = ("vision:tiny-vit.max_frames=2", "vision:tiny-vit.chip_size=32")
    first = extract(corpus, tmp_path / "cache", f"vision:{tmp_path / 'before' / 'tiny-vit'}", *settings)
    assert first.exit_code == 1 and "extracted 4 clips" in first.output, first.output
    assert [p.name for p in (tmp_path / "cache" / "v").glob("*.h5")] == ["_clips.h5", "vision_tiny-vit.h5"]
    feat = open_feature("v", "vision:tiny-vit", tmp_path / "cache")
    assert feat.provenance["extractor"] == "vision" and feat.provenance["feature"] == "vision:tiny-vit"
    assert feat.provenance["model"]["model"] == "tiny-vit" and feat.provenance["model"]["weights_sha256"]
    assert str(tmp_path) not in json.dumps(feat.provenance, default=str)
    (tmp_path / "before").rename(tmp_path / "after")
    again = extract(corpus, tmp_path / "cache", f"vision:{tmp_path / 'after' / 'tiny-vit'}", *settings)
    assert again.exit_code == 1 and "extracted 0 clips" in again.output and "4 already cached" in again.output
    assert open_feature("v", "vision:tiny-vit", tmp_path / "cache").attrs["fingerprint"] == feat.attrs["fingerprint"]


def _tiny_resnet(folder):
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ResNetModel(config).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=1.0).save_pretrained(folder)
    return 3, 16  # embeddings + 2 stages; stages zero-padded to the widest


def _tiny_convnext(folder):
    from transformers import ConvNextConfig, ConvNextImageProcessor, ConvNextModel

    ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=1.0).save_pretrained(folder)
    return 3, 16


def _tiny_clip_vision(folder):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig(text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2),
                        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                           num_attention_heads=2, image_size=32, patch_size=8),
                        projection_dim=8)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return 3, 16  # the image tower only: embeddings + 2 layers


@pytest.mark.parametrize("build", [_tiny_resnet, _tiny_convnext, _tiny_clip_vision])
def test_vision_kind_serves_cnns_and_clip_image_towers(corpus, tmp_path, build):
    """Tiny random-initialised ResNet, ConvNeXt and CLIP models built here, loaded by folder."""
    n_layers, width = build(tmp_path / "model")
    result = extract(corpus, tmp_path / "cache", f"vis=vision:{tmp_path / 'model'},crops=face-crops",
                     "vis.max_frames=2", "vis.chip_size=64",
                     "crops.max_frames=2", "crops.size=64", "crops.fallback=none")
    assert result.exit_code == 1, result.output  # noface and audio fail, the faces do not
    feat = open_feature("v", "vis", tmp_path / "cache")
    assert feat.shape == (4, n_layers, width) and set(feat.failures()) == {"noface", "audio"}
    check_against_the_model(tmp_path / "cache", "vis", "crops", tmp_path / "model", atol=3e-3)
    dims = feat.array("layer_dims", ids=["face"])[0]
    assert dims.max() == width and (feat.array(ids=["face"])[0][dims < width, width // 2:] == 0).all()


def test_cnn_detector_option_finds_the_face(corpus, tmp_path, monkeypatch):
    """dlib's MMOD CNN detector (GPU builds of dlib make it fast; here 2 small frames on the CPU)."""
    from extract.visual import face_track

    used, load = [], face_track._dlib_model
    monkeypatch.setattr(face_track, "_dlib_model", lambda kind: used.append(kind) or load(kind))
    result = extract(corpus, tmp_path / "cache", "cnncrops=face-crops", "cnncrops.detector=cnn",
                     "cnncrops.max_frames=2", "cnncrops.fallback=none")
    feat = open_feature("v", "cnncrops", tmp_path / "cache")
    assert feat.provenance["config"]["detector"] == "cnn"
    assert (feat.array("mask", ids=["face"])[0][:2] == 1).all(), result.output
    assert "cnn" in used and "hog" not in used  # the option took effect
