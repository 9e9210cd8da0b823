"""Ctrl-C (a real SIGINT to the command's process group, as a terminal sends it) ends fuse.train and
fuse.sweep with one line and exit 130, leaves no temporary behind, and a rerun completes."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.fuse.conftest import synthetic_corpus, write_cache
from tests.fuse.sweeps.test_sweep import HEARTBEAT, N_SETS, args_for, finished, run_of, study_trials, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    manifest, arrays = synthetic_corpus()
    return write_cache(tmp_path_factory.mktemp("interrupts") / "cache", "synth", manifest, arrays)


def environment():
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **HEARTBEAT, "PYTHONPATH": path}


def start(args, base: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """`python -m ARGS` in a session of its own (its workers with it), output to a log."""
    log = base / f"{name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", *map(str, args)], cwd=base, env=environment(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def ctrl_c(proc: subprocess.Popen) -> str:
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if ".tmp-" in p.name or ".fuse-" in p.name)


def assert_ended_with_one_line(proc, log: Path, kept: str):
    text = log.read_text()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert text.strip().splitlines()[-1] == f"interrupted: {kept}", text


def test_ctrl_c_in_training_ends_with_one_line_and_writes_nothing(cache, tmp_path):
    out = tmp_path / "runs" / "long"
    proc, log = start(["fuse.train", "--cache", cache, "--features", "A=acoustic;V=visual", "--epochs", 100000,
                       "--out", out], tmp_path, "train")
    try:   # its progress line comes after 10 s of training
        wait_for(lambda: "epoch" in log.read_text(), 90, "training to start", proc)
    finally:
        ctrl_c(proc)
    assert_ended_with_one_line(proc, log, "no run folder was written (an earlier one at --out is kept as it was)")
    assert not out.exists() and leftovers(tmp_path / "runs") == []


def test_ctrl_c_in_a_sweep_with_workers_keeps_finished_trials_and_a_rerun_completes(cache, tmp_path):
    runs = tmp_path / "runs"
    sweep = ["fuse.sweep", *args_for(cache, tmp_path, grid="epochs=400;folds=2;hidden=16")]
    proc, log = start([*sweep, "--workers", "2"], tmp_path, "sweep")

    def one_done_two_running():
        if not (runs / "study.db").exists():
            return None
        done = finished(runs)
        running = [t for t in study_trials(runs) if t.state == TrialState.RUNNING and run_of(t) not in done]
        return done if done and len(running) == 2 else None

    try:
        wait_for(one_done_two_running, 120, "a trial finished and two running", proc)
    finally:
        ctrl_c(proc)
    assert_ended_with_one_line(proc, log, "finished trials are kept; run the same command to resume")
    before = finished(runs)
    assert 0 < len(before) < N_SETS and leftovers(tmp_path) == []
    states = [t.state for t in study_trials(runs)]
    assert TrialState.RUNNING not in states and TrialState.FAIL in states   # the stopped ones: failed, not stuck

    rerun = subprocess.run([sys.executable, "-m", *map(str, sweep)], cwd=tmp_path, env=environment(),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    after = finished(runs)
    assert len(after) == N_SETS and all(after[run] == stat for run, stat in before.items())
    assert leftovers(tmp_path) == []
