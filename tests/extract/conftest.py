"""Corpora and stand-in models shared by the stage-1 tests of this folder."""
import pickle
from pathlib import Path

import pytest
from PIL import Image

from extract import stand_ins
from tests.media import write_scene


@pytest.fixture
def samsemo_release(tmp_path):
    """A SAMSEMO release (tests/manifests/test_samsemo.py's scenes: audio.wav and image_<i>.jpg)
    with a scene whose frames differ in size."""
    root = tmp_path / "samsemo"
    scenes = root / "segmented" / "combined"
    meta = {"ab12cd34ef_0": {"label": "happiness", "text": "What a day."},
            "ab12cd34ef_1": {"label": "sadness", "text": "Oh no."},
            "gh56ij78kl_3": {"label": "surprise", "text": "Really?"},
            "mn90op12qr_0": {"label": "neutral", "text": "Broken frames."}}
    for scene in meta:
        write_scene(scenes / scene)
    Image.new("RGB", (48, 48), "gray").save(scenes / "mn90op12qr_0" / "image_2.jpg")
    (scenes / "ab12cd34ef_0" / "notes.txt").write_text("kept as it is")
    (root / "meta_and_splits").mkdir()
    (root / "meta_and_splits" / "train_split_EN.txt").write_text("ab12cd34ef_0\nab12cd34ef_1\nmn90op12qr_0\n")
    (root / "meta_and_splits" / "test_split_EN.txt").write_text("gh56ij78kl_3\n")
    with open(root / "meta_and_splits" / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)
    return root


def build_stand_in(tmp_path_factory, name: str) -> Path:
    """Folder of the tiny random-initialised stand-in `name`, built as `make models` does."""
    folder = tmp_path_factory.mktemp("models") / name
    folder.mkdir()
    stand_ins.STAND_INS[name](folder)
    return folder
