"""The one model-loading path and the random stand-ins."""
import pytest
from click.testing import CliRunner
from transformers import AutoFeatureExtractor, AutoModel

from extract.models import STAND_IN_NOTE, autocast, load_pretrained, model_identity, resolve_device
from extract.stand_ins import main


def test_stand_in_builds_and_loads_like_a_hub_model(tmp_path):
    result = CliRunner().invoke(main, ["--out", str(tmp_path), "--only", "tiny-hubert"])
    assert result.exit_code == 0 and STAND_IN_NOTE in result.output
    folder = tmp_path / "tiny-hubert"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-hubert"]
    model, processor = load_pretrained(str(folder), AutoModel, AutoFeatureExtractor)
    assert not model.training and processor.sampling_rate == 16000
    identity = model_identity(str(folder), model)
    assert identity["model"] == "tiny-hubert" and identity["stand_in"] == STAND_IN_NOTE
    assert str(tmp_path) not in str(identity)  # no path of this machine in a fingerprint
    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    assert model_identity(str(moved))["weights_sha256"] == identity["weights_sha256"]


def test_unknown_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="cannot load model 'nobody/no-such-model' as a hub id"):
        load_pretrained("nobody/no-such-model", AutoModel)


def test_device_and_precision_checks():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="not supported on CPU"):
        autocast(resolve_device("cpu"), "float16")


def test_an_unknown_model_is_refused_before_any_work(tmp_path, monkeypatch, folder_corpus):
    from extract.__main__ import main as extract_main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(extract_main, ["--dataset", "mine", "--clips", str(folder_corpus), "--quiet",
                                               "--features", "ssl:nobody/no-such-model", "--cache", str(tmp_path / "c")])
    assert result.exit_code == 2, result.output
    assert "ssl:nobody/no-such-model: cannot load" in result.output and "Traceback" not in result.output
