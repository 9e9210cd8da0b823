"""Shards sharing one cache folder: real processes, a real kill -9, another machine's files."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from cache import commit, open_feature
from cache.verify import verify_file
from tests.cache.shard_worker import DATASET, FEATURE, clip_ids, features_of, shard_of, writer

N_SHARDS, N_CLIPS = 4, 40


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.cache.shard_worker", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def finish(proc) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out)


def test_shards_started_together_one_killed_9_and_restarted(tmp_path):
    counts = {k: sum(shard_of(cid, N_SHARDS) == k for cid in clip_ids(N_CLIPS)) for k in range(1, N_SHARDS + 1)}
    victim = max(counts, key=counts.get)
    procs = {k: start("shard", tmp_path, k, N_SHARDS, N_CLIPS, 0.05) for k in counts}
    w = writer(tmp_path)
    wait_for(lambda: list(w.parts.glob(f"*-s{victim}of{N_SHARDS}-*.h5")), procs[victim])
    os.kill(procs[victim].pid, signal.SIGKILL)
    procs[victim].wait()
    assert procs[victim].returncode == -signal.SIGKILL
    procs[victim] = start("shard", tmp_path, victim, N_SHARDS, N_CLIPS, 0.05)
    results = {k: finish(p) for k, p in procs.items()}
    assert results[victim]["skipped"] >= 2  # its committed clips were not extracted again
    assert any(r["merged"] for r in results.values())
    with open_feature(DATASET, FEATURE, tmp_path) as feat:
        assert feat.ids == clip_ids(N_CLIPS) and set(feat.status) == {"ok"}  # every clip exactly once
        for cid in feat.ids:
            x, frames = features_of(cid)
            np.testing.assert_array_equal(feat.array(ids=[cid])[0], x)
            np.testing.assert_array_equal(feat.sequence(cid), frames)
    assert verify_file(w.path).problems == []
    assert not w.parts.exists() and not w.lock.exists()
    assert not list(tmp_path.rglob("*.tmp-*"))  # the killed shard's temporaries too


def test_reading_while_another_process_merges(tmp_path):
    churn = start("churn", tmp_path, 40)
    reader, seen, reads = writer(tmp_path), set(), 0
    while churn.poll() is None or reads == 0:
        done = reader.done_ids()  # parts deleted and the file replaced under it: never a crash
        reader.check_config()
        assert seen <= done  # a snapshot never loses what an earlier one held
        seen, reads = done, reads + 1
    _, err = churn.communicate()
    assert churn.returncode == 0, err
    assert reader.done_ids() == {f"round{r:03d}{s}" for r in range(40) for s in "ab"}
    assert reads > 5


def test_a_merger_killed_9_holding_the_lease(tmp_path):
    holder = start("hold", tmp_path)
    assert holder.stdout.readline() == "held\n"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    w = writer(tmp_path)
    leftover = w.path.with_name(f".{w.path.name}.tmp-{holder.pid}@{commit.machine()}")
    assert w.lock.exists() and leftover.exists()
    w.put("a", {"x": np.ones(4, np.float32)})
    started = time.monotonic()
    assert w.merge(["a"])
    assert time.monotonic() - started < 5  # a dead holder on this machine: taken over at once
    assert not leftover.exists() and not w.lock.exists()


def test_another_machines_lease_and_temporaries_are_respected(tmp_path, monkeypatch):
    monkeypatch.setattr(commit, "LEASE_SECONDS", 1.0)
    w = writer(tmp_path, shard=(1, 2))
    w.put("a", {"x": np.ones(4, np.float32)})
    w.flush()
    # node-b holds the merge lease and writes a part and a feature file: its pid means nothing here
    w.lock.write_text("filelock/2\npid=4242\nhost=node-b\nmode=lease\ntoken=0123abcd\nduration=1.0\n")
    theirs = [w.parts / ".00000000000000000001-s2of2-4242@node-b.h5.tmp-4242@node-b",
              w.path.with_name(f".{w.path.name}.tmp-4242@node-b")]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    ours = w.parts / f".x.h5.tmp-{int(dead.stdout)}@{commit.machine()}"  # a dead process of this machine
    for path in theirs + [ours]:
        path.write_bytes(b"in flight")
    started = time.monotonic()
    assert w.merge(["a"])
    assert time.monotonic() - started >= 0.9  # waited until node-b's lease went unrefreshed
    assert all(path.read_bytes() == b"in flight" for path in theirs) and not ours.exists()
    assert sorted(p.name for p in w.parts.iterdir()) == [theirs[0].name]
    assert open_feature(DATASET, FEATURE, tmp_path).ids == ["a"]
