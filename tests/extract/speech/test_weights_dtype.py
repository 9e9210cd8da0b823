"""Checkpoints load in float32 whatever dtype their config names (transformers' default
dtype="auto" would load a float16 checkpoint in float16): a stand-in saved in float16 gives, at
--dtype float32 and bfloat16, the features of the same weights saved in float32."""
import numpy as np
import pytest
import torch

from extract import stand_ins
from extract.speech.encoders import SpeechModelConfig, SpeechModelFeatures


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    """(float16 checkpoint, the same weights as a float32 checkpoint)."""
    from transformers import AutoModel

    root = tmp_path_factory.mktemp("dtypes")
    stand_ins.STAND_INS["tiny-hubert"](root / "fp32")
    model = AutoModel.from_pretrained(root / "fp32").half()
    model.save_pretrained(root / "fp16")
    assert model.config.dtype == torch.float16 or str(model.config.dtype).endswith("float16")
    model.float().save_pretrained(root / "fp32")  # the float16-rounded weights in float32
    for name in ("preprocessor_config.json", "STAND_IN"):
        (root / "fp16" / name).write_bytes((root / "fp32" / name).read_bytes())
    return root / "fp16", root / "fp32"


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-5), ("bfloat16", 0.05)])
def test_a_float16_checkpoint_gives_the_float32_features(halves, speech_16k, dtype, atol):
    clips = [speech_16k[:16000], speech_16k[8000:40000]]
    means = []
    for folder, compute in ((halves[0], dtype), (halves[1], "float32")):
        ex = SpeechModelFeatures(SpeechModelConfig(store_dtype="float32", compute_dtype=compute, device="cpu"),
                                 source=str(folder))
        ex.setup()
        assert all(p.dtype == torch.float32 for p in ex._model.parameters())
        means.append(np.stack([o.arrays["mean"] for o in ex.extract_batch([None, None], clips)]))
    scale = np.abs(means[1]).max()
    np.testing.assert_allclose(means[0], means[1], atol=atol * scale)
    assert ex.provenance()["weights_dtype"] == "float32"
