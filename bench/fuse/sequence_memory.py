"""Peak memory and time per epoch of the sequence models at their default widths, 5 folds x 3 seeds,
on MER-sized inputs: members in groups within --max-memory, against all members at once where
that fits in the memory the machine has.

The inputs are bench/fuse/mer_shaped.py's sequence cache (3373 training clips, MER 2023's clip
lengths), written once under --work. Each measurement runs in a process of its own, one after
the other (never two at once): it loads the problem as fuse.train does and runs fuse.training.loop.fit with
every member group trained for --steps steps of one epoch and one validation chunk (an epoch of
the published widths takes hours on a CPU). It reports the process's peak resident memory
(VmHWM), the group size fuse.training.memory chose and its estimate per member, the seconds per training
step and per validation chunk, and from them a full epoch: every group's steps and validation
passes (`--groups N`: only the first N groups train, the epoch extrapolated to all; the peak is
a group's, every group but the last being as large). The all-members run is measured only when fuse.training.memory's estimate of it fits the memory
the machine has then; otherwise the table says so.

    python bench/fuse/sequence_memory.py --work DIR [--models e2el,crossbert,coattention] [--modalities V,A,T]
        [--max-memory 6G] [--steps 3] [--groups N] [--out DIR]
    python bench/fuse/sequence_memory.py floor --work DIR [--model e2el] [--clips 1,2,4] [--recompute]
"""
from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATASET = "mershape-seq"


def peak_memory() -> int:
    """This process's peak resident memory (bytes, Linux VmHWM)."""
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) * 1024


class Enough(Exception):
    """The groups to measure have trained (--groups): the fit stops here."""


def measure(cache: Path, model: str, modalities: list[str], max_memory: str | None, steps: int,
            group: int | None, max_groups: int | None = None) -> dict:
    """One fit of `model` with every group cut to `steps` steps and one validation chunk (`group`:
    members per group forced, e.g. all; else fuse.training.memory's plan within `max_memory`); with
    `max_groups`, only the first groups train and the epoch is extrapolated to all of them."""
    import torch

    from fuse.training import loop, memory
    from fuse.training.request import TrainRequest, prepare

    request = TrainRequest.from_options(model=model, dataset=DATASET, cache_dir=str(cache), modalities=modalities,
                                        seeds=3, epochs=1, quiet=True, max_memory=max_memory)
    _, problem, _ = prepare(request)
    seen = {"loaded": memory.process_memory(torch.device("cpu")), "train": [], "validate": []}
    order, validate, train, plan, cost = loop._epoch_order, loop._validate, loop._train, loop.plan_groups, \
        loop.member_cost

    def cut_order(rows, generator):
        every = order(rows, generator)
        seen["steps_per_epoch"] = math.ceil(every.shape[1] / request.train.batch_size)
        return every[:, :steps * request.train.batch_size]

    def one_chunk(ens, data):
        seen["val_chunks"] = math.ceil(data.val_padded.shape[1] / data.eval_rows)
        data.val_chunks = lambda chunks=data.val_chunks: itertools.islice(chunks(), 1)
        started = time.perf_counter()
        probs, valence = validate(ens, data)
        seen["validate"].append(time.perf_counter() - started)
        missing = data.val_padded.shape[1] - probs.shape[1]  # the chunks not run: the first's outputs repeated
        return np.pad(probs, ((0, 0), (0, missing), (0, 0)), mode="wrap"), np.pad(valence, ((0, 0), (0, missing)), mode="wrap")

    def timed_train(*args, **kwargs):
        started = time.perf_counter()
        out = train(*args, **kwargs)
        seen["train"].append(time.perf_counter() - started)
        if max_groups and len(seen["train"]) >= max_groups:
            raise Enough
        return out

    def planned(*args):
        seen["members"] = args[-1]
        chosen = plan(*args)
        chosen = chosen._replace(size=group) if group else chosen
        seen["group"], seen["recompute"] = chosen.size, chosen.recompute
        return chosen

    def costed(*args, **kwargs):
        seen["cost"] = cost(*args, **kwargs)
        return seen["cost"]

    loop._epoch_order, loop._validate, loop._train, loop.plan_groups = cut_order, one_chunk, timed_train, planned
    loop.member_cost = costed
    try:
        loop.fit(problem, model, request.configs[0], request.train, progress=False)
    except Enough:
        pass
    groups = len(loop.member_groups(seen["members"], seen["group"]))
    step = [(t - v) / steps for t, v in zip(seen["train"], seen["validate"])]
    measured = len(step)
    per_group = sum(s * seen["steps_per_epoch"] + v * seen["val_chunks"] for s, v in zip(step, seen["validate"]))
    return {"model": model, "modalities": modalities, "max_memory": max_memory, "group": seen["group"],
            "recompute": seen["recompute"],
            "groups": groups, "members": seen["members"], "groups_measured": measured,
            "estimate_per_member": (seen["cost"].recomputing() if seen["recompute"] else seen["cost"]).total
            if "cost" in seen else None, "loaded": seen["loaded"],
            "peak": peak_memory(), "step_seconds": sorted(step)[measured // 2],
            "steps_per_epoch": seen["steps_per_epoch"], "val_chunk_seconds": sorted(seen["validate"])[measured // 2],
            "val_chunks": seen["val_chunks"], "epoch_seconds": per_group / measured * groups,
            "threads": torch.get_num_threads(), "load": os.getloadavg()[0]}


def run_measure(work: Path, model: str, modalities: str, max_memory: str | None, steps: int,
                group: int | None, max_groups: int | None) -> dict:
    """`measure` in a process of its own: its result, or {'error': the last line of its stderr}."""
    out = work / f"{model}-{modalities.replace(',', '')}-{max_memory or 'machine'}-{group or 'plan'}.json"
    args = [sys.executable, __file__, "measure", "--cache", str(work / "cache"), "--model", model,
            "--modalities", modalities, "--steps", str(steps), "--json", str(out)]
    args += ["--max-memory", max_memory] if max_memory else []
    args += ["--group", str(group)] if group else []
    args += ["--groups", str(max_groups)] if max_groups else []
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        return {"model": model, "modalities": modalities, "max_memory": max_memory,
                "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.read_text())


def gb(n: float) -> str:
    return f"{n / (1 << 30):.2f}"


HEADER = ["| model | run | groups x members (measured) | peak RSS (GB) | after loading (GB) | estimate per member (GB) "
          "| s per step | min per epoch (extrapolated) | load |", "| --- " * 9 + "|"]


def row(r: dict, label: str) -> str:
    if "error" in r:
        return f"| {r['model']} | {label} | - | {r['error']} | | | | | |"
    shape = f"{r['groups']} x {r['group']}" + (f" ({r['groups_measured']})" if r["groups_measured"] < r["groups"] else "")
    shape += ", recomputed" if r.get("recompute") else ""
    estimate = gb(r["estimate_per_member"]) if r["estimate_per_member"] else "-"
    return (f"| {r['model']} | {label} | {shape} | **{gb(r['peak'])}** | {gb(r['loaded'])} | {estimate} | "
            f"{r['step_seconds']:.2f} | {r['epoch_seconds'] / 60:.1f} | {r['load']:.1f} |")


@click.group(invoke_without_command=True)
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), help="Cache and results (kept).")
@click.option("--models", default="e2el,crossbert,coattention", show_default=True)
@click.option("--modalities", default="V,A,T", show_default=True, help="Modalities of every model.")
@click.option("--max-memory", default="6G", show_default=True)
@click.option("--steps", type=click.IntRange(1), default=3, show_default=True, help="Training steps per group.")
@click.option("--groups", "max_groups", type=click.IntRange(1),
              help="Train only the first N groups, the epoch extrapolated to all [all].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write sequence_memory.md/json here.")
@click.pass_context
def main(ctx, work, models, modalities, max_memory, steps, max_groups, out):
    """Measure every model in groups within --max-memory, then all at once where it fits."""
    if ctx.invoked_subcommand:
        return
    if work is None:
        raise click.UsageError("--work DIR is required")
    from mer_shaped import SUBSPACE, generate, write_sequence_cache

    if not (work / "cache" / DATASET / "_clips.h5").is_file():
        click.echo("writing the MER-shaped sequence cache (once)...", err=True)
        write_sequence_cache(generate(0, dim=SUBSPACE), work / "cache", DATASET)
    lines, results = list(HEADER), []
    for model in [m.strip() for m in models.split(",") if m.strip()]:
        grouped = run_measure(work, model, modalities, max_memory, steps, None, max_groups)
        results.append(grouped)
        lines.append(row(grouped, f"--max-memory {max_memory}"))
        click.echo(lines[-1], err=True)
        if "error" in grouped or grouped["groups"] == 1:
            continue  # refused, or all members in one group already
        lines.append(all_at_once(work, model, modalities, steps, grouped, results))
        click.echo(lines[-1], err=True)
    report = "\n".join(lines)
    click.echo(report)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "sequence_memory.md").write_text(report + "\n")
        (out / "sequence_memory.json").write_text(json.dumps(results, indent=1))


def all_at_once(work: Path, model: str, modalities: str, steps: int, grouped: dict, results: list) -> str:
    """The table row of all members in one group: measured when fuse.training.memory's estimate of it fits
    the memory the machine has now, else why not."""
    from fuse.training import memory

    members = grouped["members"]
    needed = grouped["loaded"] + members * grouped["estimate_per_member"]
    available = memory.available_memory()
    if needed > available:
        return (f"| {model} | all {members} at once | 1 x {members} | does not fit: ~{gb(needed)} GB estimated, "
                f"{gb(available)} GB available | | | | | |")
    results.append(run_measure(work, model, modalities, None, steps, members, None))
    return row(results[-1], "all at once")


@main.command("measure")
@click.option("--cache", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--model", required=True)
@click.option("--modalities", required=True)
@click.option("--max-memory")
@click.option("--steps", type=click.IntRange(1), default=3)
@click.option("--group", type=click.IntRange(1), help="Members per group, forced (e.g. all).")
@click.option("--groups", "max_groups", type=click.IntRange(1), help="Train only the first N groups.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
def measure_command(cache, model, modalities, max_memory, steps, group, max_groups, json_path):
    """One measurement (run by the main command in a process of its own)."""
    from fuse.inputs.specs import parse_modalities

    result = measure(cache, model, parse_modalities(modalities), max_memory, steps, group, max_groups)
    json_path.write_text(json.dumps(result))


def clear_peak():
    """Reset this process's peak resident memory (VmHWM) to what it holds now (Linux clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def member_step(cache: Path, model: str, modalities: list[str], clips: list[int], recompute: bool = False) -> list[dict]:
    """One member of `model` (default widths), one training step (forward, backward, Adam) on a
    worst-case batch of each of `clips` clips (every frame, crop and token valid, as fuse.training.memory's
    probe): the bytes autograd saves for the backward pass (with `recompute`, fuse.training.memory's
    figure of what recomputation keeps) and the resident memory the step adds at its peak over what
    the process held before it (with `recompute`, activations recomputed)."""
    import torch

    from fuse.training import loop, memory
    from fuse.training.ensemble import Ensemble
    from fuse.training.request import TrainRequest, prepare

    request = TrainRequest.from_options(model=model, dataset=DATASET, cache_dir=str(cache), modalities=modalities,
                                        seeds=1, epochs=1, quiet=True)
    _, problem, _ = prepare(request)
    companions, _ = loop.sequence_lengths(problem, np.arange(1))
    loop.return_freed_blocks() if recompute else loop.keep_freed_blocks()  # as fuse.training.loop.fit does
    torch.set_num_threads(os.cpu_count() or 1)
    ens = Ensemble(lambda e: loop._member_net(problem, model, request.configs[0], 0), 1, torch.device("cpu"),
                   recompute=recompute)
    opt = ens.optimizer(request.train.lr, request.train.weight_decay)
    out = []
    for n in clips:
        inputs = [x[:1] for x in memory.worst_case_batch(problem.shapes, companions, n, ens.device)]
        labels, ones = torch.zeros(1, n, dtype=torch.long), torch.ones(1, n)
        clear_peak()
        before, seconds = resident(), []
        for _ in range(2):  # the peak of the first step (Adam's moments made), the time of the second
            started = time.perf_counter()
            loss = ens.loss(inputs, labels, torch.zeros_like(ones), ones, ones)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            del loss
            seconds.append(time.perf_counter() - started)
        peak = peak_memory() - before
        saved = memory.saved_bytes(lambda: ens.loss(inputs, labels, torch.zeros_like(ones), ones, ones))
        out.append({"clips": n, "saved": saved.recomputed if recompute else saved.total, "step_peak": peak,
                    "step_seconds": seconds[1], "load": os.getloadavg()[0]})
        del inputs
    return out


@main.command("floor")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--model", default="e2el", show_default=True)
@click.option("--modalities", default="V,A,T", show_default=True)
@click.option("--clips", default="1,2,4", show_default=True, help="Batch sizes, ascending.")
@click.option("--recompute", is_flag=True, help="Activations recomputed in the backward pass (fuse.train --recompute on).")
def floor_command(work, model, modalities, clips, recompute):
    """What one member's training step holds and takes: saved bytes, peak memory and seconds per
    batch size (saved bytes grow linearly in the clips, as fuse.training.memory assumes)."""
    from fuse.inputs.specs import parse_modalities

    sizes = [int(c) for c in clips.split(",")]
    rows = member_step(work / "cache", model, parse_modalities(modalities), sizes, recompute)
    click.echo("| clips | activations | saved by autograd (GB) | step's peak over before (GB) | peak / saved "
               "| s per step | load |")
    click.echo("| --- " * 7 + "|")
    for r in rows:
        click.echo(f"| {r['clips']} | {'recomputed' if recompute else 'kept'} | {gb(r['saved'])} | "
                   f"{gb(r['step_peak'])} | {r['step_peak'] / r['saved']:.2f} | {r['step_seconds']:.1f} | "
                   f"{r['load']:.1f} |")
    (work / f"floor-{model}{'-recomputed' if recompute else ''}.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
