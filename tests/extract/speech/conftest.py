"""Tiny random-initialised speech encoders (built once per session, as `make models` does) and
independent computations with plain transformers to compare the extractor with."""
import numpy as np
import pytest
import torch

from extract import stand_ins

STAND_INS = ("tiny-hubert", "tiny-wav2vec2", "tiny-wavlm", "tiny-data2vec-audio")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """{stand-in name: folder}, each saved with save_pretrained and marked as a random stand-in."""
    root = tmp_path_factory.mktemp("models")
    folders = {}
    for name in STAND_INS:
        folder = root / name
        folder.mkdir()
        stand_ins.STAND_INS[name](folder)
        folders[name] = folder
    return folders


def reference_hidden_states(folder, audio: np.ndarray) -> np.ndarray:
    """float32 [L, T, D]: every hidden state of one clip, run alone by plain transformers."""
    from transformers import AutoFeatureExtractor, AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoFeatureExtractor.from_pretrained(folder)
    inputs = processor(audio, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        out = model(inputs["input_values"], output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0].numpy()


def frames_of(n_samples: int) -> int:
    """Frames of the wav2vec2 / HuBERT CNN stack (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2):
    a 25 ms receptive field every 20 ms."""
    return (n_samples - 400) // 320 + 1
