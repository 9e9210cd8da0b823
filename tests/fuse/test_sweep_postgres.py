"""A sweep on a real PostgreSQL server, as a SLURM array runs it: two tasks of slurm/sweep.sbatch
on one study (the URL from the environment), one killed with SIGKILL in the middle of a trial; the
other finishes, the killed task's trial is retried once its heartbeats stop, every trial is in the
leaderboard once, and no finished run folder is trained again."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from fuse import study as studies
from tests.postgres import needs_postgres, postgres_server

from .conftest import synthetic_corpus, write_cache
from .test_sweep import FEATURES, HEARTBEAT, N_SETS, finished, items_of, trained_per_run, wait_for

REPO = Path(__file__).resolve().parents[2]


def trials_of(url: str) -> list:
    """Every sweep trial of the one study at `url`."""
    rdb = studies.storage(url)
    names = optuna.study.get_all_study_names(storage=rdb)
    if not names:
        return []
    assert len(names) == 1
    return [t for t in optuna.load_study(study_name=names[0], storage=rdb).get_trials(deepcopy=False)
            if t.user_attrs.get("key")]


def array_task(task: int, environment: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(["bash", str(REPO / "slurm" / "sweep.sbatch")], env={**environment,
                                "SLURM_ARRAY_TASK_ID": str(task)}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


@needs_postgres
def test_two_array_tasks_share_a_postgresql_study_and_one_killed_loses_nothing(tmp_path):
    manifest, arrays = synthetic_corpus()
    cache = write_cache(tmp_path / "cache", "synth", manifest, arrays)
    runs = tmp_path / "runs"
    with postgres_server() as server:
        url = server.url()
        environment = {**os.environ, **HEARTBEAT, "MER_SWEEP_STORAGE": url, "PYTHON": sys.executable,
                       "SLURM_SUBMIT_DIR": str(REPO), "DATASET": "synth", "CACHE": str(cache), "RUNS": str(runs),
                       "SWEEP_FEATURES": FEATURES, "GRID": "epochs=150;folds=2;hidden=16", "SEEDS": "1",
                       "SWEEP_OPTIONS": "--top-k 0 --out " + str(tmp_path / "out"),
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        survivor, doomed = (array_task(t, environment, tmp_path / f"task{t}.log") for t in (0, 1))
        doomed_worker = f"{socket.gethostname()}:{doomed.pid}"   # bash execs python: the same pid

        def one_done_and_doomed_training():
            done = finished(runs) if runs.is_dir() else {}
            running = [t for t in trials_of(url) if t.state == TrialState.RUNNING
                       and t.user_attrs.get("worker") == doomed_worker]
            return (done, running) if done and running else None

        try:
            before, (killed,) = wait_for(one_done_and_doomed_training, 180, "a trial finished and task 1 training",
                                         doomed)
        finally:
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait()
        survivor.wait(timeout=300)
        log = (tmp_path / "task0.log").read_text()
        assert survivor.returncode == 0, log
        trials = trials_of(url)
    after = finished(runs)
    assert len(after) == N_SETS and all(after[run] == stat for run, stat in before.items())  # none trained again
    assert max(trained_per_run(trials).values()) == 1                                         # none twice
    by_number = {t.number: t for t in trials}
    assert by_number[killed.number].state == TrialState.FAIL                                  # stale, then retried:
    assert [t.state for t in trials if t.system_attrs.get("failed_trial") == killed.number] == [TrialState.COMPLETE]
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert sorted(board["run"]) == sorted(after)                                              # every trial once
    assert "s3cret" not in log and "s3cret" not in (tmp_path / "out" / "sweep.json").read_text()
    assert {run for t in trials if t.state == TrialState.COMPLETE for run, _ in items_of(t)} == set(after)
