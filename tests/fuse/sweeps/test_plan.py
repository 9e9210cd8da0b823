"""A sweep's defaults are what is cached: every utterance-level feature per modality (its modality
from the extractor family or `cache import-npy --modality`), per-layer ones with a few layer
choices, sequence inputs left out; `--dry-run` prints the plan with its estimated time and writes
nothing; a budgeted sweep runs every unimodal baseline first and names the trials it left out."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cache import open_feature
from cache.__main__ import main as cache_main
from fuse.inputs.catalogue import CachedFeature, layer_specs
from fuse.sweep import main as sweep_main
from fuse.sweeps.budget import ranked_combinations
from fuse.sweeps.plan import plan

from tests.fuse.conftest import synthetic_corpus, write_cache

TINY = "epochs=3;folds=2;hidden=16"


def cached_like_stage1(root, features: dict[str, str]) -> Path:
    """The synthetic corpus cached under stage 1's feature names ({name: which synthetic array}), so
    that each feature's provenance names its extractor family; `face-crops` as uint8 crops."""
    manifest, arrays = synthetic_corpus(n_train=36, n_test=6, n_unlabelled=0)
    chosen = {name: arrays[source] for name, source in features.items()}
    chosen["face-crops"] = {cid: np.zeros((2, 4, 4, 3), np.uint8) for cid in arrays["visual"]}
    return write_cache(root, "synth", manifest, chosen)


def sweep(cache, tmp_path, *args):
    args = ["--cache", cache, "--dataset", "synth", "--grid", TINY, "--runs", tmp_path / "runs",
            "--out", tmp_path / "out", "--quiet", *args]
    return CliRunner().invoke(sweep_main, [str(a) for a in args], catch_exceptions=False)


def import_npy(cache, tmp_path, name, *args):
    folder = tmp_path / name
    folder.mkdir()
    for i in range(42):
        np.save(folder / f"clip{i:04d}.npy", np.random.default_rng(i).normal(size=6).astype(np.float32))
    result = CliRunner().invoke(cache_main, ["import-npy", str(folder), "--dataset", "synth", "--cache", str(cache),
                                             *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def snapshot(folder: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Two acoustic vectors and a per-layer speech model, a per-layer text encoder, two face
    embeddings, face crops (a sequence input), and two imported folders: one with --modality V,
    one without."""
    base = tmp_path_factory.mktemp("plan")
    root = cached_like_stage1(base / "cache", {"is09": "acoustic", "egemaps": "visual", "hubert-large": "layers",
                                               "text-minilm": "layers", "face-fer2013": "visual",
                                               "face-dlib": "acoustic"})
    import_npy(root, base, "manet_utt", "--modality", "V")
    import_npy(root, base, "mystery_utt")
    return root


def test_the_dry_run_lists_every_cached_feature_counts_the_trials_and_writes_nothing(cache, tmp_path):
    before = snapshot(cache)
    result = sweep(cache, tmp_path, "--modalities", "A,L,V", "--workers", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # written out by hand from the fixture: 4-layer models enter at their last layer and last four
    expected = {"A": ["egemaps", "hubert-large@-1", "hubert-large@-4:", "is09"],
                "L": ["text-minilm@-1", "text-minilm@-4:"], "V": ["face-dlib", "face-fer2013", "manet_utt"]}
    for m, specs in expected.items():
        assert f"  {m} ({len(specs)}): {', '.join(specs)}" in lines
    n = {m: len(s) for m, s in expected.items()}
    total = math.prod(k + 1 for k in n.values()) - 1    # at most one feature per modality, not none
    unimodal, trimodal = sum(n.values()), math.prod(n.values())
    assert lines[0].startswith(f"plan: {total} trials of attention, 1 seed(s) each: {unimodal} unimodal "
                               f"(A 4, L 2, V 3), {total - unimodal - trimodal} bimodal (AL 8, AV 12, LV 6), "
                               f"{trimodal} trimodal (ALV {trimodal})")
    assert "  left to the sequence models: face-crops" in lines
    assert any(line.startswith("  modality unknown, not tried: mystery_utt") for line in lines)
    assert f"finished: 0 of {total} (skipped); to run: {total}" in lines
    assert any(line.startswith("estimated time: ") and line.endswith(
        f"on 2 worker(s) ({total} trials: 0 from finished runs of their shape, {total} from 2 timed epochs)")
        for line in lines), lines
    assert snapshot(cache) == before
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_import_npy_records_the_modality_a_sweep_reads(cache):
    assert open_feature("synth", "manet_utt", root=cache).provenance["modality"] == "V"
    assert "modality" not in open_feature("synth", "mystery_utt", root=cache).provenance


def test_auto_mixes_with_named_features(cache, tmp_path):
    result = sweep(cache, tmp_path, "--modalities", "A,L,V", "--features", "A=auto;V=face-dlib", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "  A (4): egemaps, hubert-large@-1, hubert-large@-4:, is09" in lines
    assert "  L (2): text-minilm@-1, text-minilm@-4:" in lines      # not named: every cached one
    assert "  V (1): face-dlib" in lines
    assert lines[0].startswith(f"plan: {5 * 3 * 2 - 1} trials")


def test_layer_choices_are_the_last_layer_the_last_four_and_the_baselines():
    hubert = CachedFeature("hubert-large", "A", layers=25)
    assert layer_specs("mer2023", "A", hubert) == ["hubert-large@-1", "hubert-large@-4:"]
    # the demo's text baseline is its last layer; a 3-layer model's last four are its three
    assert layer_specs("demo", "L", CachedFeature("text-minilm", "L", layers=3)) == ["text-minilm@-1",
                                                                                     "text-minilm@-4:"]
    assert layer_specs("demo", "A", CachedFeature("one-layer", "A", layers=1)) == ["one-layer@-1"]


@pytest.fixture
def no_report_plots(monkeypatch, no_plots):
    from fuse.results import plots

    monkeypatch.setattr(plots, "pair_heatmap", lambda *args, **kwargs: None)
    monkeypatch.setattr(plots, "fusion_gain", lambda *args, **kwargs: None)


def test_a_budget_too_short_for_everything_still_runs_every_baseline_and_names_what_it_left_out(tmp_path,
                                                                                               no_report_plots):
    cache = cached_like_stage1(tmp_path / "cache", {"is09": "acoustic", "egemaps": "visual",
                                                     "text-minilm": "acoustic", "face-fer2013": "visual",
                                                     "face-dlib": "acoustic"})
    result = sweep(cache, tmp_path, "--modalities", "A,L,V", "--budget", "0.001s", "--top-k", "0")
    assert result.exit_code == 0, result.output
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    unimodal = board[board["n_modalities"] == 1]
    features = [r.dropna().iloc[0] for _, r in unimodal[["A", "L", "V"]].iterrows()]
    assert sorted(features) == ["egemaps", "face-dlib", "face-fer2013", "is09", "text-minilm"]
    trials = plan("synth", cache, tmp_path / "runs", ["A", "L", "V"], None, ["attention"],
                  {"epochs": ["3"], "folds": ["2"], "hidden": ["16"]})
    combinations = [t for t in trials.trials.values() if len(t.features) > 1]
    assert len(board) == 5 and len(combinations) == 3 * 2 * 3 - 1 - 5
    left = result.output.split(f"--budget reached: {len(combinations)} trial(s) left out")[1].splitlines()[1:]
    assert sorted(line.strip() for line in left) == sorted(t.label() for t in combinations)

    # the queue after the baselines: the best combination of each modality set, then the rest, by
    # the sum of their parts' unimodal scores
    score = {(m, r[m]): r["cv_combined"] for _, r in unimodal.iterrows() for m in "ALV" if isinstance(r[m], str)}
    total = {t: sum(score[part] for part in t.features) for t in combinations}
    ranked = list(ranked_combinations(trials.trials, tmp_path / "runs").values())
    heads = {max((t for t in combinations if t.modalities == s), key=total.get) for s in ("AL", "AV", "LV", "ALV")}
    assert set(ranked[:4]) == heads
    assert [total[t] for t in ranked[:4]] == sorted((total[t] for t in heads), reverse=True)
    assert [total[t] for t in ranked[4:]] == sorted((total[t] for t in ranked[4:]), reverse=True)

    again = sweep(cache, tmp_path, "--modalities", "A,L,V", "--dry-run")
    assert f"finished: 5 of {len(trials.trials)} (skipped); to run: {len(combinations)}" in again.output
