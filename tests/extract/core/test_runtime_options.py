"""--device, --dtype and --batch-seconds reach only the extractors that use them, and the compute
precision (--dtype) never changes a storage precision."""
import numpy as np
from click.testing import CliRunner

from cache import open_feature
from extract.__main__ import main, parse_features
from extract.core import base


def run(corpus, cache, *args):
    result = CliRunner().invoke(main, ["--dataset", "r", "--clips", str(corpus), "--features",
                                       "e2el-spectrogram,face-dlib", "--cache", str(cache), "--quiet", *args])
    assert "Traceback" not in result.output, result.output
    return result


def test_dtype_leaves_storage_and_fingerprints_of_other_extractors_alone(folder_corpus, tmp_path):
    first = run(folder_corpus, tmp_path, "--dtype", "bfloat16", "--device", "cpu")
    assert first.exit_code == 1, first.output  # c.wav has no video: face-dlib fails it, nothing else
    pieces, dlib = open_feature("r", "e2el-spectrogram", tmp_path), open_feature("r", "face-dlib", tmp_path)
    assert pieces.status == ["ok", "ok", "ok"] and pieces.array().dtype == np.float16
    assert dlib.failures() == {"c": "no video stream in c.wav"}
    assert pieces.attrs["fingerprint"] == base.build("e2el-spectrogram").fingerprint
    assert dlib.attrs["fingerprint"] == base.build("face-dlib").fingerprint
    assert not {"dtype", "compute_dtype", "device"} & set(dlib.provenance["config"])  # dlib has none to take
    # another compute precision: the same cache, nothing to extract again, storage unchanged
    again = run(folder_corpus, tmp_path, "--dtype", "float32")
    assert again.exit_code == 1 and "extracted 0 clips" in again.output, again.output
    assert open_feature("r", "e2el-spectrogram", tmp_path).array().dtype == np.float16


def test_runtime_options_set_the_compute_fields_of_model_extractors_only():
    runtime = {"device": "cpu", "dtype": "bfloat16", "batch_seconds": 5.0}
    got = parse_features("ssl:org/speech,text-minilm,face-fer2013,e2el-spectrogram,face-dlib,fer=face-fer2013",
                         ("fer.compute_dtype=float32",), runtime)
    ssl, text, fer2013, pieces, dlib, fer = (got[k].config for k in
                                             ("ssl:org/speech", "text-minilm", "face-fer2013",
                                              "e2el-spectrogram", "face-dlib", "fer"))
    assert (ssl.device, ssl.compute_dtype, ssl.batch_seconds) == ("cpu", "bfloat16", 5.0)
    assert (text.device, text.compute_dtype, text.batch_tokens) == ("cpu", "bfloat16", 4096)  # tokens, not seconds
    assert (fer2013.compute_dtype, fer2013.batch_seconds) == ("bfloat16", 5.0)
    assert fer.compute_dtype == "float32"  # a --set wins over the runtime option
    assert pieces.store_dtype == "float16" and pieces == type(pieces)()
    assert dlib == type(dlib)()
    assert base.build("text-minilm", {"compute_dtype": "bfloat16"}).fingerprint != base.build("text-minilm").fingerprint


def test_storage_precision_of_the_spectrogram_pieces_is_an_option(folder_corpus, tmp_path):
    result = run(folder_corpus, tmp_path, "--set", "e2el-spectrogram.store_dtype=float32")
    pieces = open_feature("r", "e2el-spectrogram", tmp_path)
    assert pieces.array().dtype == np.float32, result.output
    refused = CliRunner().invoke(main, ["--dataset", "r", "--clips", str(folder_corpus), "--features",
                                        "e2el-spectrogram", "--set", "e2el-spectrogram.store_dtype=bfloat16",
                                        "--cache", str(tmp_path / "other")])
    assert refused.exit_code == 2 and "store_dtype 'bfloat16': choose one of" in refused.output
