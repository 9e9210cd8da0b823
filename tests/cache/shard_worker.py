"""Processes that write one feature together, for test_shards.py (run with `python -m`).

    shard ROOT K N CLIPS SECONDS   one shard of an extraction: resume, put its clips, merge
    churn ROOT ROUNDS              commit two clips and merge, ROUNDS times (parts come and go)
    hold ROOT                      take the merge lease, leave a temporary, sleep (to be killed)
"""
import json
import sys
import time
import zlib

import numpy as np

from cache import FeatureWriter
from cache.commit import merge_lease, temporary

DATASET, FEATURE = "shards", "rms"


def clip_ids(n: int) -> list[str]:
    return [f"clip{i:03d}" for i in range(n)]


def shard_of(clip_id: str, n: int) -> int:
    return zlib.crc32(clip_id.encode()) % n + 1


def features_of(clip_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The clip's array x [4] and frame sequence [T, 2], both derived from its id alone."""
    code = zlib.crc32(clip_id.encode())
    return np.full(4, code % 997, np.float32), np.full((code % 5 + 1, 2), code % 13, np.float32)


def writer(root, shard=(1, 1)) -> FeatureWriter:
    return FeatureWriter(root, DATASET, FEATURE, "fp1", {"config": {}}, shard=shard, flush_every=2)


def shard(root, k, n, n_clips, seconds):
    ids = clip_ids(int(n_clips))
    k, n = int(k), int(n)
    w = writer(root, (k, n))
    w.check_config()
    done = w.done_ids()
    mine = [cid for cid in ids if shard_of(cid, n) == k]
    todo = [cid for cid in mine if cid not in done]
    for cid in todo:
        time.sleep(float(seconds))  # the cost of extracting a clip
        x, frames = features_of(cid)
        w.put(cid, {"x": x}, {"frames": frames})
    merged = w.merge(ids)
    print(json.dumps({"shard": k, "skipped": len(mine) - len(todo), "merged": merged}), flush=True)


def churn(root, rounds):
    w = writer(root)
    for r in range(int(rounds)):
        for cid in (f"round{r:03d}a", f"round{r:03d}b"):
            x, frames = features_of(cid)
            w.put(cid, {"x": x}, {"frames": frames})
        w.merge()  # replaces the feature file, deletes the parts


def hold(root):
    w = writer(root)
    with merge_lease(w.lock):
        temporary(w.path).write_bytes(b"half a merge")
        print("held", flush=True)
        time.sleep(60)


if __name__ == "__main__":
    {"shard": shard, "churn": churn, "hold": hold}[sys.argv[1]](*sys.argv[2:])
