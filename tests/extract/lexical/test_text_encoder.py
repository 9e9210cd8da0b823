"""text:<model> on the real pretrained MiniLM: layers, pooling, token sequences, batching, odd transcripts."""
import numpy as np
import pytest

from extract.core import base, models
from extract.lexical.text import TextConfig, sequence_layer
from manifests.table import Clip
from tests.extract.lexical.conftest import MINILM, reference_hidden_states

SENTENCES = ["I can't believe it, this is wonderful news!", "no.", "我今天真的很高兴",
             "Je suis très content, 但是 I am also tired 😀", "   "]


def encode(extractor, texts, **clip):
    clips = [Clip(id=f"c{i}", split="train", text=t, **clip) for i, t in enumerate(texts)]
    return extractor.extract_batch(clips, [extractor.prepare(c, None) for c in clips])


def test_masked_mean_of_the_last_layer_is_the_sentence_transformers_embedding(minilm):
    """sentence-transformers' all-MiniLM-L6-v2 embedding is the attention-masked mean of the last
    layer (then L2-normalised): computed here with plain transformers on one padded batch."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from extract.lexical.text import resolve_source

    source = resolve_source(MINILM)
    tokenizer, model = AutoTokenizer.from_pretrained(source), AutoModel.from_pretrained(source).eval()
    batch = tokenizer(SENTENCES[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        last = model(**batch).last_hidden_state                       # [4, T, 384]
    mask = batch["attention_mask"].unsqueeze(-1).float()
    reference = ((last * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).numpy()
    assert mask.sum(1).min() < mask.shape[1]  # the batch really is padded
    for out, expected in zip(encode(minilm, SENTENCES[:4]), reference):
        got = out.arrays["mean"][-1]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert np.dot(got, expected) / np.linalg.norm(got) / np.linalg.norm(expected) > 0.9999


def test_every_layer_embeddings_first_mean_and_first_token_against_plain_transformers(minilm):
    text = SENTENCES[0]
    hidden = reference_hidden_states(text)  # [7, T, 384]
    out = encode(minilm, [text])[0].arrays
    assert out["mean"].shape == out["first"].shape == (7, 384)  # L = num_hidden_layers + 1
    assert out["n_tokens"] == hidden.shape[1] and out["truncated"] == 0
    np.testing.assert_allclose(out["mean"], hidden.mean(1), atol=1e-5)
    np.testing.assert_allclose(out["first"], hidden[:, 0], atol=1e-5)
    assert np.abs(out["mean"][0] - out["mean"][-1]).max() > 0.1  # the layers really differ


def test_batch_composition_does_not_change_a_clip(minilm):
    target = SENTENCES[3]
    alone = encode(minilm, [target])[0].arrays
    long = "a much longer transcript that pads the target clip " * 6
    for company in ([target, "no."], [long, target], [target, *SENTENCES]):
        out = encode(minilm, company)[company.index(target)].arrays
        for key in ("mean", "first"):
            np.testing.assert_allclose(out[key], alone[key], atol=1e-5)


def test_token_sequence_keeps_the_first_k_tokens_of_the_chosen_layer(minilm):
    config = TextConfig(token_sequence=True, sequence_length=12, sequence_layer=-2, store_dtype="float32")
    extractor = base.BatchExtractor.__new__(type(minilm))
    extractor.__dict__.update(minilm.__dict__, config=config)
    short, long = SENTENCES[1], SENTENCES[0]
    out_short, out_long = (o.arrays for o in encode(extractor, [short, long]))
    h_short, h_long = reference_hidden_states(short), reference_hidden_states(long)
    n = h_short.shape[1]
    assert out_short["tokens"].shape == (12, 384) and out_short["token_mask"].tolist() == [1] * n + [0] * (12 - n)
    np.testing.assert_allclose(out_short["tokens"][:n], h_short[-2], atol=1e-5)
    assert (out_short["tokens"][n:] == 0).all()
    assert out_long["token_mask"].all() and h_long.shape[1] > 12
    np.testing.assert_allclose(out_long["tokens"], h_long[-2, :12], atol=1e-5)
    with pytest.raises(ValueError, match="sequence_layer 7 out of range for 7"):
        sequence_layer(tuple(h_short), 7)


def test_long_transcript_is_truncated_and_flagged(minilm):
    extractor = base.BatchExtractor.__new__(type(minilm))
    extractor.__dict__.update(minilm.__dict__, _limit=16)
    out = encode(extractor, [SENTENCES[0] * 3])[0]
    n_full = len(minilm._tokenizer(SENTENCES[0] * 3)["input_ids"])
    assert out.arrays["n_tokens"] == 16 and out.arrays["truncated"] == 1
    assert out.flag == f"transcript truncated to 16 of {n_full} tokens"
    # default max_length: 512 tokens, MiniLM's position embeddings
    assert minilm._limit == 512
    very_long = encode(minilm, ["word " * 2000])[0]
    assert very_long.arrays["n_tokens"] == 512 and very_long.flag.startswith("transcript truncated to 512 of 2002")


def test_empty_transcript_is_encoded_and_flagged(minilm):
    empty, blank = encode(minilm, ["", "   "])
    assert empty.arrays["n_tokens"] == 2 and empty.flag == "empty transcript"  # [CLS] [SEP]
    assert blank.flag == "empty transcript" and np.isfinite(blank.arrays["mean"]).all()


def test_mixed_language_transcript_tokenizes_to_known_pieces(minilm):
    out = encode(minilm, [SENTENCES[3]])[0]
    pieces = minilm._tokenizer.tokenize(SENTENCES[3])
    assert out.arrays["n_tokens"] == len(pieces) + 2 and out.flag == ""
    # MiniLM's uncased English vocabulary strips accents and has no 但, 是 or emoji: [UNK], not a crash
    assert pieces[:4] == ["je", "sui", "##s", "tres"] and pieces.count("[UNK]") == 3
    assert np.isfinite(out.arrays["mean"]).all()


def test_transcript_that_is_not_unicode_fails_the_clip_with_its_reason(minilm):
    clip = Clip(id="x", split="train", text="caf\udce9 latin-1 byte")  # surrogate-escaped decode
    with pytest.raises(ValueError, match="transcript is not valid Unicode"):
        minilm.prepare(clip, None)
    with pytest.raises(ValueError, match="no transcript in the manifest"):
        minilm.prepare(Clip(id="y", split="train", text=None), None)


def test_presets_are_aliases_of_the_text_kind(monkeypatch):
    # no hub here: every hub model is at one revision (tests/extract/test_models.py reads a real HF cache)
    monkeypatch.setattr(models, "hub_revision", lambda source: "0" * 40)
    macbert = base.build("chinese-macbert-large")
    assert macbert.source == "hfl/chinese-macbert-large" and macbert.primary == "mean"
    assert macbert.fingerprint == base.build("text:hfl/chinese-macbert-large").fingerprint
    assert macbert.fingerprint != base.build("text:hfl/chinese-macbert-base").fingerprint
    for name in ("text-minilm", "bert-base-chinese", "chinese-roberta-wwm-ext", "chinese-roberta-wwm-ext-large",
                 "chinese-macbert-base", "bert-base-multilingual-uncased"):
        assert name in base.REGISTRY and "text:<hub id or folder>" in base.known_names()


def test_runtime_options_stay_out_of_the_fingerprint_and_bad_options_are_refused():
    plain = base.build("text-minilm").fingerprint
    assert base.build("text-minilm", {"batch_tokens": "64", "device": "cpu"}).fingerprint == plain
    assert base.build("text-minilm", {"max_length": "128"}).fingerprint != plain
    with pytest.raises(ValueError, match="store_dtype 'int8'"):
        base.build("text-minilm", {"store_dtype": "int8"})
    with pytest.raises(ValueError, match="float16 autocast is not supported on CPU"):
        base.build("text-minilm", {"compute_dtype": "float16", "device": "cpu"}).setup()
