"""A command fuse.train cannot carry out exits 2 with a message naming the problem, before any
training and without writing its run folder."""
import dataclasses

import pytest
import torch

from tests.fuse.conftest import synthetic_corpus, train_cli, write_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The synthetic cache (features acoustic, visual, layers of dataset synth), read-only here."""
    manifest, arrays = synthetic_corpus()
    return write_cache(tmp_path_factory.mktemp("refusals") / "cache", "synth", manifest, arrays)


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training started for a command that should have been refused")

    monkeypatch.setattr("fuse.results.runs.train_systems", refuse)


def assert_refused(cache, tmp_path, args, *phrases):
    out = tmp_path / "run"
    result = train_cli("--cache", cache, "--out", out, "--quiet", *args)
    assert result.exit_code == 2, result.output
    for phrase in phrases:
        assert phrase in result.output, result.output
    assert not out.exists() and not list(tmp_path.glob(".run*"))
    return result.output


@pytest.mark.parametrize("args, phrases", [
    (["--features", "A=nosuch"], ["feature 'nosuch' is not cached", "cached: acoustic, layers, visual"]),
    (["--features", "A=egemaps;V=visual"], ["'egemaps' is not cached", "cached: acoustic, layers, visual"]),
    (["--modalities", "L"], ["no default lexical feature cached", '--features "L=FEATURE"']),
    (["--modalities", "A,X"], ["unknown modality 'X'", "A (acoustic)"]),
    (["--features", "A=acoustic;X=visual"], ["'X=visual'", "MODALITY one of A, L (T), V"]),
    (["--modalities", "A", "--features", "A=acoustic;V=visual"], ["--features gives V but --modalities A"]),
    (["--features", "A=layers@7"], ["layers: layer selector @7: layer 7 out of range for 4 layers"]),
    (["--features", "A=acoustic", "--model", "mlp", "--attention-scores", "raw"],
     ["model 'mlp' has no option attention_scores"]),
    (["--features", "A=acoustic", "--model", "lgbm", "--epochs", "5"], ["--model lgbm is not trained by epochs", "--epochs"]),
    (["--features", "A=acoustic", "--test-splits", "test1,nosuch"],
     ["--test-splits nosuch", "has splits train, test1, test3"]),
    (["--features", "A=acoustic", "--dataset", "nosuch"], ["no clip table for dataset 'nosuch'"]),
    ([], ["name the modalities to fuse"]),
], ids=["unknown-feature", "feature-not-cached", "no-default-cached", "unknown-letter", "unknown-letter-in-features",
        "features-outside-modalities", "layer-out-of-range", "option-of-another-model", "lgbm-epochs",
        "unknown-test-split", "unknown-dataset", "nothing-to-fuse"])
def test_bad_commands_are_refused(cache, tmp_path, no_training, args, phrases):
    assert_refused(cache, tmp_path, args, *phrases)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_a_cuda_device_without_cuda_is_refused(cache, tmp_path, no_training):
    assert_refused(cache, tmp_path, ["--features", "A=acoustic", "--device", "cuda"],
                   "--device cuda: no CUDA device is available")


@pytest.mark.parametrize("device, phrase", [("cuda:2", "this machine has 2 CUDA devices (cuda:0 to cuda:1)"),
                                            ("gpu", "expected auto, cpu, cuda or cuda:N")])
def test_a_device_this_machine_lacks_is_refused_before_any_work(cache, tmp_path, no_training, monkeypatch,
                                                                device, phrase):
    """As if two GPUs were there: cuda:1 would be taken (tests/extract/core/test_models.py), cuda:2
    is refused with exit 2 before any work, not a CUDA error mid-run."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert_refused(cache, tmp_path, ["--features", "A=acoustic", "--device", device], phrase)


def test_no_labelled_training_clips_is_refused(tmp_path, no_training):
    manifest, arrays = synthetic_corpus(n_train=12, n_test=6, n_unlabelled=0)
    manifest.clips = [dataclasses.replace(c, label=None, valence=None) if c.split == "train" else c
                      for c in manifest.clips]
    cache = write_cache(tmp_path / "cache", "synth", manifest, arrays)
    assert_refused(cache, tmp_path, ["--features", "A=acoustic"],
                   "dataset 'synth' has 0 labelled training clips usable with acoustic", "5 folds need at least 5")


def test_several_cached_datasets_need_dataset(tmp_path, no_training):
    manifest, arrays = synthetic_corpus(n_train=12, n_test=6, n_unlabelled=0)
    for name in ("synth", "synth-noisy"):
        write_cache(tmp_path / "cache", name, manifest, arrays)
    assert_refused(tmp_path / "cache", tmp_path, ["--features", "A=acoustic"],
                   "several datasets are cached", "(synth, synth-noisy)", "choose one with --dataset")
