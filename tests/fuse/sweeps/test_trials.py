"""What a sweep plans: feature combinations, grid crossing, random draws, and the grid options
it refuses (exit 2, naming the option, before any work)."""
import itertools
import math

import numpy as np
import pytest
from click.testing import CliRunner

from fuse.training import request as training
from fuse.inputs.specs import SpecError
from fuse.sweeps.plan import model_grid, plan, request_for, trial_run_id
from fuse.sweeps.trials import Trial, feature_sets, grid_points, parse_alternatives, parse_grid, random_points

from tests.fuse.conftest import synthetic_corpus, write_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    manifest, arrays = synthetic_corpus()
    return write_cache(tmp_path_factory.mktemp("plan") / "cache", "synth", manifest, arrays,
                       failed={"visual": {"clip0007": "no face found"}})


def sweep_cli(*args):
    from fuse.sweep import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("sizes", [{"A": 2, "L": 3, "V": 2}, {"A": 1, "V": 3}, {"L": 4}])
def test_feature_sets_are_every_nonempty_choice_of_at_most_one_feature_per_modality(sizes):
    alternatives = {m: [f"{m.lower()}{i}" for i in range(n)] for m, n in sizes.items()}
    sets = feature_sets(alternatives)
    # independently: each modality contributes one of its features or nothing; drop the empty set
    expected = {tuple((m, f) for m, f in zip(alternatives, pick) if f is not None)
                for pick in itertools.product(*([None, *alternatives[m]] for m in alternatives))} - {()}
    assert len(sets) == len(set(sets)) == math.prod(n + 1 for n in sizes.values()) - 1
    assert set(sets) == expected
    assert [len(s) for s in sets] == sorted(len(s) for s in sets)  # unimodal first, then bimodal, ...


def test_alternatives_parse_the_bar_and_keep_modality_order():
    assert parse_alternatives("V=face-fer2013|face-dlib; T=text-minilm@-4: ;A=hubert-large@18,19,20+is10|is10") == {
        "A": ["hubert-large@18,19,20+is10", "is10"], "L": ["text-minilm@-4:"], "V": ["face-fer2013", "face-dlib"]}
    for bad, phrase in (("X=a", "MODALITY one of A, L (T), V"), ("A=", "no feature named"),
                        ("A=x;A=y", "modality A given twice")):
        with pytest.raises(SpecError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
            parse_alternatives(bad)


def test_plan_crosses_feature_sets_models_and_grid_with_fuse_train_run_ids(cache):
    grid = parse_grid("hidden=16,32x16;dropout=0.1,0.2,0.3;lgbm.lr=0.05,0.1")
    runs = training.runs_root(cache) / "synth"
    trials = plan("synth", cache, runs, None, "A=acoustic|layers@1,2;V=visual", ["attention", "lgbm"], grid)
    n_sets = (2 + 1) * (1 + 1) - 1
    by_model = {m: [t for t in trials.trials.values() if t.model == m] for m in ("attention", "lgbm")}
    assert len(by_model["attention"]) == n_sets * 2 * 3 and len(by_model["lgbm"]) == n_sets * 2
    assert {dict(t.options)["hidden"] for t in by_model["attention"]} == {(16,), (32, 16)}
    assert {t.options for t in by_model["lgbm"]} == {(("lr", 0.05),), (("lr", 0.1),)}
    assert len(set(trials.trials)) == len(trials.trials) and set(trials.seeds.values()) == {1}
    # a trial's run id is the one fuse.train gives the same options (its default run folder)
    for run, trial in list(trials.trials.items())[::7]:
        request = request_for(trial, "synth", cache, 1)
        dataset, problem, splits = training.prepare(request)
        assert runs / run == training.default_folder(request, dataset, problem, splits)


def test_the_run_id_changes_with_seeds_and_options_not_with_the_order_given(cache):
    one = Trial((("A", "acoustic"),), "attention", (("dropout", 0.1), ("hidden", (16,))))
    runs = cache.parent / "runs"
    ids = {trial_run_id(one, "synth", cache, 1, runs), trial_run_id(one, "synth", cache, 2, runs),
           trial_run_id(Trial(one.features, "attention", (("dropout", 0.2), ("hidden", (16,)))), "synth", cache, 1, runs)}
    assert len(ids) == 3
    points = grid_points(parse_grid("hidden=16;dropout=0.1")) + grid_points(parse_grid("dropout=0.1;hidden=16"))
    assert points[0] == points[1] == one.options


def test_a_model_gets_only_the_grid_options_it_takes():
    grid = parse_grid("hidden=16,32;dropout=0.2;attention.dropout=0.4;structure=1,2;lgbm.lr=0.1")
    assert model_grid("attention", grid) == {"hidden": ["16", "32"], "dropout": ["0.4"]}  # qualified wins
    assert model_grid("mlp", grid) == {"hidden": ["16", "32"], "dropout": ["0.2"]}
    assert model_grid("afg", grid) == {"hidden": ["16", "32"], "dropout": ["0.2"], "structure": ["1", "2"]}
    assert model_grid("lgbm", grid) == {"lr": ["0.1"]}


def test_the_sequence_models_options_reach_their_configs():
    grid = parse_grid("width=32,64;channels=8x16,16x32;supcon_alpha=0,0.3;supcon_temperature=0.5;hidden=16")
    assert set(model_grid("coattention", grid)) == {"width", "channels", "supcon_alpha", "supcon_temperature",
                                                   "hidden"}
    assert set(model_grid("e2el", grid)) == {"width", "channels"}
    assert set(model_grid("crossbert", grid)) == {"width", "channels", "hidden"}
    assert set(model_grid("attention", grid)) == {"hidden"}
    points = grid_points(model_grid("coattention", grid))
    assert len(points) == 2 * 2 * 2
    trial = Trial((("A", "logmel"),), "coattention", points[-1])
    config = training.TrainRequest.from_options(**trial.train_options()).configs[0]
    assert (config.width, config.channels, config.alpha, config.temperature, config.hidden) == (64, (16, 32), 0.3, 0.5, (16,))


def test_trial_keys_survive_the_study_round_trip():
    trial = Trial((("A", "acoustic+layers@-2:"), ("V", "visual")), "afg",
                  (("dropout", 0.25), ("hidden", (32, 16)), ("layer_weights", True), ("lr", 3.1e-4)))
    assert Trial.from_key(trial.key) == trial


def test_random_draws_are_reproducible_within_their_ranges_and_log_uniform_for_lr():
    grid = parse_grid("lr=1e-5:1e-2;epochs=3:9;dropout=0.1:0.5;hidden=16,32", search="random")
    first, again, other = (random_points(grid, 400, seed) for seed in (3, 3, 4))
    assert first == again and first != other
    draws = {name: np.array([dict(p)[name] for p in first], dtype=object) for name in ("lr", "epochs", "dropout")}
    lr, epochs, dropout = (draws[n].astype(float) for n in ("lr", "epochs", "dropout"))
    assert lr.min() >= 1e-5 and lr.max() <= 1e-2 and 0.1 <= dropout.min() and dropout.max() <= 0.5
    assert all(isinstance(e, int) for e in draws["epochs"]) and set(epochs) == set(range(3, 10))
    # log-uniform: half the draws below the geometric midpoint (uniform would put ~3% there)
    assert 0.4 < np.mean(lr < math.sqrt(1e-5 * 1e-2)) < 0.6
    assert 0.4 < np.mean(dropout < 0.3) < 0.6
    assert {dict(p)["hidden"] for p in first} == {(16,), (32,)}


def test_random_search_plans_the_draws_per_feature_set_and_model(cache):
    grid = parse_grid("lr=1e-4:1e-2;dropout=0.1:0.5", search="random")
    trials = plan("synth", cache, cache.parent / "runs", None, "A=acoustic;V=visual", ["attention"], grid,
                  search="random", n_trials=4, seed=1)
    sets = {t.features for t in trials.trials.values()}
    assert len(sets) == 3 and len(trials.trials) == 3 * 4
    per_set = [sorted(t.options for t in trials.trials.values() if t.features == s) for s in sets]
    assert per_set[0] == per_set[1] == per_set[2] == sorted(random_points(grid, 4, 1))  # paired draws


@pytest.mark.parametrize("args, phrases", [
    (["--grid", "momentum=0.9"], ["--grid momentum: not a hyper-parameter a sweep varies", "dropout"]),
    (["--grid", "lr=fast"], ["--grid lr=fast: expected a number"]),
    (["--grid", "epochs=2.5"], ["--grid epochs=2.5: expected an integer"]),
    (["--grid", "hidden=wide"], ["--grid hidden=wide: expected layer widths like 256x128"]),
    (["--grid", "hidden=64x0"], ["--grid hidden=64x0: expected layer widths of at least 1"]),
    (["--grid", "channels=16,wide"], ["--grid channels=wide: expected channel counts like 16x32"]),
    (["--grid", "channels=16x0"], ["--grid channels=16x0: expected channel counts of at least 1"]),
    (["--grid", "supcon_temperature=0"], ["--grid supcon_temperature=0: expected above 0"]),
    (["--grid", "width=16", "--models", "attention,lgbm"], ["--grid width: no model of attention, lgbm takes it"]),
    (["--grid", "epochs=0"], ["--grid epochs=0: expected at least 1"]),
    (["--grid", "folds=1"], ["--grid folds=1: expected at least 2"]),
    (["--grid", "dropout=0.2,1.5"], ["--grid dropout=1.5: expected in [0, 1)"]),
    (["--grid", "lr=0:1e-2", "--search", "random"], ["--grid lr=0: expected above 0"]),
    (["--grid", "weight_decay=0:1e-3", "--search", "random"], ["weight_decay=0:1e-3: expected low < high and low > 0"]),
    (["--grid", "layer_weights=maybe"], ["--grid layer_weights=maybe: expected true or false"]),
    (["--grid", "decoder=joint"], ["--grid decoder=joint: choose from baseline, jdev"]),
    (["--grid", "lr=1e-4:1e-2"], ["--grid lr=1e-4:1e-2: a range needs --search random"]),
    (["--grid", "lr=1e-2:1e-4", "--search", "random"], ["--grid lr=1e-2:1e-4: expected low < high"]),
    (["--grid", "decoder=baseline:jdev", "--search", "random"], ["only numeric options take a range"]),
    (["--grid", "lr=1e-3;lr=1e-4"], ["--grid names lr twice"]),
    (["--grid", "hidden=16", "--models", "lgbm"], ["--grid hidden: no model of lgbm takes it"]),
    (["--grid", "lr=0.1", "--models", "lgbm"], ["--grid lr: no model of lgbm takes it", "`lgbm.lr`"]),
    (["--grid", "attention_scores=raw", "--models", "mlp,afg"], ["--grid attention_scores: no model of mlp, afg"]),
    (["--grid", "afg.structure=2", "--models", "attention"], ["--grid afg.structure: no model of attention"]),
    (["--models", "attention,svm"], ["--models 'attention,svm': choose from afg, attention, coattention, crossbert, crossbert-interaction, e2el, lgbm, mlp"]),
    (["--features", "A=acoustic|nosuch"], ["feature 'nosuch' is not cached"]),
    (["--modalities", "A", "--features", "A=acoustic;V=visual"], ["--features gives V but --modalities does not"]),
    (["--budget", "soon"], ["'soon': expected a positive duration: 8h, 90m, 45s or 3600 (seconds)"]),
])
def test_refused_sweeps_exit_2_naming_the_option_before_any_work(cache, tmp_path, args, phrases):
    base = ["--cache", cache, "--dataset", "synth", "--runs", tmp_path / "runs", "--out", tmp_path / "out"]
    if "--features" not in args and "--modalities" not in args:
        base += ["--features", "A=acoustic;V=visual"]
    result = sweep_cli(*base, *args)
    assert result.exit_code == 2, result.output
    for phrase in phrases:
        assert phrase in result.output, result.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_a_grace_period_shorter_than_the_heartbeat_is_refused(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("MER_SWEEP_HEARTBEAT", "30")
    monkeypatch.setenv("MER_SWEEP_GRACE", "10")
    result = sweep_cli("--cache", cache, "--dataset", "synth", "--features", "A=acoustic", "--runs", tmp_path / "runs")
    assert result.exit_code == 2 and "MER_SWEEP_GRACE=10 must exceed MER_SWEEP_HEARTBEAT=30" in result.output
    assert not (tmp_path / "runs").exists()
