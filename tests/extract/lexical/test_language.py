"""The transcript in the text encoder's language: MER 2025's subtitle_chieng.csv gives Chinese and
English; the encoder reads the one its `language` option names (Chinese by default), and the
language is part of the feature's fingerprint."""
import numpy as np
import pytest

from cache import open_feature
from tests.extract.lexical.conftest import extract, reference_hidden_states
from tests.media import write_clip

SUBTITLES = {"t1": ("我今天很高兴", "I am very happy today"), "c1": ("你好", "hello there")}


@pytest.fixture
def release(tmp_path):
    """A MER 2025 Track 1 release of one training clip and one candidate, subtitled in both languages."""
    root = tmp_path / "mer2025-dataset"
    (root / "video").mkdir(parents=True)
    for name in SUBTITLES:
        write_clip(root / "video" / f"{name}.mp4", np.full(1600, 0.1, np.float32))
    (root / "track1_train_disdim.csv").write_text("name,discrete\nt1,happy\n")
    (root / "track_all_candidates.csv").write_text("name\nc1\n")
    (root / "subtitle_chieng.csv").write_text(
        "name,chinese,english\n" + "".join(f"{n},{zh},{en}\n" for n, (zh, en) in SUBTITLES.items()), encoding="utf-8")
    return root


def test_the_encoder_reads_its_language_and_caches_it_apart(release, tmp_path):
    cache = tmp_path / "cache"
    result = extract("--dataset", "mer2025", "--root", str(release), "--features", "text-minilm,en=text-minilm",
                     "--set", "en.language=english", "--set", "text-minilm.store_dtype=float32",
                     "--set", "en.store_dtype=float32", cache=cache)
    assert result.exit_code == 0, result.output
    for feature, column in (("text-minilm", 0), ("en", 1)):
        cached = open_feature("mer2025", feature, cache)
        for name, texts in SUBTITLES.items():
            expected = reference_hidden_states(texts[column]).mean(1)  # [L, D]: all tokens, as the extractor
            np.testing.assert_allclose(cached.array(ids=[name])[0], expected, atol=2e-4)
    zh, en = open_feature("mer2025", "text-minilm", cache), open_feature("mer2025", "en", cache)
    assert zh.attrs["fingerprint"] != en.attrs["fingerprint"]
    assert en.provenance["config"]["language"] == "english"


def test_a_language_the_transcripts_lack_is_refused_before_any_work(release, tmp_path):
    (release / "subtitle_chieng.csv").write_text("name,english\nt1,hello\nc1,hi\n")
    cache = tmp_path / "cache"
    result = extract("--dataset", "mer2025", "--root", str(release), "--features", "text-minilm", cache=cache)
    assert result.exit_code == 2
    assert ("text-minilm: language=chinese, but subtitle_chieng.csv has no chinese transcript (its transcript "
            "columns: english); choose the language with --set text-minilm.language=LANGUAGE") in result.output
    assert not (cache / "mer2025").exists()
    result = extract("--dataset", "mer2025", "--root", str(release), "--features", "text-minilm",
                     "--set", "text-minilm.language=french", cache=cache)
    assert result.exit_code == 2 and "language='french': choose one of chinese, english" in result.output
