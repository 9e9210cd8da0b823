"""How many members (seeds x folds, x learning rates) train at once: as many as a memory budget holds.

A member's memory is measured, not guessed: a probe runs the forward pass of a training step of
two members on worst-case batches of 1 and 2 clips (every sequence step valid) and sums the bytes
of the tensors autograd saves for the backward pass, noting the largest. Activations grow
linearly with the clips of a batch, so the two probes give them for any number of clips. A
member then takes

    parameters x PARAMETER_COPIES (weights, gradient, two Adam moments, best-epoch copy)
    + its standardized inputs and validation inputs where the loop keeps them
    + max(saved bytes at the batch size x BACKWARD,
          largest saved tensor at the clips of an evaluation pass x EVAL_LIVE)

and a group of G members G times that, beside what the process holds already and the best
weights of every member, kept to the end. A model with recomputable regions (fuse.models.blocks.
recomputed: e2el's CNN) has a second training figure, with those regions recomputed in the
backward pass: the saved bytes outside them, their inputs, and the largest region's saved bytes,
x RECOMPUTED_BACKWARD. BACKWARD covers the gradients and temporaries of the
backward pass beside the saved tensors; an evaluation pass saves nothing and holds a few layers'
outputs at once (EVAL_LIVE). Both factors are measured peaks over the estimate, with a margin
(docs/BENCHMARKS.md, "Sequence models within a memory budget").

The budget is `--max-memory` or, by default, what the machine has: on a CPU the process's resident
memory plus the memory available to it (Linux MemAvailable); on a GPU its free memory plus what
this process holds there.
"""
from __future__ import annotations

import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from fuse.models.blocks import PROBE

BACKWARD = 2.2          # a training step's peak / the bytes its forward pass saves (measured 1.3-2.0)
RECOMPUTED_BACKWARD = 1.25  # the same with activations recomputed / the bytes recomputation keeps (measured 1.1)
EVAL_LIVE = 4           # an evaluation pass's peak / the largest tensor a training pass saves
PARAMETER_COPIES = 5    # weights, gradient, Adam's two moments, the best epoch's copy
UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class MemoryBudgetError(ValueError):
    """Not even one member fits the memory budget."""


def parse_size(text: str) -> int:
    """'6G', '6 GB', '512MiB', '2.5g', '1000000' -> bytes (binary units: G = 2**30)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text).lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r}: expected a size like 6G, 512M or 8GiB")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def show_size(n: float, up: bool = False) -> str:
    """Bytes as GB (one decimal) or MB; `up`: rounded up (a size that is enough)."""
    unit, digits, name = (1 << 30, 1, "G") if n >= 1 << 30 else (1 << 20, 0, "M")
    value = n / unit
    if up:
        value = math.ceil(value * 10 ** digits) / 10 ** digits
    return f"{value:.{digits}f}{name}"


def process_memory(device: torch.device) -> int:
    """What this process holds: resident memory on a CPU (0 where it cannot be read), memory
    allocated by torch on a GPU."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def machine_budget(device: torch.device) -> int:
    """The default budget: what this process holds plus what the machine still has for it."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_allocated(device)
    return process_memory(device) + available_memory()


def available_memory() -> int:
    """Memory the machine can give without swapping: Linux MemAvailable, else free pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class MemberCost:
    """Bytes one member takes: `fixed` (parameters and their copies, kept inputs), `training`
    (a training step's activations x BACKWARD), `evaluation` (an evaluation pass's), `weights`
    (its best weights, kept after training)."""

    fixed: int
    training: int
    evaluation: int
    weights: int
    recomputed: int | None = None   # `training` with activations recomputed; None: nothing to recompute
    eval_per_clip: int = 0          # `evaluation`'s bytes per clip of a pass
    val_inputs: int = 0             # its validation inputs, kept between epochs

    @property
    def total(self) -> int:
        return self.fixed + self.val_inputs + max(self.training, self.evaluation)

    def recomputing(self) -> "MemberCost":
        """The cost with activations recomputed in the backward pass (and, memory being that tight,
        validation inputs gathered afresh each epoch: fuse.training.loop)."""
        return replace(self, training=self.recomputed, val_inputs=0)


@dataclass(frozen=True)
class Saved:
    """What autograd saves in a forward pass: all bytes, the largest tensor's, and the bytes
    recomputation would keep at its peak (None where no region is recomputable)."""

    total: int
    largest: int
    recomputed: int | None


class RegionProbe:
    """Set as fuse.models.blocks.PROBE: each recomputable region runs as usual, noted here (its
    inputs, which recomputation keeps; `current`, the region the tensors saved now belong to)."""

    def __init__(self):
        self.current, self.regions, self.inputs = None, 0, {}
        self._held = []  # the inputs themselves, while the probe runs: no storage freed and its address reused

    @contextmanager
    def region(self, args):
        for a in args:
            if isinstance(a, torch.Tensor):
                self.inputs[a.untyped_storage().data_ptr()] = a.untyped_storage().nbytes()
                self._held.append(a)
        previous, self.current = self.current, self.regions
        self.regions += 1
        try:
            yield
        finally:
            self.current = previous


def saved_bytes(run) -> Saved:
    """What autograd saves while `run()` runs (each storage once, parameters not), and where
    regions are recomputable, what it would keep with them recomputed: every storage saved outside
    a region or given to one, and the largest region's own."""
    region_of, size = {}, {}
    probe = RegionProbe()

    def pack(t):
        if not isinstance(t, torch.nn.Parameter):
            storage = t.untyped_storage()
            region_of.setdefault(storage.data_ptr(), probe.current)
            size[storage.data_ptr()] = storage.nbytes()
        # detached: an output kept as itself would hold its own grad_fn, a cycle no collector
        # frees (the probe's graph, ~3 GB of e2el's, stayed for the whole run)
        return t.detach()

    token = PROBE.set(probe)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            run()
    finally:
        PROBE.reset(token)
    recomputed = None
    if probe.regions:
        kept = {p for p, r in region_of.items() if r is None} | set(probe.inputs)
        per_region = {}
        for p, r in region_of.items():
            if p not in kept:
                per_region[r] = per_region.get(r, 0) + size[p]
        recomputed = sum(size.get(p, probe.inputs.get(p, 0)) for p in kept) + max(per_region.values(), default=0)
    return Saved(sum(size.values()), max(size.values(), default=0), recomputed)


def worst_case_batch(shapes, companions: dict[int, int], clips: int, device) -> list[torch.Tensor]:
    """Inputs of 2 members x `clips` clips, float32: zeros, every step of every sequence valid
    (its mask ones, its count its length). companions: {validity block: its sequence block}."""
    out = []
    for i, shape in enumerate(shapes):
        x = torch.zeros(2, clips, *shape, device=device)
        if i in companions:
            x.fill_(1 if len(shape) else shapes[companions[i]][0])
        out.append(x)
    return out


def activation_bytes(ens, shapes, companions, n_classes: int, multi_label: bool, clips: int) -> Saved:
    """What a training step's forward pass saves per member on `clips` worst-case clips (ens: 2 members)."""
    inputs = worst_case_batch(shapes, companions, clips, ens.device)
    labels = torch.zeros(2, clips, n_classes, device=ens.device) if multi_label else \
        torch.zeros(2, clips, dtype=torch.long, device=ens.device)
    ones = torch.ones(2, clips, device=ens.device)
    saved = saved_bytes(lambda: ens.loss(inputs, labels, torch.zeros_like(ones), ones, ones))
    return Saved(saved.total // 2, saved.largest // 2, saved.recomputed // 2 if saved.recomputed is not None else None)


def linear(one: int, two: int, clips: int) -> int:
    """Bytes at `clips` clips from those at 1 and 2 (activations grow with the clips)."""
    return one + max(two - one, 0) * (clips - 1)


def member_cost(ens, shapes, companions, n_classes, multi_label, eval_clips: int, batch_size: int = 0,
                kept_inputs: int = 0, val_inputs: int = 0) -> MemberCost:
    """What one member of `ens` (a probe of 2 members) takes in evaluation passes of `eval_clips`
    clips and, with a `batch_size`, in training (its weights' copies, the inputs the loop keeps for
    it: `kept_inputs` bytes of standardized copies, `val_inputs` of validation inputs); without,
    evaluation alone."""
    one, two = (activation_bytes(ens, shapes, companions, n_classes, multi_label, n) for n in (1, 2))
    weights = sum(p.numel() * 4 for p in ens.params.values()) // 2
    training = int(linear(one.total, two.total, batch_size) * BACKWARD) if batch_size else 0
    recomputed = int(linear(one.recomputed, two.recomputed, batch_size) * RECOMPUTED_BACKWARD) \
        if batch_size and one.recomputed is not None else None
    return MemberCost(fixed=weights * (PARAMETER_COPIES if batch_size else 1) + kept_inputs, val_inputs=val_inputs,
                      training=training,
                      evaluation=linear(one.largest, two.largest, eval_clips) * EVAL_LIVE, weights=weights,
                      recomputed=recomputed, eval_per_clip=max(two.largest - one.largest, 0) * EVAL_LIVE)


def evaluation_rows(cost: MemberCost, size: int, room: int, device: torch.device, rows: int, most: int) -> int:
    """Clips per member in one evaluation pass of a group of `size` with `room` bytes beside what
    the run holds. On a CPU `rows` (the model's figure, tuned there): a run's numbers then never
    depend on the memory it was given (products round by their shapes). On a GPU as many as the
    group's share of the room holds beside its fixed bytes (the model's figure keeps a GPU idle):
    at least `rows`, at most `most` (every clip)."""
    rows = min(rows, most)
    if device.type == "cpu" or not cost.eval_per_clip:
        return rows
    base = max(cost.evaluation - cost.eval_per_clip * rows, 0)  # what a pass holds beside its clips
    fits = (room // size - cost.fixed - cost.val_inputs - base) // cost.eval_per_clip
    return int(min(most, max(rows, fits)))


def group_size(cost: MemberCost, n_members: int, budget: int, held: int, reserved: int, what: str,
               given: bool = True, recomputed: bool = False) -> int:
    """Members that run at once within `budget` bytes, beside `held` (what the process holds now)
    and `reserved` (what it will keep, e.g. every member's best weights); MemoryBudgetError when
    not one fits. given: the budget is the user's --max-memory (else what the machine has);
    recomputed: the cost is with activations recomputed."""
    room = budget - held - reserved
    fits = room // cost.total if cost.total else n_members
    if fits < 1:
        needed = held + reserved + cost.total
        raise MemoryBudgetError(
            f"--max-memory {show_size(budget)}{'' if given else ' (what this machine has)'}: one {what} member needs ~{show_size(cost.total)}{', its activations recomputed,' if recomputed else ''} (activations "
            f"{show_size(max(cost.training, cost.evaluation))}, weights, optimizer and kept inputs "
            f"{show_size(cost.fixed + cost.val_inputs)}) beside the {show_size(held + reserved)} the run holds; give at least "
            f"--max-memory {show_size(needed, up=True)}, or a smaller --batch-size or model (--channels, --width)")
    return int(min(fits, n_members))
