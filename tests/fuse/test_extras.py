"""Training-only clips: augmented copies join only the folds that train on every clip they were made
from, per-member pseudo-labels only the member they were made for, other pseudo-labelled clips every
fold's training rows, and none is ever validated or scored."""
import json

import numpy as np
import pytest

from cache import open_clips
from cache.clips import ClipTable, write_table
from fuse import loop
from fuse.extras import NO_ORIGIN, CopyOf, MadeWithout, member_rows
from manifests.table import Clip, Manifest

from .conftest import synthetic_corpus, train_cli, write_cache

ARGS = ["--features", "A=acoustic;V=visual", "--epochs", "3", "--seeds", "2", "--quiet"]


def test_member_rows_hold_no_row_made_from_a_validation_clip():
    tr = np.arange(20) + 5
    folds = np.arange(20) % 4
    copies = np.arange(100, 140)  # two copies of each training clip, the second holding the next clip's speech
    origin = [CopyOf(int(r)) for r in tr] + [CopyOf(int(r), (int(tr[(i + 1) % 20]),)) for i, r in enumerate(tr)]
    held = [frozenset(tr[folds == k].tolist()) for k in range(4)]
    # two clips with no origin (every member), pseudo-labels made for the member of fold 1, and for folds 0 and 2
    extra_rows = np.concatenate([copies, [200, 201, 300, 301]])
    extra_origin = np.array(origin + [NO_ORIGIN, NO_ORIGIN, MadeWithout(frozenset([held[1]])),
                                      MadeWithout(frozenset([held[0], held[2]]))], dtype=object)
    for k in range(4):
        got = set(member_rows(tr, folds, k, extra_rows, extra_origin).tolist())
        validation = set(tr[folds == k].tolist())
        expected = set(tr[folds != k].tolist()) | {200, 201} | ({300} if k == 1 else {301} if k in (0, 2) else set())
        expected |= {int(c) for c, o in zip(copies, origin) if not ({o.origin, *o.mixed_in} & validation)}
        assert got == expected
        assert not got & validation


@pytest.fixture
def augmented_cache(tmp_path):
    """The synthetic corpus, and `synth-aug`: a noisy copy of every third training clip, each
    linked to its origin in the clip table, plus one copy of a test1 clip (never usable)."""
    root, sources = write_augmented(tmp_path)
    return root, {copy: made_from[0] for copy, made_from in sources.items()}


def write_augmented(tmp_path, mixed_in=False):
    """The cache of `augmented_cache`; with `mixed_in`, each training clip's copy also holds the
    speech of the next two copied training clips (extract.augment's babble: `origin` lists them),
    the first one a test1 clip's. Returns (root, {copy id: [origin, mixed-in clips...]})."""
    manifest, arrays = synthetic_corpus()
    root = write_cache(tmp_path / "cache", "synth", manifest, arrays)
    rng = np.random.default_rng(5)
    originals = [c for c in manifest if c.split == "train"][::3] + [next(c for c in manifest if c.split == "test1")]
    clips = [Clip(f"{c.id}-aug", "train", label=c.label, valence=c.valence) for c in originals]
    copied = {f: {f"{c.id}-aug": (v[c.id] + rng.normal(scale=0.1, size=v[c.id].shape)).astype(np.float32)
                  for c in originals} for f, v in arrays.items()}
    sources = {f"{c.id}-aug": [c.id] for c in originals}
    train = [c.id for c in originals[:-1]]
    for i, cid in enumerate(train if mixed_in else []):
        sources[f"{cid}-aug"] += [train[(i + 1) % len(train)], train[(i + 2) % len(train)]]
    if mixed_in:
        sources[f"{train[0]}-aug"][1] = "clip0091"
    aug = Manifest("synth-aug", clips)
    write_cache(root, "synth-aug", aug, copied)
    table = open_clips("synth-aug", root=root)
    write_table(ClipTable("synth-aug", table.ids, table.split_of(), [c.label for c in aug], table.valence(),
                          table.classes, False, table.manifest_fingerprint, source="test",
                          origins=[";".join(sources[cid]) for cid in table.ids]), root)
    return root, sources


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


def test_a_copy_holding_other_clips_speech_trains_only_where_all_are_training_clips(tmp_path, monkeypatch, no_plots):
    root, sources = write_augmented(tmp_path, mixed_in=True)
    seen = _record_members(monkeypatch)
    run = tmp_path / "run"
    result = train_cli("--cache", root, "--dataset", "synth", "--augment", "synth-aug", *ARGS, "--out", run)
    assert result.exit_code == 0, result.output
    problem, data = seen[0]
    cv = np.load(run / "scores" / "cv.npz")
    usable = {c: made for c, made in sources.items() if "clip0091" not in made and made[0] != "clip0090"}
    assert set(problem.ids[problem.split == "(train-only)"]) == set(usable)   # a test clip's speech: never
    assert "it holds the speech of clip0091, a clip of split test1" in " ".join(problem.notes)
    for e in range(data.train_rows.shape[0]):
        s, k = divmod(e, 5)
        rows = data.train_rows[e].numpy()
        trained = set(problem.ids[data.rows[rows[rows >= 0]]])
        validation = set(cv["ids"][cv["folds"][s] == k])
        assert {c for c in trained if c in sources} == {c for c, made in usable.items() if not set(made) & validation}


def test_lgbm_trains_on_the_same_augmented_rows(augmented_cache, tmp_path, lgbm_one_thread, no_plots):
    root, origin_of = augmented_cache
    run = tmp_path / "run"
    result = train_cli("--cache", root, "--dataset", "synth", "--augment", "synth-aug", "--model", "lgbm",
                       "--seeds", "1", "--quiet", "--features", "A=acoustic;V=visual", "--out", run)
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["training_only_clips"] == len(origin_of) - 1


def test_pseudo_labels_made_elsewhere_join_every_fold(synth_cache, tmp_path, monkeypatch, no_plots):
    seen = _record_members(monkeypatch)
    pseudo = tmp_path / "pseudo.csv"
    pseudo.write_text("id,label\nclip0114,happy\nclip0115,sad\n")   # not fuse.semi's: made without our labels
    run = tmp_path / "run"
    result = train_cli("--cache", synth_cache, "--pseudo", pseudo, *ARGS, "--out", run)
    assert result.exit_code == 0, result.output
    assert "2 pseudo-labelled training-only clips (each in every member's training rows)" in result.output
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


@pytest.mark.parametrize("rows,phrase", [("clip0003,happy", "clip0003 is a labelled training clip"),
                                         ("clip0114,joyful", "clip0114 has label 'joyful'"),
                                         ("clip0114,happy\nclip0095,sad",
                                          "clip0095 is a labelled clip of split test1: training on it would leak "
                                          "its label into that split's scores")])
def test_bad_pseudo_label_files_are_refused(synth_cache, tmp_path, rows, phrase):
    pseudo = tmp_path / "pseudo.csv"
    pseudo.write_text("id,label\n" + rows + "\n")
    result = train_cli("--cache", synth_cache, "--pseudo", pseudo, *ARGS, "--out", tmp_path / "run")
    assert result.exit_code == 2 and phrase in result.output
    assert not (tmp_path / "run").exists()


def test_a_fuse_semi_csv_without_its_per_member_labels_is_refused(synth_cache, tmp_path):
    pseudo = tmp_path / "semi-synth-test3.csv"   # what fuse.semi wrote before it wrote per-member labels
    pseudo.write_text("id,split,label,score\nclip0114,test3,happy,0.9\n")
    result = train_cli("--cache", synth_cache, "--pseudo", pseudo, *ARGS, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert ("a fuse.semi CSV without its per-member pseudo-labels (semi-synth-test3.members.json beside it): its "
            "labels come from fold models that trained on every validation fold") in result.output
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
