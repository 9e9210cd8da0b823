"""kill -9 an extraction with a speech encoder mid-run, then resume: each clip once, same values."""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
from click.testing import CliRunner

from cache import open_feature
from extract.__main__ import main
from tests.conftest import write_table
from tests.media import write_clip

N_CLIPS = 12


def test_kill_9_mid_run_then_resume(tmp_path, speech_16k, model_dir):
    rows = []
    for i in range(N_CLIPS):
        write_clip(tmp_path / f"clip{i:02d}.wav", speech_16k[: 8000 + 1600 * i] * (0.3 + 0.05 * i))
        rows.append(dict(id=f"clip{i:02d}", path=f"clip{i:02d}.wav", split="train"))
    corpus = write_table(tmp_path / "clips.csv", rows)
    args = ["--dataset", "k", "--clips", str(corpus), "--features", f"hubert=ssl:{model_dir['tiny-hubert']}",
            "--batch-seconds", "0.6", "--flush-every", "1", "--quiet"]
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-m", "extract", *args, "--cache", str(cache)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts, deadline = cache / "k" / "hubert.parts", time.monotonic() + 120
    while not list(parts.glob("*.h5")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cache / "k" / "hubert.h5").exists()  # cut before the end
    resumed = CliRunner().invoke(main, [*args, "--cache", str(cache)])
    assert resumed.exit_code == 0, resumed.output
    assert int(re.search(r"(\d+) already cached", resumed.output)[1]) >= 1  # not extracted again
    clean = CliRunner().invoke(main, [*args, "--cache", str(tmp_path / "clean")])
    assert clean.exit_code == 0, clean.output
    got, want = open_feature("k", "hubert", cache), open_feature("k", "hubert", tmp_path / "clean")
    assert got.ids == want.ids == [r["id"] for r in rows] and set(got.status) == {"ok"}
    np.testing.assert_array_equal(got.array(), want.array())
    assert not parts.exists()
