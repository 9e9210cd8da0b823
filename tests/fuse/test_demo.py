"""End to end on the demo cache, extracted by `python -m extract` from the demo corpus (real
synthesized speech, a real face): each modality alone and together with the defaults, where
fusion beats every single modality (which happens only when cache, ids and labels line up), and
the sequence model on the cached crops, spectrogram pieces and text vectors."""
import json

import numpy as np
import pandas as pd
import pytest

from cache import open_clips
from fuse.models import make_config
from fuse.predict import main as predict_main
from fuse.problem import load_problem
from fuse.specs import parse_modalities
from fuse.training import TrainRequest, run_training

from .test_e2el import TINY
from .test_sequence_models import TINY as SEQUENCE_TINY

pytestmark = pytest.mark.usefixtures("no_plots")


def _train(cache, out, modalities, model="attention", config=None, **options):
    request = TrainRequest.from_options(model=model, dataset="demo", cache_dir=str(cache), out=str(out),
                                        modalities=parse_modalities(modalities), quiet=True, **options)
    if config:
        request.configs = [make_config(model, **config)]
    return run_training(request).metrics


def test_fusing_a_l_v_beats_each_modality_alone(demo_cache, tmp_path):
    cv = {m: _train(demo_cache, tmp_path / m.replace(",", ""), m, seeds=3)["cv"] for m in ("A", "L", "V", "A,L,V")}
    fused = cv.pop("A,L,V")
    for modality, alone in cv.items():
        for metric in ("weighted_f1", "combined"):
            assert fused[metric]["mean"] > alone[metric]["mean"], (modality, metric, fused[metric], alone[metric])


@pytest.mark.parametrize("modalities", ["V", "A", "T", "V,A,T"])
def test_e2el_runs_on_the_cached_sequences(demo_cache, tmp_path, modalities):
    m = _train(demo_cache, tmp_path / "run", modalities, model="e2el", config=TINY, epochs=1)
    expected = {"V": {"face-crops#crops": "V", "face-crops#mask": "V"},
                "A": {"e2el-spectrogram#pieces": "A", "e2el-spectrogram#n_pieces": "A"},
                "T": {"text-minilm#first@-1": "L"}}
    assert m["config"]["features"] == {k: v for mod in modalities.split(",") for k, v in expected[mod].items()}
    assert m["config"]["train"]["lr"] == 1e-4 and m["config"]["train"]["batch_size"] == 16
    assert m["config"]["train"]["patience"] == 3  # SAMSEMO's run.py: Lightning's EarlyStopping
    assert not any(json.loads((tmp_path / "run" / "model.json").read_text())["standardize"])  # normalised inside
    clips = open_clips("demo", demo_cache)
    if modalities == "V":  # crops stay uint8 in memory (4x smaller), made float32 per batch
        problem = load_problem("demo", [("V", "face-crops#crops")], root=demo_cache)
        assert problem.blocks[0].dtype == np.uint8 and problem.blocks[0].shape[1:] == (16, 48, 48, 3)
    for split in ("test1", "test2"):
        frame = pd.read_csv(tmp_path / "run" / "predictions" / f"{split}.csv")
        assert sorted(frame["name"]) == sorted(clips.split(split))
        assert frame["valence"].notna().all()
    if modalities == "V,A,T":  # the saved fold models score the dataset again, as in training
        from click.testing import CliRunner

        result = CliRunner().invoke(predict_main, ["--run", str(tmp_path / "run"), "--dataset", "demo", "--cache",
                                                   str(demo_cache), "--out", str(tmp_path / "again")])
        assert result.exit_code == 0, result.output
        again, first = (pd.read_csv(r / "predictions" / "test1.csv") for r in (tmp_path / "again", tmp_path / "run"))
        assert again["name"].tolist() == first["name"].tolist()
        assert again["discrete"].tolist() == first["discrete"].tolist()
        pd.testing.assert_series_equal(again["valence"], first["valence"], atol=1e-5)


SEQUENCE_INPUTS = {
    "crossbert": {"V": ["face-crops-crossbert#crops", "face-crops-crossbert#mask"], "A": ["mfcc#stats", "egemaps"],
                  "T": ["text-minilm#tokens", "text-minilm#token_mask"]},
    "coattention": {"V": ["face-crops#crops", "face-crops#mask"], "A": ["logmel#frames", "logmel#frames.length"],
                    "T": ["text-minilm#tokens", "text-minilm#token_mask", "text-minilm#first@-1"]}}


@pytest.mark.parametrize("modalities", ["V", "A", "T", "V,A,T"])
@pytest.mark.parametrize("model", ["crossbert", "crossbert-interaction", "coattention"])
def test_sequence_models_run_on_the_cached_sequences(demo_cache, tmp_path, model, modalities):
    m = _train(demo_cache, tmp_path / "run", modalities, model=model, config=SEQUENCE_TINY[model], epochs=1)
    inputs = SEQUENCE_INPUTS["coattention" if model == "coattention" else "crossbert"]
    expected = {spec: "L" if mod == "T" else mod for mod in modalities.split(",") for spec in inputs[mod]}
    assert m["config"]["features"] == expected
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    vectors = {"mfcc#stats", "egemaps", "text-minilm#first@-1"}  # standardized; sequences and masks not
    assert meta["standardize"] == [spec in vectors for spec in meta["specs"]]
    clips = open_clips("demo", demo_cache)
    for split in ("test1", "test2"):
        frame = pd.read_csv(tmp_path / "run" / "predictions" / f"{split}.csv")
        assert sorted(frame["name"]) == sorted(clips.split(split)) and frame["valence"].notna().all()
    if modalities == "V,A,T" and model != "crossbert-interaction":  # ragged inputs cut as in training
        from click.testing import CliRunner

        result = CliRunner().invoke(predict_main, ["--run", str(tmp_path / "run"), "--dataset", "demo", "--cache",
                                                   str(demo_cache), "--out", str(tmp_path / "again")])
        assert result.exit_code == 0, result.output
        again, first = (pd.read_csv(r / "predictions" / "test1.csv") for r in (tmp_path / "again", tmp_path / "run"))
        assert again["discrete"].tolist() == first["discrete"].tolist()
        pd.testing.assert_series_equal(again["valence"], first["valence"], atol=1e-5)


def test_a_sweep_trains_a_sequence_model_on_its_own_inputs(demo_cache, tmp_path):
    from click.testing import CliRunner

    from fuse.sweep import main as sweep_main

    args = ["--dataset", "demo", "--cache", str(demo_cache), "--modalities", "A,T", "--models", "attention,coattention",
            "--grid", "epochs=1;folds=2", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
            "--top-k", "0", "--quiet"]
    result = CliRunner().invoke(sweep_main, args)
    assert result.exit_code == 0, result.output
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert sorted(board["model"]) == ["attention"] * 3 + ["coattention"] * 3
    # one seed per trial: scores without a spread (a std of 0 over one seed says nothing)
    assert board["seeds"].tolist() == [1] * 6
    assert "±" not in (tmp_path / "out" / "table3.md").read_text()
    best = (tmp_path / "out" / "leaderboard.md").read_text().splitlines()[2]
    assert "±" not in best and f"| {board['cv_combined'][0]:.3f} |" in best
    pooled = {"A": ["egemaps"], "L": ["text-minilm@-1"]}
    own = {"A": SEQUENCE_INPUTS["coattention"]["A"], "L": SEQUENCE_INPUTS["coattention"]["T"]}
    sets = {"attention": [], "coattention": []}
    for run, model in zip(board["run"], board["model"]):
        features = json.loads((tmp_path / "runs" / run / "metrics.json").read_text())["config"]["features"]
        present = set(features.values())
        specs = own if model == "coattention" else pooled
        assert features == {spec: m for m in sorted(present) for spec in specs[m]}, (model, features)
        sets[model].append("".join(sorted(present)))
    assert sorted(sets["attention"]) == sorted(sets["coattention"]) == ["A", "AL", "L"]
