"""One prepared benchmark of a GPU box (`make bench-gpu`), in one table, building its own inputs.

* extraction: `python -m extract` (batched, every layer, in this process) against a one-clip-at-a-time
  loop over the same model, per model and precision, in audio hours per hour, on the demo corpus x N;
* fuse.train at MER 2023's shape (bench/fuse/mer_shaped.py), 5 folds x 3 seeds, against the CPU
  figures and the official script's CPU time as docs/BENCHMARKS.md states them (quoted, not rerun);
* `fuse.train --model e2el` at full width, 15 members (5 folds x 3 seeds) on the demo's crops and
  spectrogram pieces: seconds per epoch, extrapolated to MER 2023's training split, and peak GPU memory.

Models are RANDOM-INITIALISED (HuBERT-large- and MacBERT-large-shaped): speed only. On a CPU
(`--device cpu`) every size is tiny (tiny widths, few clips, 1 epoch): a check that the script
works, not a measurement. A step that cannot run prints why in its row.

    python bench/gpu.py [--device auto|cpu|cuda|cuda:N] [--dtype bfloat16,float32] [--out table.md]
"""
from __future__ import annotations

import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click

BENCH = Path(__file__).resolve().parent
# the repository first: else bench/cache/, bench/fuse/ (folders beside this script) would be found as
# namespace packages named cache and fuse; then the helpers of bench/extract/ and bench/fuse/ by name
sys.path[:0] = [str(BENCH.parent), str(BENCH / "extract"), str(BENCH / "fuse")]

import device_throughput as throughput  # noqa: E402
from fuse_speed import run_ours as train_mer_shaped  # noqa: E402
from mer_shaped import SPLIT_SIZES, generate, write_cache  # noqa: E402
from runs import FuseFailed, train  # noqa: E402

# docs/BENCHMARKS.md, "Fusion training" (acfeb7d, c953481): 2 CPU cores (AMD EPYC, avx512_bf16),
# MER-shaped problem, 5 folds x 100 epochs, seconds of the whole command
CPU_SECONDS = {"fp32": 331.6, "bf16": 261.4}  # ours, 3 seeds
OFFICIAL_CPU_SECONDS = 467.6  # main-release.py, one seed per run: 3 seeds cost 3 runs
CPU_MACHINE = "2 CPU cores (AMD EPYC), docs/BENCHMARKS.md"


@dataclass(frozen=True)
class Sizes:
    """What one mode runs: demo clips and copies, clips of the loop, model shape, MER-shaped clips
    (None: all 4196) and dimension, epochs, e2el widths (None: the published ones), folds and seeds
    of e2el, processes extracting its inputs."""

    demo_clips: int
    copies: int
    loop_clips: int
    shape: str
    mer_clips: int | None
    mer_dim: int
    fuse_epochs: int
    e2el_epochs: int
    e2el_channels: str | None
    e2el_width: int | None
    e2el_members: tuple[int, int]
    workers: int


GPU = Sizes(96, 20, 96, "large", None, 1024, 100, 2, None, None, (5, 3), 8)
# an e2el epoch on a CPU costs seconds per clip at any width: 2 members on the demo's few clips
CPU = Sizes(6, 2, 4, "tiny", 300, 32, 1, 1, "4,4,4,4,4,4", 8, (2, 1), 1)


@dataclass
class Row:
    section: str
    run: str
    measured: str
    against: str = ""


def seconds_text(seconds: float) -> str:
    return f"{seconds:.1f} s"


def extraction_rows(demo: Path, sizes: Sizes, device: str, dtypes: list[str], batch_seconds, tmp: Path) -> list[Row]:
    """Per model and precision: ours and the loop, audio hours per hour, same process, same clips' model."""
    corpus = throughput.copies_corpus(demo, sizes.copies, tmp / "corpus")
    loop_clips = corpus.clips[:sizes.loop_clips]
    rows = []
    for kind, prefix, build in (("speech", "ssl", throughput.build_speech_model),
                                ("text", "text", throughput.build_text_model)):
        folder = tmp / "models" / kind
        description = build(folder, sizes.shape)
        for dtype in dtypes:
            run = f"{description}, all layers, {dtype}"
            try:
                ours = throughput.run_ours(corpus, f"{kind}={prefix}:{folder}", device, dtype, batch_seconds,
                                           tmp / f"cache-{kind}-{dtype}")
                loop = throughput.run_loop(loop_clips, kind, folder, device, dtype)
            except (RuntimeError, ValueError) as error:
                rows.append(Row("extraction", run, f"not run: {error}"))
                continue
            ours_rate = corpus.audio_seconds() / ours
            loop_rate = corpus.audio_seconds(loop_clips) / loop
            rows.append(Row("extraction", run,
                            f"{ours_rate:,.0f} audio h/h ({len(corpus.clips)} clips, {seconds_text(ours)}, "
                            f"model load included)",
                            f"one clip at a time: {loop_rate:,.0f} audio h/h ({len(loop_clips)} clips); "
                            f"**{ours_rate / loop_rate:.1f}x**"))
    return rows


def mer_problem(sizes: Sizes):
    """The MER-shaped problem, or its first `mer_clips` clips (CPU mode)."""
    from mer_shaped import MerShaped

    problem = generate(0, dim=sizes.mer_dim)
    if sizes.mer_clips is None:
        return problem
    n = sizes.mer_clips
    return MerShaped(problem.seed, problem.ids[:n], problem.split[:n], problem.label[:n], problem.valence[:n],
                     {k: v[:n] for k, v in problem.features.items()})


def fusion_rows(sizes: Sizes, device: str, precisions: list[str], tmp: Path) -> list[Row]:
    """fuse.train at MER shape, 5 folds x 3 seeds, per precision, against the quoted CPU figures."""
    problem = mer_problem(sizes)
    write_cache(problem, tmp / "mer-cache", "mershape")
    full = sizes.mer_clips is None and sizes.mer_dim == 1024 and sizes.fuse_epochs == 100
    shape = (f"{len(problem.ids)} clips x 3 x {sizes.mer_dim}-d, attention, 5 folds x 3 seeds, "
             f"{sizes.fuse_epochs} epoch{'s' * (sizes.fuse_epochs > 1)}")
    rows = []
    for precision in precisions:
        run = f"fuse.train, MER-shaped ({shape}), {precision}"
        try:
            metrics = train_mer_shaped(tmp / "mer-cache", "mershape", [
                "--epochs", sizes.fuse_epochs, "--seeds", 3, "--folds", 5, "--precision", precision,
                "--device", device, "--quiet"])
        except FuseFailed as error:
            rows.append(Row("fusion", run, f"not run: {error.message.splitlines()[-1]}"))
            continue
        seconds = metrics["seconds"]
        rows.append(Row("fusion", run, f"{seconds_text(seconds)} (whole command); CV combined "
                                       f"{metrics['cv']['combined']['mean']:.3f}",
                        cpu_comparison(seconds, precision) if full else
                        "not comparable with the quoted CPU figures: reduced sizes"))
    return rows


def cpu_comparison(seconds: float, precision: str) -> str:
    """The quoted CPU figures of the same run (docs/BENCHMARKS.md) and how many times faster this was."""
    official = OFFICIAL_CPU_SECONDS * 3
    ours = (f"ours {CPU_SECONDS[precision]} s (**{CPU_SECONDS[precision] / seconds:.1f}x**), "
            if precision in CPU_SECONDS else "")
    return f"CPU, quoted: {ours}official script {official:.0f} s (3 runs, **{official / seconds:.1f}x**); {CPU_MACHINE}"


def e2el_rows(demo: Path, sizes: Sizes, device: str, precisions: list[str], tmp: Path) -> list[Row]:
    """fuse.train --model e2el, V and A, 15 members (GPU mode), on the demo's crops and spectrogram pieces:
    seconds per epoch (its own seconds / epochs), extrapolated to MER 2023's training clips, and
    peak CUDA memory."""
    from manifests import load_manifest

    cache = tmp / "e2el-cache"
    try:
        throughput.run_extract(["--dataset", "demo", "--root", demo, "--features", "e2el-spectrogram,face-crops",
                                "--cache", cache, "--workers", sizes.workers])
    except RuntimeError as error:
        return [Row("e2el", "inputs: e2el-spectrogram, face-crops of the demo", f"not run: {error}")]
    n_train = sum(c.split == "train" and bool(c.label) for c in load_manifest("demo", root=demo).clips)
    widths = ("published widths" if sizes.e2el_channels is None
              else f"channels {sizes.e2el_channels}, width {sizes.e2el_width}")
    extra = [] if sizes.e2el_channels is None else ["--channels", sizes.e2el_channels, "--width", sizes.e2el_width]
    folds, seeds = sizes.e2el_members
    rows = []
    for precision in precisions:
        run = f"fuse.train --model e2el, V+A, {widths}, {folds} folds x {seeds} seeds, {precision}"
        try:
            metrics = train(["--cache", cache, "--dataset", "demo", "--model", "e2el", "--modalities", "V,A",
                             "--folds", folds, "--seeds", seeds, "--epochs", sizes.e2el_epochs, "--patience", 0,
                             "--precision", precision, "--device", device, "--quiet", *extra],
                            tmp / f"e2el-{precision}", cuda_peak=True)
        except FuseFailed as error:
            rows.append(Row("e2el", run, f"not run: {error.message.splitlines()[-1]}"))
            continue
        per_epoch = metrics["seconds"] / sizes.e2el_epochs
        peak = metrics["cuda_peak_bytes"]
        memory = f"peak GPU memory {peak / 2**30:.2f} GiB" if peak is not None else \
            f"peak GPU memory: not measured (no CUDA on --device {device})"
        rows.append(Row("e2el", run, f"{per_epoch:.1f} s per epoch on {n_train} training clips "
                                     f"({sizes.e2el_epochs} epoch(s) timed); {memory}",
                        f"extrapolated to MER 2023's {SPLIT_SIZES['train']} training clips: "
                        f"~{per_epoch * SPLIT_SIZES['train'] / n_train / 60:.1f} min per epoch (linear in clips)"))
    return rows


def machine(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        gpu = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    else:
        gpu = "no GPU used"
    return (f"{gpu}; {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPU cores; "
            f"torch {torch.__version__}")


def resolve(device: str) -> str:
    """--device as the runs will use it: auto -> cuda when torch sees one, else cpu; a missing
    cuda:N is refused (exit 2) before any work."""
    import torch

    from cache.cli import Refused, check_device

    try:
        device = check_device(device)
    except ValueError as error:
        raise Refused(str(error)) from None
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def render(rows: list[Row], header: list[str]) -> str:
    lines = [*header, "", "| section | run | measured | against |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.section} | {r.run} | {r.measured} | {r.against or '-'} |" for r in rows]
    return "\n".join(lines)


@click.command()
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (cpu: tiny sizes).")
@click.option("--dtype", "dtypes", default="bfloat16,float32", show_default=True,
              help="Extraction compute precisions (python -m extract --dtype), comma-separated.")
@click.option("--batch-seconds", type=float, help="python -m extract --batch-seconds (default: its own).")
@click.option("--precision", "precisions", help="fuse.train --precision, comma-separated [fp32,bf16; cpu: fp32].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table here (markdown).")
def main(device, dtypes, batch_seconds, precisions, out):
    """Extraction throughput, fuse.train at MER shape and e2el at full width on this machine's device."""
    from transformers.utils import logging as hf_logging

    from manifests.demo.__main__ import main as demo_main

    hf_logging.disable_progress_bar()

    device = resolve(device)
    sizes = CPU if device == "cpu" else GPU
    precisions = (precisions or ("fp32" if device == "cpu" else "fp32,bf16")).split(",")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        tmp = Path(tmp)
        demo_main(["--out", str(tmp / "demo"), "--clips", str(sizes.demo_clips)], standalone_mode=False)
        rows = extraction_rows(tmp / "demo", sizes, device, dtypes.split(","), batch_seconds, tmp)
        rows += fusion_rows(sizes, device, precisions, tmp)
        rows += e2el_rows(tmp / "demo", sizes, device, precisions, tmp)
    mode = "GPU mode" if sizes is GPU else "CPU mode: tiny sizes, a check that the script runs, not a measurement"
    report = render(rows, [f"bench/gpu.py on --device {device} ({mode}); {machine(device)}; "
                           f"{time.perf_counter() - start:.0f} s in all",
                           "Models are RANDOM-INITIALISED (shapes only): speed figures, no accuracy."])
    click.echo(report)
    if out:
        out.write_text(report + "\n")


if __name__ == "__main__":
    main()
