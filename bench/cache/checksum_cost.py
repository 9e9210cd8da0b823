"""What the cache's checksums cost: merging a feature's parts and reading it back (the whole
array, and 3 of its 25 layers), with and without checksums, on MER-sized data.

A per-layer feature shaped like hubert-large on MER 2023 (5,030 clips of [25, 1024] float16, 257 MB)
is committed in parts of 32 clips, as `python -m extract` commits them, then merged and read, once
per way of writing:

    before      h5py's own file driver, contiguous arrays, no checksum (the cache before checksums)
    file-object HDF5 writing through cache.hdf5's file object (a full disk raised after the close),
                contiguous arrays, no checksum: the cost of that alone
    checksums   as the cache writes now: fletcher32 chunks one layer wide, SHA-256 of the strings,
                libver v110

Each step runs in a fresh process (its time, and its peak RSS: VmHWM), --repeats times with the
three ways alternating; the fastest run of each is kept. Reads are warm (the file is in the page
cache, as right after a merge or in a second training run), timed 5 times in their process;
`read MB` is what the process asked of the kernel (rchar). The merged arrays of every way are
compared with the first's.

    python bench/cache/checksum_cost.py [--clips 5030] [--repeats 3] [--dir DIR]
"""
from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import h5py
import numpy as np

from cache import FeatureReader, FeatureWriter, checksums, hdf5, merge, store, writer as cache_writer

LAYERS, DIMS, FLUSH_EVERY = 25, 1024, 32
READS = 5
WAYS = ("before", "file-object", "checksums")


def feature_writer(root: Path) -> FeatureWriter:
    return FeatureWriter(root, "bench", "hubert-large", "fp", {"config": {}}, flush_every=FLUSH_EVERY)


def use(way: str):
    """Make this process write as `way` does (see the module docstring)."""
    if way == "checksums":
        return

    def plain_numbers(group, name, data=None, shape=None, dtype=None, by_layer=True):
        return group.create_dataset(name, shape, dtype, data=data)

    def plain_strings(group, name, values):
        return group.create_dataset(name, data=np.asarray(values, dtype=object), dtype=checksums.STR)

    for module in (store, merge):
        module.create_numbers, module.create_strings = plain_numbers, plain_strings
        module.seal_attrs = lambda f: None
    checksums.StringsDigest.seal = lambda self, dset: None
    if way == "before":
        @contextlib.contextmanager
        def sec2(tmp, path):
            with h5py.File(tmp, "w") as f:
                yield f, lambda: None
        store.create = cache_writer.create = sec2
    else:
        hdf5.LIBVER = ("earliest", "latest")


def bytes_read() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar"))


def peak_rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def child(task: str, way: str, root: Path, n: int):
    """One measured step in this (fresh) process; prints seconds, MB read, peak RSS as JSON. A read
    is timed READS times in the process (the fastest kept): warm, as a training run reads."""
    use(way)
    w = feature_writer(root)
    before, start = bytes_read(), time.perf_counter()
    if task == "parts":
        base = np.random.default_rng(0).standard_normal((LAYERS, DIMS)).astype(np.float16)
        for i in range(n):
            w.put(f"sample_{i:08d}", {"mean": base + np.float16(i % 100)})
        w.flush()
    elif task == "merge":
        assert w.merge()
    else:
        print(json.dumps(timed_read(w.path, None if task == "read all" else [18, 19, 20], n)))
        return
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "read_mb": (bytes_read() - before) / 1e6, "rss": peak_rss_mib()}))


def timed_read(path: Path, layers, n: int) -> dict:
    """The fastest of READS reads of the array (all layers, or `layers`), ids and status read first."""
    runs = []
    with FeatureReader(path) as feat:
        assert len(feat.ok_ids()) == n
        for _ in range(READS):
            before, start = bytes_read(), time.perf_counter()
            x = feat.array(layers=layers)
            runs.append({"seconds": time.perf_counter() - start, "read_mb": (bytes_read() - before) / 1e6})
            assert x.shape == (n, len(layers) if layers else LAYERS, DIMS)
            del x
    return min(runs, key=lambda r: r["seconds"]) | {"rss": peak_rss_mib()}


def measure(task: str, way: str, root: Path, n: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", task, "--way", way, "--dir", str(root),
                           "--clips", str(n)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.splitlines()[-1])


def run_once(way: str, n: int, folder: Path) -> tuple[list[dict], Path]:
    """Every step once for `way`, in a folder of its own; returns (rows, the merged file)."""
    root = Path(tempfile.mkdtemp(prefix=f"{way}-", dir=folder))
    rows = [dict(step="commit parts", **measure("parts", way, root, n)),
            dict(step="merge", **measure("merge", way, root, n))]
    rows += [dict(step=task, **measure(task, way, root, n)) for task in ("read all", "read 3 of 25 layers")]
    path = feature_writer(root).path
    return rows + [dict(step="file size", seconds=0.0, read_mb=path.stat().st_size / 1e6, rss=0.0)], path


def bench(n: int, repeats: int, folder: Path) -> dict[str, list[dict]]:
    """{way: rows}, each step's fastest of `repeats` runs; the ways alternate within a repeat
    (a drift of the machine hits them alike)."""
    best: dict[str, list[dict]] = {}
    for _ in range(repeats):
        merged = {}
        for way in WAYS:
            rows, merged[way] = run_once(way, n, folder)
            best[way] = [min(a, b, key=lambda r: r["seconds"]) for a, b in zip(best.get(way, rows), rows)]
        for way in WAYS[1:]:
            assert same_arrays(merged[WAYS[0]], merged[way]), f"{way}: merged arrays differ"
        for path in merged.values():
            shutil.rmtree(path.parent.parent)
    return best


def same_arrays(a: Path, b: Path, step: int = 512) -> bool:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        da, db = fa["arrays/mean"], fb["arrays/mean"]
        return da.shape == db.shape and all(np.array_equal(da[i:i + step], db[i:i + step])
                                            for i in range(0, da.shape[0], step))


@click.command()
@click.option("--clips", "n", default=5030, show_default=True, help="Clips (MER 2023: 5,030 with its tests).")
@click.option("--repeats", default=3, show_default=True, help="Runs of every step; the fastest is kept.")
@click.option("--dir", "folder", default=None, help="Where to write (default: the temp folder).")
@click.option("--child", "task", default=None, hidden=True)
@click.option("--way", default=None, hidden=True)
def main(n, repeats, folder, task, way):
    if task:
        return child(task, way, Path(folder), n)
    work = Path(tempfile.mkdtemp(prefix="checksum-cost-", dir=folder))
    try:
        results = bench(n, repeats, work)
    finally:
        shutil.rmtree(work)
    print(f"{n} clips x [{LAYERS}, {DIMS}] float16 ({n * LAYERS * DIMS * 2 / 1e6:.0f} MB), parts of {FLUSH_EVERY}\n")
    print("| step | " + " | ".join(f"{w} s" for w in WAYS)
          + " | checksums / before | read MB (checksums) | peak RSS MiB (checksums) |")
    print("| --- " * (len(WAYS) + 4) + "|")
    for i, row in enumerate(results["checksums"]):
        if row["step"] == "file size":
            sizes = " | ".join(f"{results[w][i]['read_mb']:.1f} MB" for w in WAYS)
            print(f"| file size | {sizes} | {row['read_mb'] / results['before'][i]['read_mb']:.3f}x | | |")
            continue
        times = " | ".join(f"{results[w][i]['seconds']:.2f}" for w in WAYS)
        ratio = row["seconds"] / results["before"][i]["seconds"]
        print(f"| {row['step']} | {times} | {ratio:.2f}x | {row['read_mb']:.0f} | {row['rss']:.0f} |")


if __name__ == "__main__":
    main()
