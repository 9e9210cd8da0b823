"""Training-only clips: augmented copies join only the folds that train on their origin clip, pseudo-
labelled clips join every fold's training rows, and neither is ever validated or scored."""
import json

import numpy as np
import pytest

from cache import open_clips
from cache.clips import ClipTable, write_table
from fuse import loop
from fuse.extras import NO_ORIGIN, member_rows
from manifests.table import Clip, Manifest

from .conftest import synthetic_corpus, train_cli, write_cache

ARGS = ["--features", "A=acoustic;V=visual", "--epochs", "3", "--seeds", "2", "--quiet"]


def test_member_rows_hold_the_copies_of_training_clips_and_never_of_validation_clips():
    tr = np.arange(20) + 5
    folds = np.arange(20) % 4
    copies = np.arange(100, 140)                      # two copies of each training clip
    origin = np.concatenate([tr, tr])
    extra_rows = np.concatenate([copies, [200, 201]])  # and two clips with no origin (pseudo-labelled)
    extra_origin = np.concatenate([origin, [NO_ORIGIN, NO_ORIGIN]])
    for k in range(4):
        got = set(member_rows(tr, folds, k, extra_rows, extra_origin).tolist())
        validation = set(tr[folds == k].tolist())
        expected = set(tr[folds != k].tolist()) | {200, 201}
        expected |= {int(c) for c, o in zip(copies, origin) if o not in validation}
        assert got == expected
        assert not got & validation


@pytest.fixture
def augmented_cache(tmp_path):
    """The synthetic corpus, and `synth-aug`: a noisy copy of every third training clip, each
    linked to its origin in the clip table, plus one copy of a test1 clip (never usable)."""
    manifest, arrays = synthetic_corpus()
    root = write_cache(tmp_path / "cache", "synth", manifest, arrays)
    rng = np.random.default_rng(5)
    originals = [c for c in manifest if c.split == "train"][::3] + [next(c for c in manifest if c.split == "test1")]
    clips = [Clip(f"{c.id}-aug", "train", label=c.label, valence=c.valence) for c in originals]
    copied = {f: {f"{c.id}-aug": (v[c.id] + rng.normal(scale=0.1, size=v[c.id].shape)).astype(np.float32)
                  for c in originals} for f, v in arrays.items()}
    aug = Manifest("synth-aug", clips)
    write_cache(root, "synth-aug", aug, copied)
    table = open_clips("synth-aug", root=root)
    write_table(ClipTable("synth-aug", table.ids, table.split_of(), [c.label for c in aug], table.valence(),
                          table.classes, False, table.manifest_fingerprint, source="test",
                          origins=[cid.removesuffix("-aug") for cid in table.ids]), root)
    return root, {f"{c.id}-aug": c.id for c in originals}


def _record_members(monkeypatch):
    """Each training run's (problem, data) as the loop builds them."""
    seen, real = [], loop._Data.__init__

    def recording(self, problem, *args, **kwargs):
        real(self, problem, *args, **kwargs)
        seen.append((problem, self))

    monkeypatch.setattr(loop._Data, "__init__", recording)
    return seen


def test_augmented_copies_train_only_in_the_folds_of_their_origin(augmented_cache, tmp_path, monkeypatch, no_plots):
    root, origin_of = augmented_cache
    seen = _record_members(monkeypatch)
    run = tmp_path / "run"
    result = train_cli("--cache", root, "--dataset", "synth", "--augment", "synth-aug", *ARGS, "--out", run)
    assert result.exit_code == 0, result.output
    problem, data = seen[0]
    cv = np.load(run / "scores" / "cv.npz")
    test1_copy = "clip0090-aug"                       # clip0090 is the first test1 clip
    assert origin_of[test1_copy] == "clip0090"
    usable = {c: o for c, o in origin_of.items() if c != test1_copy}
    config = json.loads((run / "config.json").read_text())
    assert config["augment"] == "synth-aug" and config["training_only_clips"] == len(usable)
    assert test1_copy not in set(problem.ids)            # a copy of a test clip never joins
    S, K = cv["folds"].shape[0], 5
    for e in range(S * K):
        s, k = divmod(e, K)
        rows = data.train_rows[e].numpy()
        trained = set(problem.ids[data.rows[rows[rows >= 0]]])
        validation = set(cv["ids"][cv["folds"][s] == k])
        copies = {c for c in trained if c in origin_of}
        assert not {origin_of[c] for c in copies} & validation
        assert copies == {c for c, o in usable.items() if o not in validation}
    # copies are never scored: the predictions hold the corpus's clips only
    assert "(train-only)" not in json.loads((run / "metrics.json").read_text())


def test_lgbm_trains_on_the_same_augmented_rows(augmented_cache, tmp_path, lgbm_one_thread, no_plots):
    root, origin_of = augmented_cache
    run = tmp_path / "run"
    result = train_cli("--cache", root, "--dataset", "synth", "--augment", "synth-aug", "--model", "lgbm",
                       "--seeds", "1", "--quiet", "--features", "A=acoustic;V=visual", "--out", run)
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["training_only_clips"] == len(origin_of) - 1


def test_pseudo_labelled_clips_join_every_fold_with_their_pseudo_labels(synth_cache, tmp_path, monkeypatch, no_plots):
    seen = _record_members(monkeypatch)
    pseudo = tmp_path / "pseudo.csv"
    pseudo.write_text("id,split,label,score\nclip0114,test3,happy,0.9\nclip0115,test3,sad,0.8\n")
    run = tmp_path / "run"
    result = train_cli("--cache", synth_cache, "--pseudo", pseudo, *ARGS, "--out", run)
    assert result.exit_code == 0, result.output
    problem, data = seen[0]
    for e in range(data.train_rows.shape[0]):
        rows = data.train_rows[e].numpy()
        trained = problem.ids[data.rows[rows[rows >= 0]]]
        assert {"clip0114#pseudo", "clip0115#pseudo"} <= set(trained)
    for cid, label in (("clip0114#pseudo", "happy"), ("clip0115#pseudo", "sad")):
        assert problem.classes[problem.labels[list(problem.ids).index(cid)]] == label
    cv = np.load(run / "scores" / "cv.npz")
    assert not {c for c in cv["ids"] if "#pseudo" in c}         # never validated
    assert json.loads((run / "metrics.json").read_text())["clips"]["test3"] == 6   # still scored as test3


@pytest.mark.parametrize("rows,phrase", [("clip0003,train,happy,0.9", "clip0003 is a labelled training clip"),
                                         ("clip0114,test3,joyful,0.9", "clip0114 has label 'joyful'"),
                                         ("clip0114,test3,happy,0.9\nclip0095,test1,sad,0.8",
                                          "clip0095 is a labelled clip of split test1: training on it would leak "
                                          "its label into that split's scores")])
def test_bad_pseudo_label_files_are_refused(synth_cache, tmp_path, rows, phrase):
    pseudo = tmp_path / "pseudo.csv"
    pseudo.write_text("id,split,label,score\n" + rows + "\n")
    result = train_cli("--cache", synth_cache, "--pseudo", pseudo, *ARGS, "--out", tmp_path / "run")
    assert result.exit_code == 2 and phrase in result.output
    assert not (tmp_path / "run").exists()


def test_an_origin_column_of_a_clips_csv_reaches_the_cached_clip_table(tmp_path):
    from dataclasses import asdict

    from cache.clips import write_clips
    from manifests import load_manifest
    from tests.conftest import write_table
    from tests.media import speech, write_clip

    write_clip(tmp_path / "x.wav", speech(), 16000)
    rows = [dict(id="orig", path="x.wav", split="train", label="happy"),
            dict(id="orig~noise", path="x.wav", split="train", label="happy", origin="orig")]
    manifest = load_manifest("aug", clips=write_table(tmp_path / "clips.csv", rows))
    write_clips(manifest, root=tmp_path / "cache")
    assert open_clips("aug", root=tmp_path / "cache").origins() == ["", "orig"]
    # a table without origins hashes as it did before the column existed
    plain = load_manifest("plain", clips=write_table(tmp_path / "plain.csv", rows[:1]))
    assert "origin" not in (tmp_path / "plain.csv").read_text()
    legacy = [{k: v for k, v in asdict(c).items() if k != "origin"} for c in plain]
    for row in legacy:
        row["audio"] = plain._relative(row["audio"])
        row["video"] = plain._relative(row["video"])
    import hashlib
    blob = json.dumps(legacy, sort_keys=True, default=str).encode()
    assert plain.fingerprint() == hashlib.sha256(blob).hexdigest()[:16]


def test_a_far_out_row_of_an_augmented_copy_is_warned_of(augmented_cache, tmp_path, no_plots):
    import h5py

    root, origin_of = augmented_cache
    with h5py.File(root / "synth-aug" / "acoustic.h5", "r+") as f:
        f["arrays/x"][2, 5] = 3e38
        copy = f["ids"][2].decode()
    run = tmp_path / "run"
    result = train_cli("--cache", root, "--dataset", "synth", "--augment", "synth-aug", "--features", "A=acoustic",
                       "--epochs", "1", "--folds", "2", "--quiet", "--out", run)
    assert result.exit_code == 0, result.output
    warning = (f"--augment synth-aug: acoustic: 1 clip(s) with values over 1e+05 robust spreads from the "
               f"feature's median ({copy})")
    assert f"warning: {warning}" in result.output
    assert any(w.startswith(warning) for w in json.loads((run / "metrics.json").read_text())["warnings"])
