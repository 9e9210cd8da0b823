"""Stage-2 training speed: `python -m fuse.train` against the MER 2023 baseline's own script.

Both train the attention-fusion model with 5-fold CV on the same synthetic MER-shaped problem
(bench/fuse/mer_shaped.py: 3373 training clips, test1 411, test2 412, three 1024-d features), built
once in a temporary folder. The official script is not part of this project: pass a checkout of
the MER 2023 baseline repository with --official. It runs from a temporary folder as a copy
patched at run time for a CPU (its `.cuda()` calls removed), with a `config.py` there that points
at the synthetic features. Seconds are wall clock, the official script's feature loading included
(shown apart, timed from its own progress lines).

    python bench/fuse/fuse_speed.py --official DIR [--epochs 100] [--seeds 1] [--runs 1] [--out DIR]
                               [--only official|ours] [--precision fp32,bf16] [--no-quick]

Also timed, in the same run: a quick re-implementation of the official loop, batched plainly
(bench/fuse/quick_attention.py: fp32, one seed), the matrix-product floor, and that floor plus torch's
fused Adam every step (bench/fuse/matmul_floor.py).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from matmul_floor import run_floor
from mer_shaped import MODALITIES, SPLIT_SIZES, generate, write_cache, write_official
from runs import FuseFailed, train

OFFICIAL_SCRIPT = "main-release.py"
# (what, pattern, replacement): each must match, so a changed upstream file is noticed
CPU_PATCHES = (("torch.cuda.set_device call", r"torch\.cuda\.set_device\(args\.gpu\)", "pass"),
               (".cuda() calls", r"\.cuda\(\)", ""))
FEATURES = {m: spec.feature for m, spec in zip("ALV", MODALITIES.values())}
METRIC_LINE = re.compile(r"(cv|test1|test2)_features:\S*?_f1:(-?[\d.]+)_val:(-?[\d.]+)_metric:(-?[\d.]+)_")


def patched_official(official_dir: Path) -> str:
    """main-release.py of the checkout with its GPU calls removed; raises if a patch finds nothing."""
    source = Path(official_dir) / OFFICIAL_SCRIPT
    if not source.is_file():
        raise click.BadParameter(f"{source} not found: pass a checkout of the MER 2023 baseline",
                                 param_hint="--official")
    text = source.read_text()
    for what, pattern, replacement in CPU_PATCHES:
        text, count = re.subn(pattern, replacement, text)
        if not count:
            raise click.ClickException(f"{source}: no {what} found to patch (has the script changed?)")
    if re.search(r"\.cuda\b", text):
        raise click.ClickException(f"{source}: a CUDA call is left after patching (has the script changed?)")
    return text


def prepare_official(workdir: Path, script: str, features_root: Path, label_path: Path):
    """The patched script and a config.py naming the synthetic inputs, in `workdir`."""
    (workdir / OFFICIAL_SCRIPT).write_text(script)
    (workdir / "config.py").write_text(
        f"PATH_TO_FEATURES = {{'MER2023': {str(features_root)!r}}}\n"
        f"PATH_TO_LABEL = {{'MER2023': {str(label_path)!r}}}\n")


def run_official(workdir: Path, epochs: int, log: Path) -> dict:
    """One run of the official script; seconds (wall, load, training) and its printed metrics."""
    args = [sys.executable, "-u", OFFICIAL_SCRIPT, "--dataset=MER2023", "--model_type=attention",
            f"--audio_feature={FEATURES['A']}", f"--text_feature={FEATURES['L']}",
            f"--video_feature={FEATURES['V']}", "--lr=1e-3", "--epochs", str(epochs),
            "--test_sets=test1,test2"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]))
    stamped = []  # (seconds since start, line): its stdout carries no times of its own
    start = time.perf_counter()
    with open(log.with_suffix(".stderr"), "w") as stderr, open(log, "w", buffering=1) as out:
        with subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=stderr,
                              text=True) as proc:
            for line in proc.stdout:  # the log follows the run, line by line
                stamped.append((time.perf_counter() - start, line.rstrip("\n")))
                out.write(f"{stamped[-1][0]:9.2f}  {stamped[-1][1]}\n")
    seconds = time.perf_counter() - start
    if proc.returncode:
        tail = log.with_suffix(".stderr").read_text()[-2000:]
        raise RuntimeError(f"official script exited with {proc.returncode}; stderr ends:\n{tail}")
    return {"seconds": seconds, **official_times(stamped), **official_metrics(stamped)}


def official_times(stamped: list[tuple[float, str]]) -> dict:
    """Feature loading (between its 'Reading Data' and 'Training' banners) and the sum of its
    per-fold durations (training + the test pass it runs every epoch)."""
    marks = {key: t for t, line in stamped for key in ("Reading Data", "Training and Evaluation")
             if f"====== {key}" in line}
    folds = [float(m.group(1)) for _, line in stamped if (m := re.search(r"duration: ([\d.]+)", line))]
    load = marks["Training and Evaluation"] - marks["Reading Data"] if len(marks) == 2 else None
    return {"load_seconds": load, "fold_seconds": sum(folds) if folds else None}


def official_metrics(stamped: list[tuple[float, str]]) -> dict:
    """{'cv'|'test1'|'test2': {weighted_f1, mse, combined}} from the result file names it prints."""
    out = {}
    for _, line in stamped:
        if line.startswith("save results in") and (m := METRIC_LINE.search(line)):
            out[m.group(1)] = dict(zip(("weighted_f1", "mse", "combined"), map(float, m.groups()[1:])))
    if "cv" not in out:
        raise RuntimeError("no CV result line ('save results in ...cv_features:..._f1:') in its output")
    return out


def run_ours(cache_root: Path, dataset: str, extra_args) -> dict:
    """One `python -m fuse.train` run on the cached problem with the official model's settings;
    `extra_args` e.g. ['--epochs', '100', '--seeds', '1', '--precision', 'fp32']. Returns its
    metrics.json with 'seconds' (wall clock of the whole command) and 'train_seconds' (its own)."""
    metrics = train(["--dataset", dataset, "--cache", cache_root, "--modalities", "A,L,V",
                     "--features", ";".join(f"{m}={f}" for m, f in FEATURES.items()),
                     "--model", "attention", "--attention-scores", "raw", "--dropout", "0.3", "--lr", "1e-3",
                     "--hidden", "256,128", "--batch-size", "32", "--folds", "5", *extra_args],
                    Path(tempfile.mkdtemp(prefix="run-", dir=cache_root)))
    return {**metrics, "train_seconds": metrics.get("seconds"), "seconds": metrics["wall"]}


def summarise(runs: list[dict]) -> dict:
    """Official runs (one per seed) -> metrics as {mean, std} per split, as metrics.json has them."""
    out = {}
    for split in ("cv", "test1", "test2"):
        if all(split in r for r in runs):
            out[split] = {k: {"mean": float(np.mean([r[split][k] for r in runs])),
                              "std": float(np.std([r[split][k] for r in runs]))}
                          for k in ("weighted_f1", "mse", "combined")}
    return out


def table(rows: list[dict]) -> str:
    """Markdown: one row per approach and precision; seconds are medians over --runs."""
    # the official script trains one seed per run: S seeds cost S of its runs
    official = next((r["seconds"] / r["seeds"] for r in rows if r["approach"].startswith("official")), None)
    lines = ["| approach | seeds | precision | seconds | of which loading | ratio vs official | "
             "CV F1 | CV MSE | CV combined | test1 combined |", "| --- " * 10 + "|"]

    def metric(r, split, key):
        m = r.get("metrics", {}).get(split, {}).get(key)
        if not m:
            return "-"
        return f"{m['mean']:.3f}" if r["seeds"] == 1 else f"{m['mean']:.3f} +- {m['std']:.3f}"

    for r in rows:
        ratio = f"{official * r['seeds'] / r['seconds']:.2f}x" if official and r.get("seconds") else "-"
        failure = (r.get("error") or "?").splitlines()[0][-90:]
        seconds = f"{r['seconds']:.1f}" if r.get("seconds") else f"failed: {failure}"
        load = f"{r['load_seconds']:.1f}" if r.get("load_seconds") else "-"
        lines.append(f"| {r['approach']} | {r['seeds']} | {r['precision']} | {seconds} | {load} | {ratio} | "
                     f"{metric(r, 'cv', 'weighted_f1')} | {metric(r, 'cv', 'mse')} | "
                     f"{metric(r, 'cv', 'combined')} | {metric(r, 'test1', 'combined')} |")
    return "\n".join(lines)


def bench_official(workdir: Path, epochs: int, seeds: int, runs: int, logs: Path) -> dict:
    """`seeds` official runs in a row per timing (its --seed is never applied: each run draws
    its own folds and initialisation), timed `runs` times."""
    timings, results = [], []
    for run in range(runs):
        seed_results = [run_official(workdir, epochs, logs / f"official-run{run}-seed{s}.log")
                        for s in range(seeds)]
        timings.append(sum(r["seconds"] for r in seed_results))
        results += seed_results
    load = [r["load_seconds"] for r in results if r["load_seconds"] is not None]
    return {"approach": "official main-release.py", "seeds": seeds, "precision": "fp32",
            "seconds": float(np.median(timings)), "timings": timings,
            "load_seconds": float(np.median(load)) * seeds if load else None,
            "metrics": summarise(results), "runs": results}


def bench_ours(cache: Path, dataset: str, epochs: int, seeds: int, runs: int, precision: str) -> dict:
    row = {"approach": "ours: python -m fuse.train", "seeds": seeds, "precision": precision}
    try:
        results = [run_ours(cache, dataset, ["--epochs", epochs, "--seeds", seeds, "--precision", precision])
                   for _ in range(runs)]
    except (FuseFailed, OSError) as error:
        return {**row, "error": str(error)}
    timings = [r["seconds"] for r in results]
    return {**row, "seconds": float(np.median(timings)), "timings": timings,
            "load_seconds": results[-1].get("load_seconds"), "metrics": results[-1], "runs": results}


def bench_floor(epochs: int, seeds: int, precision: str = "fp32", optimizer: bool = False) -> dict:
    """The matrix-product floor of the same run (bench/fuse/matmul_floor.py) in that precision, the
    faster of 1 and 2 threads; `optimizer`: plus torch's fused Adam every step."""
    import torch

    before = torch.get_num_threads()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    timings = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        timings[threads] = run_floor(SPLIT_SIZES["train"], 5, seeds, epochs, 32, [1024] * 3, dtype=dtype,
                                     optimizer=optimizer)
    torch.set_num_threads(before)
    best = min(timings, key=timings.get)
    what = "matrix products + fp32 Adam" if optimizer else "matrix-product"
    return {"approach": f"{what} floor ({best} thread{'s' * (best > 1)})", "seeds": seeds,
            "precision": precision, "seconds": timings[best], "timings": timings}


def bench_quick(problem, workdir: Path, epochs: int) -> dict:
    """The quick re-implementation of the official loop (bench/fuse/quick_attention.py), fp32, one seed,
    in a process of its own (wall clock, its imports included, as ours)."""
    arrays = workdir / "arrays.npz"
    np.savez(arrays, a=problem.features[FEATURES["A"]], l=problem.features[FEATURES["L"]],
             v=problem.features[FEATURES["V"]], label=problem.label, valence=problem.valence,
             split=problem.split.astype(str))
    row = {"approach": "quick re-implementation (bench/fuse/quick_attention.py)", "seeds": 1, "precision": "fp32"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("quick_attention.py")), str(arrays),
                           "--epochs", str(epochs), "--json", str(workdir / "quick.json")],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        return {**row, "error": f"exited with {proc.returncode}: {proc.stderr[-2000:]}"}
    metrics = json.loads((workdir / "quick.json").read_text())
    return {**row, "seconds": seconds, "metrics": metrics}


@click.command()
@click.option("--official", "official_dir", type=click.Path(file_okay=False, path_type=Path),
              help="A checkout of the MER 2023 baseline repository (holds main-release.py).")
@click.option("--epochs", default=100, show_default=True)
@click.option("--seeds", default=1, show_default=True,
              help="Ours: 1 and this many seeds; the official script runs once (its seed is never applied), "
                   "its time times S is what S seeds cost it.")
@click.option("--runs", default=1, show_default=True, help="Timings of each approach (median shown).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the table, the raw results (JSON) and the official script's logs.")
@click.option("--only", type=click.Choice(["official", "ours"]), help="Time one approach only.")
@click.option("--precision", default="fp32", show_default=True, help="Ours: comma-separated, fp32,bf16.")
@click.option("--data-seed", default=0, show_default=True, help="Seed of the synthetic problem.")
@click.option("--quick/--no-quick", default=True, show_default=True,
              help="Also time the quick re-implementation (bench/fuse/quick_attention.py; fp32, one seed).")
def main(official_dir, epochs, seeds, runs, out, only, precision, data_seed, quick):
    if only != "ours" and official_dir is None:
        raise click.UsageError("--official DIR is required unless --only ours")
    script = patched_official(official_dir) if only != "ours" else None  # refuse before any work
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fuse-speed-") as tmp:
        tmp = Path(tmp)
        problem = generate(data_seed)
        logs = out or tmp
        logs.mkdir(parents=True, exist_ok=True)
        if script is not None:
            features_root, label_path = write_official(problem, tmp / "official")
            prepare_official(tmp / "official", script, features_root, label_path)
            rows.append(bench_official(tmp / "official", epochs, 1, runs, logs))
        if quick and only != "official":
            rows.append(bench_quick(problem, tmp, epochs))
        if only != "official":
            missing = write_cache(problem, tmp / "cache", "mershape")
            for n_seeds in sorted({1, seeds}):
                for name in precision.split(","):
                    row = bench_ours(tmp / "cache", "mershape", epochs, n_seeds, runs, name)
                    rows.append({**row, "error": "; ".join(missing + [row.get("error", "")]).strip("; ")}
                                if "error" in row else row)
                for name in precision.split(","):
                    rows.append(bench_floor(epochs, n_seeds, name))
                    rows.append(bench_floor(epochs, n_seeds, name, optimizer=True))
    load_after = os.getloadavg()
    sizes = " / ".join(f"{k} {v}" for k, v in SPLIT_SIZES.items())
    report = (f"Synthetic MER-shaped problem (seed {data_seed}; {sizes} clips; 3 x 1024-d features), "
              f"attention fusion, 5 folds, {epochs} epochs, {runs} timing(s).\n"
              f"CPU: {os.cpu_count()} cores, load average {load_before[0]:.1f} before, "
              f"{load_after[0]:.1f} after.\n\n{table(rows)}")
    click.echo(report)
    if out:
        (out / "fuse_speed.md").write_text(report + "\n")
        (out / "fuse_speed.json").write_text(json.dumps(
            {"epochs": epochs, "data_seed": data_seed, "load_average": [load_before, load_after],
             "rows": rows}, indent=1, default=str))
    if any("error" in r for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
