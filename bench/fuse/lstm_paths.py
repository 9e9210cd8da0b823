"""MemberLSTM's two paths timed on this machine: the loop over steps (what a CPU runs) against torch's
fused LSTM, one call per member (what CUDA runs, cuDNN there; forced here), at coattention's shape
by default: 15 members (5 folds x 3 seeds), 32 clips, 256 steps (1024 log-mel frames after two
stride-2 convolutions), 128 in and out. Forward alone (no gradients) and forward + backward; the
median of --repeats runs after one warm-up, the range in brackets, and the load average.

    python bench/fuse/lstm_paths.py [--members 15] [--clips 32] [--steps 256] [--width 128] [--threads 1]
"""
from __future__ import annotations

import os
import time

import click


def timed(run, repeats: int) -> list[float]:
    run()  # warm-up
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        out.append(time.perf_counter() - started)
    return sorted(out)


@click.command()
@click.option("--members", default=15, show_default=True)
@click.option("--clips", default=32, show_default=True)
@click.option("--steps", default=256, show_default=True)
@click.option("--width", default=128, show_default=True, help="input and hidden width")
@click.option("--threads", default=1, show_default=True)
@click.option("--repeats", default=5, show_default=True)
def main(members, clips, steps, width, threads, repeats):
    import torch

    from fuse.models.seq import MemberLSTM
    from fuse.training.ensemble import stack_members

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lstm = stack_members([MemberLSTM(width, width) for _ in range(members)])
    x = torch.randn(members, clips, steps, width, requires_grad=True)

    def forward(path):
        with torch.no_grad():
            getattr(lstm, path)(x)

    def backward(path):
        getattr(lstm, path)(x).sum().backward()

    print(f"E={members} B={clips} T={steps} D={width}, {threads} thread(s), torch {torch.__version__}\n")
    print("| pass | loop (s) | fused (s) | loop / fused | load |\n| --- | --- | --- | --- | --- |")
    for name, run in (("forward", forward), ("forward + backward", backward)):
        loop, fused = (timed(lambda: run(path), repeats) for path in ("stepped", "fused"))
        mid = repeats // 2
        print(f"| {name} | {loop[mid]:.2f} [{loop[0]:.2f}-{loop[-1]:.2f}] | {fused[mid]:.2f} "
              f"[{fused[0]:.2f}-{fused[-1]:.2f}] | {loop[mid] / fused[mid]:.2f}x | {os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main()
