"""asr:<model> end to end on real espeak-ng speech with the tiny random-initialised CTC stand-in
(its transcripts are random letters), then text features computed from the cached transcripts."""
import numpy as np
import pytest

from cache import open_feature
from extract.core.models import STAND_IN_NOTE
from extract.lexical.asr import has_speech
from tests.extract.lexical.conftest import extract, mer_corpus
from tests.media import speech


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, speech_16k):
    audio = {"spoken": speech_16k, "other": speech("Where did you put my keys", pitch=70),
             "given": speech_16k[:24000], "silent": np.zeros(16000, np.float32),
             "blip": speech_16k[8000:8800]}  # 0.05 s: too short for a word
    return mer_corpus(tmp_path_factory.mktemp("asr") / "corpus", {"given": b"I was told this one"}, audio)


def run(corpus, cache, *args):
    return extract("--dataset", "m", "--layout", "mer2023", "--root", str(corpus), *args, cache=cache)


def test_transcript_table_with_provenance_and_empty_transcripts_without_speech(corpus, tiny_asr, tmp_path):
    result = run(corpus, tmp_path, "--features", f"asr:{tiny_asr}")
    assert result.exit_code == 0, result.output
    feature = "asr:tiny-asr-ctc"  # named after the model folder, not its path
    table = open_feature("m", feature, tmp_path)
    texts = dict(zip(table.ids, table.array("transcript")))
    assert table.ids == ["blip", "given", "other", "silent", "spoken"] and table.shape == (5,)
    assert all(isinstance(t, str) for t in texts.values())
    # random-initialised stand-in: its text is random letters, but there is text for speech
    assert texts["spoken"] and set(texts["spoken"]) <= set("abcdefghijklmnopqrstuvwxyz ")
    assert texts["silent"] == texts["blip"] == ""
    status = dict(zip(table.ids, zip(table.status, table.reasons)))
    assert status["silent"] == ("flagged", "silent audio; empty transcript (no speech)")
    assert status["blip"] == ("flagged", "empty transcript (no speech)") and status["spoken"][0] == "ok"
    model = table.provenance["model"]
    assert model["model"] == "tiny-asr-ctc" and model["stand_in"] == STAND_IN_NOTE and model["weights_sha256"]
    assert table.provenance["extractor"] == "asr" and table.provenance["feature"] == feature


def test_batching_does_not_change_transcripts(corpus, tiny_asr, tmp_path):
    tables = []
    for budget in ("0.1", "60"):  # one clip per pass, then all clips in one padded pass
        run(corpus, tmp_path / budget, "--features", f"asr=asr:{tiny_asr}", "--batch-seconds", budget)
        tables.append(open_feature("m", "asr", tmp_path / budget).array("transcript").tolist())
    assert tables[0] == tables[1]


def test_text_features_run_from_cached_transcripts(corpus, tiny_asr, tmp_path, minilm):
    run(corpus, tmp_path, "--features", f"asr=asr:{tiny_asr}")
    result = run(corpus, tmp_path, "--features", "text-minilm", "--set", "text-minilm.transcripts=asr")
    assert result.exit_code == 0, result.output
    asr, text = open_feature("m", "asr", tmp_path), open_feature("m", "text-minilm", tmp_path)
    assert text.shape == (5, 7, 384)
    assert dict(zip(text.ids, text.status)) == {"blip": "flagged", "given": "ok", "other": "ok",
                                                "silent": "flagged", "spoken": "ok"}
    assert text.status_of("silent") == ("flagged", "empty transcript")
    assert text.provenance["transcripts"]["asr"] == {"feature": "asr", "fingerprint": asr.attrs["fingerprint"]}
    # a manifest transcript wins; the other clips are encoded from their cached ASR text
    expected = {cid: asr.array("transcript", ids=[cid])[0] for cid in ("spoken", "other")} | {"given": "I was told this one"}
    for cid, transcript in expected.items():
        reference = minilm.extract_batch([None], [minilm.prepare(_clip(cid, transcript), None)])[0]
        np.testing.assert_allclose(text.array(ids=[cid])[0], reference.arrays["mean"], atol=2e-3)


def test_missing_or_changed_transcripts_refuse_the_run(corpus, tiny_asr, tmp_path):
    refused = run(corpus, tmp_path, "--features", "text-minilm", "--set", "text-minilm.transcripts=asr")
    assert refused.exit_code == 2 and "transcribe first with" in refused.output
    run(corpus, tmp_path, "--features", f"asr=asr:{tiny_asr}")
    assert run(corpus, tmp_path, "--features", "text-minilm", "--set", "text-minilm.transcripts=asr").exit_code == 0
    # transcribed again with another config: the cached text features are stale, and refused as such
    run(corpus, tmp_path, "--features", f"asr=asr:{tiny_asr}", "--set", "asr.compute_dtype=bfloat16", "--overwrite")
    stale = run(corpus, tmp_path, "--features", "text-minilm", "--set", "text-minilm.transcripts=asr")
    assert stale.exit_code == 2 and "already cached" in stale.output


def test_has_speech_needs_a_tenth_of_a_second_above_the_silence_floor(speech_16k):
    assert has_speech(speech_16k) and not has_speech(speech_16k[:1599])
    assert not has_speech(np.full(16000, 5e-5, np.float32))


def _clip(cid, text):
    from manifests.table import Clip

    return Clip(id=cid, split="train", text=text)


def tiny_whisper(folder):
    """A random-initialised Whisper (1 + 1 layers, width 32, letters a-z): its transcripts are random."""
    import json

    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)

    vocab = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyzĠ")} | {"<|endoftext|>": 27}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    specials = ["<|startoftranscript|>", "<|en|>", "<|zh|>", "<|transcribe|>", "<|translate|>", "<|notimestamps|>"]
    tokenizer = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token="<|endoftext|>",
                                 bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    ids = dict(zip(specials, tokenizer.convert_tokens_to_ids(specials)))
    special = dict(decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=27, pad_token_id=27, bos_token_id=27)
    WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_target_positions=64, **special),
    ).save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)
    GenerationConfig(**special, is_multilingual=True, no_timestamps_token_id=ids["<|notimestamps|>"],
                     lang_to_id={k: ids[k] for k in ("<|en|>", "<|zh|>")},
                     task_to_id={k: ids[f"<|{k}|>"] for k in ("transcribe", "translate")}).save_pretrained(folder)


def test_whisper_style_models_generate_transcripts(tmp_path, speech_16k):
    from extract.core import base

    tiny_whisper(tmp_path)
    for language in ("en", ""):  # a given language, or Whisper's own detection
        asr = base.build(f"asr:{tmp_path}", {"language": language, "max_new_tokens": "12"})
        asr.setup()
        spoken, silent = asr.extract_batch([None, None], [speech_16k, np.zeros(16000, np.float32)])
        text = spoken.arrays["transcript"].item()  # random-initialised: random letters, maybe none
        assert isinstance(text, str) and len(text) <= 12 and set(text) <= set("abcdefghijklmnopqrstuvwxyz ")
        assert spoken.flag == ("" if text else "empty transcript")
        assert silent.arrays["transcript"].item() == "" and silent.flag == "empty transcript (no speech)"
        assert asr.transcribe([speech_16k]) == [text]  # batch of one, same text


def test_whisper_only_options_on_a_ctc_model_are_refused(corpus, tiny_asr, tmp_path):
    result = run(corpus, tmp_path, "--features", f"asr=asr:{tiny_asr}", "--set", "asr.language=zh")
    assert result.exit_code == 2, result.output
    assert "language: Whisper-style models only" in result.output
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").glob("*.parts"))
