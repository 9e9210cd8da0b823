"""Peak memory and time of merging a feature's parts: the streamed merge against the in-memory
merge it replaced, on synthetic parts shaped like MER-SEMI's e2el-spectrogram.

Each clip holds float16 pieces [32, 128, 32] (262 KB) and an int32 n_pieces, committed by 4
shards 32 clips a part, as `python -m extract --shard K/4` commits them. Each merge (and each
verify) runs in a fresh process; its peak RSS is that process's VmHWM. The in-memory merge is
reproduced from h5py reads as the previous code did it (every part read whole into per-clip
rows, then stacked); it runs only up to --in-memory-up-to clips (it needs twice the feature in
RAM). Both merged files are compared block by block. Files are deleted after each size.

    python bench/cache/merge_memory.py [--clips 2000,8000,20000] [--in-memory-up-to 8000] [--dir DIR]
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import click
import h5py
import numpy as np

from cache import FeatureWriter, commit
from cache.store import FAILED, STR
from cache.verify import verify_file

SHARDS, FLUSH_EVERY, PIECES = 4, 32, (32, 128, 32)


def writer(root, shard=(1, 1)) -> FeatureWriter:
    return FeatureWriter(root, "bench", "e2el-spectrogram", "fp", {"config": {}}, shard=shard,
                         flush_every=FLUSH_EVERY)


def write_parts(root: Path, n: int) -> int:
    """Commit n clips in parts, shard by shard as the runs would; returns the number of parts."""
    base = np.random.default_rng(0).standard_normal(PIECES).astype(np.float16)
    ids = [f"sample_{i:08d}" for i in range(n)]
    shards = {k: writer(root, (k, SHARDS)) for k in range(1, SHARDS + 1)}
    for i, cid in enumerate(ids):
        shard = shards[zlib.crc32(cid.encode()) % SHARDS + 1]
        shard.put(cid, {"pieces": base + np.float16(i % 1000), "n_pieces": np.int32(i % 33)})
    for shard in shards.values():
        shard.flush()
    return len(writer(root).committed_files())


def merge_in_memory(files: list[Path], out: Path):
    """The merge before streaming: every file read whole into per-clip rows, stacked, written."""
    columns, rows = {}, {}
    for path in files:
        with h5py.File(path, "r") as f:
            ids, status = list(f["ids"].asstr()[()]), f["status"][()]
            for cid, code, reason, source in zip(ids, status, f["reason"].asstr()[()], f["source"].asstr()[()]):
                columns[cid] = (code, reason, source)
            for key, dset in f["arrays"].items():
                data = dset[()]
                for i, cid in enumerate(ids):
                    if status[i] != FAILED:
                        rows.setdefault(key, {})[cid] = data[i]
    ids = sorted(columns)
    with h5py.File(out, "w") as f:
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=STR)
        f.create_dataset("status", data=np.array([columns[c][0] for c in ids], np.uint8))
        for i, name in ((1, "reason"), (2, "source")):
            f.create_dataset(name, data=np.array([columns[c][i] for c in ids], dtype=object), dtype=STR)
        for key, values in rows.items():
            sample = next(iter(values.values()))
            fill = np.nan if sample.dtype.kind == "f" else 0
            stacked = np.full((len(ids),) + sample.shape, fill, sample.dtype)
            for row, cid in enumerate(ids):
                stacked[row] = values[cid]
            f.create_dataset(f"arrays/{key}", data=stacked)


def verify_in_memory(path: Path):
    """The verify before streaming: each float array loaded whole."""
    with h5py.File(path, "r") as f:
        for dset in f["arrays"].values():
            if dset.dtype.kind == "f":
                np.isfinite(dset[()].reshape(dset.shape[0], -1)).any(axis=1)


def child(task: str, root: str):
    """One measured step, in this (fresh) process: prints seconds, fsync seconds, peak RSS."""
    import cache

    assert Path(cache.__file__).parent == Path(__file__).resolve().parents[2] / "cache", cache.__file__
    root, synced = Path(root), [0.0]
    fsync_file = commit._fsync_file

    def timed_fsync(path):
        start = time.perf_counter()
        fsync_file(path)
        synced[0] += time.perf_counter() - start

    commit._fsync_file = timed_fsync
    w = writer(root)
    start = time.perf_counter()
    if task == "merge-in-memory":
        merge_in_memory(w.committed_files(), root / "in-memory.h5")
    elif task == "merge-streamed":
        assert w.merge()
    elif task == "verify-in-memory":
        verify_in_memory(w.path)
    elif task == "verify-streamed":
        assert verify_file(w.path).problems == []
    seconds = time.perf_counter() - start
    rss = peak_rss_mib()
    print(json.dumps({"seconds": seconds, "fsync": synced[0], "rss": rss}))


def peak_rss_mib() -> float:
    """This process's peak RSS since its exec (VmHWM: ru_maxrss would count the parent's memory
    at fork time too)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def measure(task: str, root: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", task, "--dir", str(root)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.splitlines()[-1])


def same_arrays(a: Path, b: Path, step: int = 256) -> bool:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for key in fa["arrays"]:
            da, db = fa[f"arrays/{key}"], fb[f"arrays/{key}"]
            if da.shape != db.shape or any(not np.array_equal(da[i:i + step], db[i:i + step])
                                           for i in range(0, da.shape[0], step)):
                return False
        return list(fa["ids"].asstr()[()]) == list(fb["ids"].asstr()[()])


def bench_size(n: int, folder: Path, in_memory: bool) -> list[str]:
    root = Path(tempfile.mkdtemp(prefix=f"merge-{n}-", dir=folder))
    try:
        parts = write_parts(root, n)
        tasks = (["merge-in-memory"] if in_memory else []) + ["merge-streamed"]
        tasks += (["verify-in-memory"] if in_memory else []) + ["verify-streamed"]
        lines = []
        for task in tasks:
            r = measure(task, root)
            sync = f" ({r['fsync']:.1f} fsync)" if r["fsync"] else ""
            lines.append(f"| {task} | {n} | {parts} | {r['seconds']:.1f}{sync} | "
                         f"{r['seconds'] / n:.4f} | {r['rss']:.0f} |")
            print(lines[-1], flush=True)
        if in_memory:
            assert same_arrays(root / "in-memory.h5", writer(root).path), "merges differ"
        return lines
    finally:
        shutil.rmtree(root)


@click.command()
@click.option("--clips", default="2000,8000,20000", show_default=True, help="Comma-separated sizes.")
@click.option("--in-memory-up-to", default=8000, show_default=True, help="Largest size for the old merge.")
@click.option("--dir", "folder", default=None, help="Where to write the parts (default: the temp folder).")
@click.option("--child", "task", default=None, hidden=True)
def main(clips, in_memory_up_to, folder, task):
    if task:
        return child(task, folder)
    folder = Path(folder or tempfile.gettempdir())
    with tempfile.TemporaryDirectory(dir=folder) as empty:
        baseline = measure("none", Path(empty))["rss"]
    lines = [f"python + numpy + h5py + cache imported: {baseline:.0f} MiB peak RSS", "",
             "| step | clips | parts | seconds | s/clip | peak RSS MiB |", "| --- | --- | --- | --- | --- | --- |"]
    print("\n".join(lines), flush=True)
    for n in (int(c) for c in clips.split(",")):
        lines += bench_size(n, folder, n <= in_memory_up_to)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
