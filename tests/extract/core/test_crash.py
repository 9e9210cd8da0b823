"""kill -9 a real extraction mid-run: every file under its final name stays readable, and the
re-run resumes and ends with every clip exactly once."""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from cache import open_feature
from tests.conftest import write_table
from tests.media import write_clip

N_CLIPS = 16


@pytest.fixture
def wav_corpus(tmp_path, speech_16k):
    rows = []
    for i in range(N_CLIPS):
        name = f"clip{i:02d}"
        gain = 0.3 + 0.04 * i  # distinct clips, distinct features
        write_clip(tmp_path / f"{name}.wav", speech_16k * gain)
        rows.append(dict(id=name, path=f"{name}.wav", split="train"))
    return write_table(tmp_path / "clips.csv", rows)


def command(corpus, cache):
    return [sys.executable, "-m", "extract", "--dataset", "crash", "--clips", str(corpus),
            "--features", "is10,mfcc", "--cache", str(cache), "--flush-every", "2", "--quiet"]


def test_kill_9_mid_run_then_resume(wav_corpus, tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.Popen(command(wav_corpus, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = [cache / "crash" / f"{feature}.parts" for feature in ("is10", "mfcc")]
    deadline = time.monotonic() + 120
    while not all(list(p.glob("*.h5")) for p in parts) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (cache / "crash" / "is10.h5").exists()  # the run was cut before it finished
    committed = sorted(cache.rglob("*.h5"))
    assert committed
    for path in committed:  # every file under its final name opens and reads (features, clip table)
        with h5py.File(path, "r") as f:
            assert len(f["ids"]) == len(f["status" if path.name != "_clips.h5" else "split"]) > 0
    resumed = subprocess.run(command(wav_corpus, cache), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    skipped = int(resumed.stdout.split(";")[1].split()[0])
    assert skipped >= 2  # clips committed for both features were not extracted again
    for feature in ("is10", "mfcc"):
        feat = open_feature("crash", feature, cache)
        assert feat.ids == [f"clip{i:02d}" for i in range(N_CLIPS)]  # each clip exactly once
        assert set(feat.status) == {"ok"}
        assert not np.isnan(feat.array()).any()
        assert not (cache / "crash" / f"{feature}.parts").exists()
