"""Run a fuse command as a user does (`python -m fuse.<command>` in a subprocess from the repository
root) and read the metrics.json it writes: the one way every fusion benchmark times a run.

    from runs import train, run_fuse, trial_metrics   # bench/fuse/, beside the benchmark
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[2]


# `python -c CUDA_PEAK <command> ARGS`: runs fuse.<command> as `-m` does, then writes the largest
# torch.cuda.max_memory_allocated over the devices to $BENCH_CUDA_PEAK (empty: CUDA never initialised)
CUDA_PEAK = """
import atexit, os, runpy, sys
def peak():
    import torch
    used = torch.cuda.is_initialized()
    value = max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())) if used else ''
    open(os.environ['BENCH_CUDA_PEAK'], 'w').write(str(value))
atexit.register(peak)
module = 'fuse.' + sys.argv.pop(1)
runpy.run_module(module, run_name='__main__', alter_sys=True)
"""


class FuseFailed(click.ClickException):
    """A fuse command exited non-zero or left no single metrics.json; the message ends with its stderr."""


@dataclass(frozen=True)
class Finished:
    """A fuse command that exited 0."""

    wall: float  # seconds of the whole command, Python start-up and loading included
    load: float  # 1-minute load average just before it started: the machine's other work


def run_fuse(command: str, args, environ: dict | None = None, cuda_peak: Path | None = None) -> Finished:
    """`python -m fuse.<command> ARGS` from the repository root (so this checkout's fuse runs), with
    `environ` added to the environment; raises FuseFailed with the end of its stderr when it exits
    non-zero. `cuda_peak`: a file that receives its peak CUDA memory in bytes (CUDA_PEAK)."""
    launch = ["-c", CUDA_PEAK, command] if cuda_peak else ["-m", f"fuse.{command}"]
    argv = [sys.executable, *launch, *map(str, args)]
    environ = {**(environ or {}), **({"BENCH_CUDA_PEAK": str(cuda_peak)} if cuda_peak else {})}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env={**os.environ, **(environ or {})}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise FuseFailed(f"fuse.{command} exited with {proc.returncode}:\n{proc.stderr.strip()[-2000:]}")
    return Finished(wall, load)


def read_metrics(out: Path) -> dict:
    """The metrics.json of the one run fuse.train wrote for `--out out`: in it, or in the run
    folder it named inside it."""
    found = [out / "metrics.json"] if (out / "metrics.json").is_file() else sorted(out.glob("*/metrics.json"))
    if len(found) != 1:
        raise FuseFailed(f"fuse.train wrote {len(found)} metrics.json files under {out}, not one")
    return json.loads(found[0].read_text())


def train(args, out: Path, cuda_peak: bool = False) -> dict:
    """`fuse.train ARGS --out OUT`: its metrics.json ('seconds' its own training and scoring time)
    plus 'wall' and 'load' of the whole command; `cuda_peak`: plus 'cuda_peak_bytes', the peak of
    torch.cuda.max_memory_allocated in it (None when it never used CUDA)."""
    peak_file = Path(f"{out}.cuda-peak") if cuda_peak else None
    done = run_fuse("train", [*args, "--out", out], cuda_peak=peak_file)
    metrics = {**read_metrics(Path(out)), "wall": done.wall, "load": done.load}
    if peak_file:
        text = peak_file.read_text()
        metrics["cuda_peak_bytes"] = int(text) if text else None
    return metrics


def trial_metrics(runs: Path) -> list[dict]:
    """Every trial's metrics.json under a sweep's --runs folder."""
    return [json.loads(path.read_text()) for path in sorted(Path(runs).glob("*/metrics.json"))]
