"""llm:<model> on tiny random-initialised Llama (BOS, no pad token) and Qwen2 (no BOS) causal LMs:
pad token, mean and last-token pooling against plain transformers, exact batches, the layer subset."""
import numpy as np
import pytest
import torch

from extract import stand_ins
from extract.core import base
from manifests.table import Clip

TEXTS = ["I can't believe it, this is wonderful news", "no.", "我今天真的很高兴", "oh no, not again"]


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for name in ("tiny-llama", "tiny-qwen2"):
        (root / name).mkdir()
        stand_ins.STAND_INS[name](root / name)
    return root


def llm(folder, **options):
    extractor = base.build(f"llm:{folder}", {"store_dtype": "float32", **options})
    extractor.setup()
    return extractor


def encode(extractor, texts):
    clips = [Clip(id=f"c{i}", split="train", text=t) for i, t in enumerate(texts)]
    return [o.arrays for o in extractor.extract_batch(clips, [extractor.prepare(c, None) for c in clips])]


def reference(folder, text) -> tuple[np.ndarray, list[int]]:
    """(float32 [L, T, D] every hidden state of one text run alone by plain transformers, its token ids)."""
    from transformers import AutoModel, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(folder)(text)["input_ids"]
    with torch.no_grad():
        out = AutoModel.from_pretrained(folder).eval()(torch.tensor([ids]), output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0].numpy(), ids


@pytest.mark.parametrize("name, special", [("tiny-llama", 1), ("tiny-qwen2", 0)])
def test_mean_and_last_token_leave_out_special_tokens(llm_dir, name, special):
    ex = llm(llm_dir / name, layers="all")
    for text, out in zip(TEXTS, encode(ex, TEXTS)):
        hidden, ids = reference(llm_dir / name, text)  # [4, T, 32]
        assert ids[0] == 0 if special else ids[0] != ex._tokenizer.bos_token_id  # Llama's BOS first
        assert out["mean"].shape == out["last"].shape == (4, 32) and out["n_tokens"] == len(ids)
        np.testing.assert_allclose(out["mean"], hidden[:, special:].mean(1), atol=1e-5)
        np.testing.assert_allclose(out["last"], hidden[:, -1], atol=1e-5)


def test_a_tokenizer_without_pad_token_pads_with_eos_and_batches_stay_exact(llm_dir):
    ex = llm(llm_dir / "tiny-llama", layers="all")
    assert ex._tokenizer.pad_token == "<|end|>" and ex.provenance()["pad_token"] == "'<|end|>' (the tokenizer has none)"
    alone = [encode(ex, [t])[0] for t in TEXTS]
    together = encode(ex, TEXTS[::-1])[::-1]
    assert len({len(ex._tokenizer(t)["input_ids"]) for t in TEXTS}) == len(TEXTS)  # the batch is padded
    for got, want in zip(together, alone):
        for key in ("mean", "last"):
            np.testing.assert_allclose(got[key], want[key], atol=1e-5)


def test_the_layer_subset_stores_only_the_chosen_hidden_states(llm_dir):
    every = encode(llm(llm_dir / "tiny-llama", layers="all"), TEXTS[:1])[0]
    default = llm(llm_dir / "tiny-llama", layers="-4:")
    chosen = llm(llm_dir / "tiny-llama", layers="1,3")
    out = encode(chosen, TEXTS[:1])[0]
    assert out["mean"].shape == out["last"].shape == (2, 32)
    np.testing.assert_allclose(out["mean"], every["mean"][[1, 3]], atol=1e-6)
    np.testing.assert_allclose(out["last"], every["last"][[1, 3]], atol=1e-6)
    assert chosen.provenance()["layers"] == [1, 3] and default.provenance()["layers"] == [0, 1, 2, 3]
    assert len({chosen.fingerprint, default.fingerprint, base.build(f"llm:{llm_dir / 'tiny-llama'}", {"store_dtype": "float32"}).fingerprint}) == 2
    with pytest.raises(ValueError, match="layer 4 out of range for 4 layers"):
        llm(llm_dir / "tiny-llama", layers="4")
    with pytest.raises(ValueError, match="cannot read 'last'"):
        base.build(f"llm:{llm_dir / 'tiny-llama'}", {"layers": "last"})


def test_an_empty_transcript_is_a_failure_of_that_clip_when_no_token_is_left(llm_dir):
    from extract.core.base import ClipError

    qwen, llama = llm(llm_dir / "tiny-qwen2"), llm(llm_dir / "tiny-llama")
    with pytest.raises(ClipError, match="empty transcript: the tokenizer gives no token"):
        qwen.prepare(Clip(id="c0", split="train", text=""), None)
    out = llama.extract_batch([None], [llama.prepare(Clip(id="c0", split="train", text=""), None)])[0]
    assert out.flag == "empty transcript" and out.arrays["n_tokens"] == 1  # BOS alone, pooled as it is
