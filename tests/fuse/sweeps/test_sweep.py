"""fuse.sweep on the synthetic cache: finished trials skipped, a changed feature retrains only its
trials, a `kill -9` resumed with no trial lost or trained twice, workers and processes sharing one
SQLite study, the Table-3 layout and the decision-level fusion row checked against the run folders."""
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState
from sklearn.metrics import f1_score

from cache import FeatureWriter, open_feature
from fuse.sweeps import study as studies
from fuse.sweeps.trials import Trial
from manifests import MER_CLASSES

from tests.fuse.conftest import synthetic_corpus, write_cache
from tests.fuse.test_train import png_size, truth

REPO = Path(__file__).resolve().parents[3]
FEATURES = "A=acoustic|layers@1,2;V=visual"
N_SETS = (2 + 1) * (1 + 1) - 1           # A: 2 alternatives or none, V: 1 or none, not both none
TINY = "epochs=3;folds=2;hidden=16"
HEARTBEAT = {"MER_SWEEP_HEARTBEAT": "1", "MER_SWEEP_GRACE": "3"}


@pytest.fixture(autouse=True)
def short_heartbeat(monkeypatch):
    for name, value in HEARTBEAT.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def cache(tmp_path):
    manifest, arrays = synthetic_corpus()
    return write_cache(tmp_path / "cache", "synth", manifest, arrays, failed={"visual": {"clip0007": "no face found"}})


@pytest.fixture
def no_report_plots(monkeypatch, no_plots):
    from fuse.results import plots

    monkeypatch.setattr(plots, "pair_heatmap", lambda *args, **kwargs: None)
    monkeypatch.setattr(plots, "fusion_gain", lambda *args, **kwargs: None)


def args_for(cache, base, *extra, features=FEATURES, grid=TINY, top_k=0):
    return ["--cache", cache, "--dataset", "synth", "--features", features, "--grid", grid,
            "--runs", base / "runs", "--out", base / "out", "--top-k", top_k, "--quiet", *extra]


def sweep_cli(*args):
    from fuse.sweep import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def study_trials(runs: Path) -> list:
    """Every trial of the one study in `runs`/study.db that carries a sweep key."""
    rdb = studies.storage(f"sqlite:///{runs / 'study.db'}")
    names = optuna.study.get_all_study_names(storage=rdb)
    if not names:
        return []
    assert len(names) == 1
    trials = optuna.load_study(study_name=names[0], storage=rdb).get_trials(deepcopy=False)
    return [t for t in trials if t.user_attrs.get("key")]


def items_of(trial) -> list[tuple[str, Trial]]:
    """(run, Trial) of every sweep trial an Optuna trial trains: one, or a learning-rate group."""
    return [(item["run"], Trial.from_key(item["trial"])) for item in json.loads(trial.user_attrs["key"])["runs"]]


def run_of(trial) -> str:
    (run, _), = items_of(trial)  # a one-trial unit (no learning-rate grid)
    return run


def finished(runs: Path) -> dict[str, tuple]:
    """Run folder -> (inode, mtime) of its metrics.json: the file is written once per training."""
    return {p.parent.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in runs.glob("*/metrics.json")
            if not p.parent.name.startswith(".")}   # not a run folder being written


def trained_per_run(trials) -> dict[str, int]:
    count = {}
    for t in trials:
        for run, _ in items_of(t):
            count[run] = count.get(run, 0) + bool(t.state == TrialState.COMPLETE and t.user_attrs.get("trained"))
    return count


def test_a_rerun_skips_finished_trials(cache, tmp_path, no_report_plots):
    sweep_cli(*args_for(cache, tmp_path))
    before, trials = finished(tmp_path / "runs"), study_trials(tmp_path / "runs")
    assert len(before) == N_SETS and set(trained_per_run(trials).values()) == {1}
    assert {run_of(t) for t in trials} == set(before)
    # queued and popped costliest first: bimodal trials (2 features) before unimodal ones
    sizes = [items_of(t)[0][1].n_features for t in sorted(trials, key=lambda t: t.number)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 2 and sizes[-1] == 1

    output = sweep_cli(*args_for(cache, tmp_path))
    assert f"{N_SETS} trials, {N_SETS} already finished (skipped), 0 to run" in output
    assert finished(tmp_path / "runs") == before
    assert len(study_trials(tmp_path / "runs")) == len(trials)   # nothing queued, nothing trained


def test_a_damaged_metrics_json_is_named_and_only_its_trial_trained_again(cache, tmp_path, no_report_plots,
                                                                          caplog):
    """A run folder whose metrics.json was cut short is not a finished run to trust: the sweep names
    the file, trains that trial again and leaves the others; the leaderboard never reads it."""
    from fuse.sweeps import leaderboard

    runs = tmp_path / "runs"
    sweep_cli(*args_for(cache, tmp_path))
    before = finished(runs)
    victim = sorted(before)[0]
    damaged = runs / victim / "metrics.json"
    damaged.write_text(damaged.read_text()[:40])
    trial = next(items_of(t)[0][1] for t in study_trials(runs) if run_of(t) == victim)
    with caplog.at_level("WARNING"):
        assert len(leaderboard.rows({victim: trial}, runs)) == 0
        sweep_cli(*args_for(cache, tmp_path))
    assert f"{damaged} is damaged" in caplog.text and "left out of the leaderboard" in caplog.text
    assert "its trial is trained again" in caplog.text
    after = finished(runs)
    assert after[victim] != before[victim] and {r: after[r] for r in before if r != victim} == \
        {r: before[r] for r in before if r != victim}
    assert json.loads(damaged.read_text())["cv"]["combined"]["mean"] is not None


def test_a_changed_feature_retrains_only_the_trials_that_use_it(cache, tmp_path, no_report_plots):
    sweep_cli(*args_for(cache, tmp_path))
    before = finished(tmp_path / "runs")
    first = study_trials(tmp_path / "runs")
    known = {t.number for t in first}
    modalities = {run_of(t): items_of(t)[0][1].modalities for t in first}
    old = open_feature("synth", "visual", root=cache).provenance["updated"]
    while time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) <= old[:19]:
        time.sleep(0.05)   # merge times are recorded to the second
    # re-extract `visual` (as after a new face detector): same config, same clips, other values
    FeatureWriter(cache, "synth", "visual", "", {}).remove()
    manifest, arrays = synthetic_corpus()
    rng = np.random.default_rng(1)
    values = {cid: x + rng.normal(scale=0.1, size=x.shape).astype(np.float32) for cid, x in arrays["visual"].items()}
    write_cache(cache, "synth", manifest, {"visual": values}, clips=False)
    assert open_feature("synth", "visual", root=cache).provenance["updated"] != old

    output = sweep_cli(*args_for(cache, tmp_path))
    uses_visual = 2 + 1   # V with either A alternative, and V alone
    new = [t for t in study_trials(tmp_path / "runs") if t.number not in known]
    retrained = {run_of(t): items_of(t)[0][1] for t in new
                 if t.user_attrs.get("trained")}
    assert len(retrained) == len(new) == uses_visual and all("V" in t.modalities for t in retrained.values())
    assert f"{N_SETS - uses_visual} already finished (skipped), {uses_visual} to run" in output
    after = finished(tmp_path / "runs")
    unchanged = {run: stat for run, stat in before.items() if "V" not in modalities[run]}
    assert len(unchanged) == N_SETS - uses_visual and all(after[run] == stat for run, stat in unchanged.items())
    assert set(after) == set(before) | set(retrained) and not set(retrained) & set(before)
    for run in retrained:
        features = json.loads((tmp_path / "runs" / run / "metrics.json").read_text())["features"]
        assert features["visual"]["updated"] != old


def test_two_workers_give_the_same_leaderboard_as_one(cache, tmp_path, no_report_plots, monkeypatch):
    sweep_cli(*args_for(cache, tmp_path / "one"))
    # this process holds its first trial until the spawned worker (seconds to start) has taken one,
    # so that both train some of the trials
    from fuse.sweeps import run as sweep_run

    train, me = sweep_run.run_trial, f"{socket.gethostname()}:{os.getpid()}"

    def second_worker_first(payload, *args, **kwargs):
        wait_for(lambda: any(t.user_attrs.get("worker") not in (None, me) for t in study_trials(tmp_path / "two" / "runs")),
                 120, "the second worker to take a trial")
        monkeypatch.setattr(sweep_run, "run_trial", train)
        return train(payload, *args, **kwargs)

    monkeypatch.setattr(sweep_run, "run_trial", second_worker_first)
    sweep_cli(*args_for(cache, tmp_path / "two", "--workers", "2"))
    workers = {t.user_attrs["worker"] for t in study_trials(tmp_path / "two" / "runs") if t.user_attrs.get("trained")}
    assert len(workers) == 2 and me in workers
    one, two = (pd.read_csv(tmp_path / name / "out" / "leaderboard.csv") for name in ("one", "two"))
    assert len(one) == N_SETS and one["run"].tolist() == two["run"].tolist()
    scores = [c for c in one.columns if c.startswith(("cv_", "test1_"))]
    assert len(scores) == 12
    pd.testing.assert_frame_equal(one[scores], two[scores], check_exact=False, rtol=1e-6)


def test_random_search_reruns_the_best_draw_of_each_feature_set_with_more_seeds(cache, tmp_path, no_report_plots):
    grid = "lr=1e-4:3e-2;epochs=3;folds=2;hidden=16"
    sweep_cli(*args_for(cache, tmp_path, "--search", "random", "--trials", "3", "--rerun-best", "2",
                        features="A=acoustic;V=visual", grid=grid))
    runs = tmp_path / "runs"
    units = study_trials(runs)
    trials = {run: trial for t in units for run, trial in items_of(t)}
    # the draws of a feature set differ only in their learning rate: each set's 3 train as one model
    assert sorted(len(items_of(t)) for t in units) == [1, 1, 1, 3, 3, 3]
    metrics = {run: json.loads((runs / run / "metrics.json").read_text()) for run in trials}
    seeds = {run: len(m["cv"]["combined"]["per_seed"]) for run, m in metrics.items()}
    draws = [run for run in trials if seeds[run] == 1]
    assert len(draws) == 3 * 3 and sorted(seeds.values()).count(2) == 3
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert len(board) == 3 and all(seeds[run] == 2 for run in board["run"])   # the reruns alone
    for run in board["run"]:   # each reruns the draw of its feature set with the best 1-seed CV score
        rivals = [d for d in draws if trials[d].features == trials[run].features]
        best = max(rivals, key=lambda d: metrics[d]["cv"]["combined"]["mean"])
        assert trials[run] == trials[best] and metrics[run]["config"]["train"]["seeds"] == [0, 1]


def test_a_learning_rate_grid_trains_as_one_model_per_feature_set(cache, tmp_path, no_report_plots):
    """lr=1e-2,3e-2,1e-9: each feature set's three trials are one queued unit, trained as one
    batched model; each still gets its own run folder, leaderboard row and learning rate, and a
    rate too small to move the weights stays at chance while the others learn."""
    grid = "lr=1e-2,3e-2,1e-9;epochs=10;folds=2;hidden=16"
    sweep_cli(*args_for(cache, tmp_path / "together", features="A=acoustic;V=visual", grid=grid))
    runs = tmp_path / "together" / "runs"
    units = study_trials(runs)
    assert len(units) == 3 and all(len(items_of(t)) == 3 for t in units)   # 3 feature sets x 3 rates
    assert set(trained_per_run(units).values()) == {1}
    board = pd.read_csv(tmp_path / "together" / "out" / "leaderboard.csv")
    assert len(board) == 9
    for run in board["run"]:
        metrics = json.loads((runs / run / "metrics.json").read_text())
        lr = metrics["config"]["train"]["lr"]
        assert metrics["lr_group"] == [1e-2, 3e-2, 1e-9]
        assert (metrics["cv"]["weighted_f1"]["mean"] < 0.4) == (lr == 1e-9), (lr, metrics["cv"])
    # without batching: one unit per trial, and the runs (named by their config and inputs, here
    # the cache seen from a runs folder as deep) are the same ones
    sweep_cli(*args_for(cache, tmp_path / "apart", "--no-lr-batching", features="A=acoustic;V=visual", grid=grid))
    apart = study_trials(tmp_path / "apart" / "runs")
    assert len(apart) == 9 and {run_of(t) for t in apart} == set(board["run"])
    assert "lr_group" not in json.loads((tmp_path / "apart" / "runs" / board["run"][0] / "metrics.json").read_text())


# --- separate processes: a real kill -9, and two commands sharing one study -----------------------

def command(cache, base, *extra, grid=TINY):
    return [sys.executable, "-m", "fuse.sweep", *map(str, args_for(cache, base, *extra, grid=grid))]


def environment():
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **HEARTBEAT, "PYTHONPATH": path}


def start(cmd, base: Path, name: str) -> subprocess.Popen:
    """The sweep in its own process group (with the worker processes it spawns), output to a log."""
    with open(base / f"{name}.log", "w") as log:
        return subprocess.Popen(cmd, cwd=base, env=environment(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_for(condition, timeout: float, what: str, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the sweep ended (exit {proc.returncode}) before {what}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_kill_9_then_rerun_trains_every_trial_once(cache, tmp_path):
    runs = tmp_path / "runs"
    cmd = command(cache, tmp_path, "--workers", "2")
    sweep = start(cmd, tmp_path, "killed")

    def one_done_one_running():
        if not (runs / "study.db").exists():
            return None
        done = finished(runs)
        running = [t.number for t in study_trials(runs) if t.state == TrialState.RUNNING and run_of(t) not in done]
        return (done, running) if done and running else None

    try:
        wait_for(one_done_one_running, 120, "one trial finished and another running", sweep)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)   # the sweep and its worker processes, as `kill -9`
        sweep.wait()
    wait_for(lambda: _group_gone(sweep.pid), 10, "the killed workers to go")
    before = finished(runs)
    killed = [t.number for t in study_trials(runs) if t.state == TrialState.RUNNING]
    assert before and killed and len(before) < N_SETS

    # the same sweep (its study does not depend on --workers), one process: a spawned worker would
    # only add its start-up time here
    rerun = subprocess.run(command(cache, tmp_path), cwd=tmp_path, env=environment(), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{len(before)} already finished (skipped)" in rerun.stderr

    after, trials = finished(runs), study_trials(runs)
    assert len(after) == N_SETS and {run_of(t) for t in trials} == set(after)   # none lost
    assert all(after[run] == stat for run, stat in before.items())              # none trained again
    per_run = trained_per_run(trials)
    assert max(per_run.values()) == 1                                          # none trained twice
    assert all(per_run[run] == 1 for run in after if run not in before)
    by_number = {t.number: t for t in trials}
    for number in killed:   # the killed workers' trials: failed as stale, retried, finished
        assert by_number[number].state == TrialState.FAIL
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
        assert [t.state for t in retries] == [TrialState.COMPLETE]


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_two_processes_sharing_one_sqlite_study_split_the_trials(cache, tmp_path):
    cmd = command(cache, tmp_path)
    first, second = start(cmd, tmp_path, "first"), start(cmd, tmp_path, "second")
    for proc, name in ((first, "first"), (second, "second")):
        assert proc.wait(timeout=300) == 0, (tmp_path / f"{name}.log").read_text()
    trials = study_trials(tmp_path / "runs")
    trained = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("trained")]
    runs = [run_of(t) for t in trained]
    assert len(runs) == len(set(runs)) == N_SETS == len(finished(tmp_path / "runs"))
    by_process = {int(t.user_attrs["worker"].rpartition(":")[2]) for t in trained}
    assert by_process == {first.pid, second.pid}, "each process trains some of the trials"


# --- what the user reads: Table 3 and the decision-level fusion row --------------------------------

def test_table3_layout_and_the_decision_fusion_row(tmp_path, no_plots):
    manifest, arrays = synthetic_corpus()
    cache = write_cache(tmp_path / "cache", "synth", manifest, arrays)   # every run has every clip: one set of folds
    sweep_cli(*args_for(cache, tmp_path, "--seeds", "2", features="A=acoustic;L=layers@1,2;V=visual", top_k=3))
    out, runs = tmp_path / "out", tmp_path / "runs"
    board = pd.read_csv(out / "leaderboard.csv")
    trials, fusion = board[board["model"] != "fusion"], board[board["model"] == "fusion"]
    assert len(trials) == 2 ** 3 - 1 and len(fusion) == 1
    assert trials["cv_combined"].tolist() == sorted(trials["cv_combined"], reverse=True)

    # Table 3: groups of C(3, k) feature sets, Dis / Dim / Com per split from each run's metrics.json
    lines = (out / "table3.md").read_text().splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head == ["A", "L", "V"] + [f"{s} {k}" for s in ("cv", "test1") for k in ("Dis", "Dim", "Com")]
    groups, rows = [], {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0].startswith("**"):
            groups.append(cells[0].strip("*"))
            continue
        rows.setdefault(groups[-1], []).append(cells)
    assert groups == ["unimodal", "bimodal", "trimodal"]
    assert [len(rows[g]) for g in groups] == [math.comb(3, k) for k in (1, 2, 3)]
    for group, size in zip(groups, (1, 2, 3)):
        for cells in rows[group]:
            assert sum(bool(c) for c in cells[:3]) == size
            match = trials[_same(trials["A"], cells[0]) & _same(trials["L"], cells[1]) & _same(trials["V"], cells[2])]
            m = json.loads((runs / match["run"].item() / "metrics.json").read_text())
            for i, split in enumerate(("cv", "test1")):
                dis, dim, com = cells[3 + 3 * i: 6 + 3 * i]
                assert dis == f"{100 * m[split]['weighted_f1']['mean']:.2f} ± {100 * m[split]['weighted_f1']['std']:.2f}"
                assert dim == f"{m[split]['mse']['mean']:.2f} ± {m[split]['mse']['std']:.2f}"
                assert com == f"{m[split]['combined']['mean']:.2f} ± {m[split]['combined']['std']:.2f}"

    # the fusion row: the top 3 runs' test posteriors and valences weighted, scored independently
    fused = json.loads((out / "fusion" / "metrics.json").read_text())
    assert fused["runs"] == trials["run"].head(3).tolist() and sum(fused["weights"]) == pytest.approx(1)
    loaded = [np.load(runs / run / "scores" / "test1.npz") for run in fused["runs"]]
    ids = sorted(set.intersection(*(set(d["ids"]) for d in loaded)))
    pick = [np.array([list(d["ids"]).index(i) for i in ids]) for d in loaded]
    probs = sum(w * d["probs"][:, p] for w, d, p in zip(fused["weights"], loaded, pick))
    valence = sum(w * d["valence"][:, p] for w, d, p in zip(fused["weights"], loaded, pick))
    labels, true_valence = truth(ids)
    per_seed = [f1_score(labels, probs[s].argmax(1), average="weighted") - 0.25 * np.mean((valence[s] - true_valence) ** 2)
                for s in range(2)]
    assert fusion["test1_combined"].item() == pytest.approx(np.mean(per_seed))
    assert fusion["test1_combined_std"].item() == pytest.approx(np.std(per_seed))
    predictions = pd.read_csv(out / "fusion" / "predictions" / "test1.csv")
    assert predictions["name"].tolist() == ids
    assert predictions["discrete"].tolist() == [MER_CLASSES[c] for c in probs.mean(0).argmax(1)]
    assert len(pd.read_csv(out / "fusion" / "predictions" / "test3.csv")) == 6   # unlabelled: predicted
    # its CV is nested (each fold scored with the weights chosen on the other folds; test_decision.py
    # checks the figure by hand), and the row says so
    assert fusion["cv_combined"].item() == pytest.approx(fused["cv"]["combined"]["mean"])
    assert "nested over folds" in fused["cv_weights"]
    md = (out / "leaderboard.md").read_text().splitlines()
    assert md[2].startswith(f"| [1]({os.path.relpath(runs, out)}/{trials['run'].iloc[0]}) |")
    assert md[-1].startswith("| [fusion](fusion) | fusion |") and "top 3: #1 x" in md[-1]
    assert "CV nested: each fold scored with weights chosen on the other folds" in md[-1]
    for plot in ("pair_heatmap.png", "fusion_gain.png"):
        width, height = png_size(out / plot)
        assert width > 200 and height > 200


def _same(column: pd.Series, cell: str) -> pd.Series:
    return column.fillna("") == cell


def test_a_trial_whose_worker_died_before_its_first_heartbeat_comes_back(tmp_path):
    """A worker killed between popping a trial and its first heartbeat leaves it running with no
    heartbeat record, which Optuna's own stale check skips: after the grace period (3 s here) the
    trial is failed and queued again, so the sweep ends with every key trained."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    studies.enqueue(studies.open_study(url, "s"), [("a", {}), ("b", {})])
    dead = studies.open_study(url, "s").ask()  # popped by a worker that died at once
    assert dead.user_attrs["key"] == "a"
    trained, started = [], time.time()
    finished = ([("run", {"cv": {"combined": {"mean": 1.0}}})], True)
    studies.work(studies.open_study(url, "s"), lambda key: (trained.append(key), finished)[1], deadline=started + 30)
    assert sorted(trained) == ["a", "b"]
    assert 3 <= time.time() - started < 30


def test_without_optunas_internals_the_silent_trial_check_steps_aside(tmp_path, monkeypatch, caplog):
    """The check for trials that died before their first heartbeat reads Optuna's private modules;
    if a release moves them, Optuna's own stale check still runs and a warning says what is lost."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    studies.enqueue(studies.open_study(url, "s"), [("a", {})])
    dead = studies.open_study(url, "s").ask()
    rdb = studies.storage(url)
    study_id = rdb.get_study_id_from_name("s")
    _, grace = studies.heartbeat_settings()
    time.sleep(grace + 0.5)
    assert rdb._get_stale_trial_ids(study_id) == [dead._trial_id]
    monkeypatch.setitem(sys.modules, "optuna.storages._rdb.storage", None)  # import fails
    studies._rdb_internals.cache_clear()  # looked up once per process
    try:
        with caplog.at_level("WARNING", logger="fuse.sweeps.study"):
            assert rdb._get_stale_trial_ids(study_id) == []
    finally:
        studies._rdb_internals.cache_clear()
    assert "died before their first heartbeat" in caplog.text and optuna.__version__ in caplog.text


def test_the_optuna_internals_the_sweep_reads_are_still_where_it_reads_them():
    """Fails loudly on an Optuna release that moves them (the sweep would only warn): the private
    names fuse.sweeps.study uses, all in _rdb_internals and the one method _Storage extends."""
    from optuna.storages import RDBStorage

    internals = studies._rdb_internals()
    assert internals is not None, f"Optuna {optuna.__version__} moved optuna.storages._rdb"
    models, _ = internals
    for column in ("trial_id", "study_id", "state", "datetime_start", "heartbeats"):
        assert hasattr(models.TrialModel, column), column
    assert "_get_stale_trial_ids" in vars(RDBStorage)
