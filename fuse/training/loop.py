"""The one training loop: K-fold CV x seeds, trained together, best epoch per fold.

Every (seed, fold) is a member of one batched model (fuse.training.ensemble). Per epoch each member sees its
own shuffled training clips in batches; members with fewer clips get masked padding. After each
epoch every member is scored on its validation fold; its weights at the best epoch (combined
score: weighted F1 - 0.25 * valence MSE, F1 alone without valence) are kept, and the test pass runs
once with them. Standardization statistics come from each member's training clips only.
"""
from __future__ import annotations

import copy
import ctypes
import dataclasses
import functools
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from cache.cli import check_device
from fuse import metrics
from fuse.inputs.extras import NO_ORIGIN, TRAIN_ONLY, member_rows
from fuse.inputs.folds import make_folds
from fuse.models import MODELS, build
from fuse.models.seq import roles, step_lengths
from .ensemble import Ensemble, load_member, member_sigmoid
from .memory import (MemoryBudgetError, evaluation_rows, group_size, machine_budget, member_cost, process_memory,
                     show_size)
from .progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    folds: int = 5
    epochs: int = 100
    seeds: tuple[int, ...] = (0,)
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 32
    precision: str = "fp32"       # fp32 | bf16 (autocast; on a CPU with bf16 weights, fuse.training.bf16)
    device: str = "auto"
    standardize: bool = True
    threads: int | None = None    # CPU threads; None: 1 for small steps (see step_threads)
    lr_grid: tuple[float, ...] = ()   # several learning rates trained as one model (fit, split_fit)
    patience: int = 0             # a member stops choosing its best epoch after this many epochs
                                  # without a better validation score (0: never; see _train)
    max_memory: int | None = None  # bytes the run may hold; None: what the machine has (fuse.training.memory)
    deterministic: bool = False   # torch's deterministic algorithms, no TF32 (bit-reproducible GPU runs)
    recompute: str = "auto"       # activations recomputed in the backward pass (e2el's CNN): auto (when one
                                  # member does not fit max_memory otherwise) | on | off; the same numbers


@dataclass
class Fit:
    """What a CV run leaves: per seed s and fold k (member e = s * K + k)."""

    train_index: np.ndarray          # problem rows of the labelled training clips [n]
    folds: np.ndarray                # [S, n] fold of each training clip per seed
    oof_probs: np.ndarray            # [S, n, C] validation-fold probabilities at the best epoch
    oof_valence: np.ndarray          # [S, n]
    best_epoch: np.ndarray           # [S, K]
    history: np.ndarray              # [S, K, epochs] validation selection score per epoch
    states: list = field(default_factory=list)   # [S * K] state dicts (CPU)
    norms: list = field(default_factory=list)    # [S * K] per block (mean, std) or None
    seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    if check_device(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def bf16_warning(device: torch.device, precision: str, cpuinfo: str | None = None) -> str | None:
    """A warning when bf16 is asked on a CPU without bfloat16 arithmetic (no avx512_bf16 / AMX):
    autocast then emulates it, ~15x slower than fp32 at MER sizes (docs/BENCHMARKS.md)."""
    if precision != "bf16" or device.type != "cpu":
        return None
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: unknown, say nothing
            return None
    flags = set(cpuinfo.split())
    if flags & {"avx512_bf16", "amx_bf16"}:
        return None
    return ("--precision bf16: this CPU has no bfloat16 arithmetic (no avx512_bf16 or AMX), so it is "
            "emulated and much slower than fp32; use fp32 here, bf16 on a GPU or a CPU that has it")


def fit(problem, model: str, model_config, cfg: TrainConfig, progress: bool = True) -> Fit:
    """Train `model` on the labelled training clips of `problem` with K-fold CV for every seed.
    With `cfg.lr_grid` (G rates), every seed x fold is trained once per rate, all as one model, and
    the Fit holds G x S seeds, rate-major: split_fit gives one Fit per rate. Members train in
    groups as large as `cfg.max_memory` holds (fuse.training.memory), the same numbers as all at once."""
    started = time.perf_counter()
    lrs = None
    if cfg.lr_grid:
        per_rate = len(cfg.seeds) * cfg.folds
        lrs = [lr for lr in cfg.lr_grid for _ in range(per_rate)]
        cfg = dataclasses.replace(cfg, seeds=tuple(cfg.seeds) * len(cfg.lr_grid))
    device = resolve_device(cfg.device)
    tr = problem.index("train", labelled_only=True)
    labels = problem.labels[tr]
    folds = np.stack([make_folds(labels, cfg.folds, s, problem.multi_label) for s in cfg.seeds])
    members = [(s, k) for s in range(len(cfg.seeds)) for k in range(cfg.folds)]
    if warning := bf16_warning(device, cfg.precision):
        log.warning(warning)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or step_threads(problem, len(members), cfg.batch_size, model_config))
    seeds = [cfg.seeds[s] * 1000 + k for s, k in members]  # each member's initialisation

    def make(e):
        return _member_net(problem, model, model_config, seeds[e])

    flags = standardized(model, problem.shapes, problem.modalities, cfg.standardize)
    settings = matmul_settings(device, cfg.deterministic)
    try:
        data = _Data(problem, tr, folds, members, device, flags, training_only(problem), eval_rows(model))
        size, recompute, data.eval_rows = plan_groups(problem, model, make, data, cfg, len(members))
        data.cache_val = not recompute  # memory too tight to keep a member's activations: nor its validation inputs
        if device.type == "cpu":  # ... nor freed blocks in the heap
            return_freed_blocks() if recompute else keep_freed_blocks()
        n_groups = -(-len(members) // size)
        title = f"{model}: {len(cfg.seeds)} seed(s) x {cfg.folds} folds" if lrs is None else \
            f"{model}: {len(cfg.lr_grid)} learning rates x {len(cfg.seeds) // len(cfg.lr_grid)} seed(s) x {cfg.folds} folds"
        title += f", {n_groups} groups of {size}" if n_groups > 1 else ""
        title += ", activations recomputed" if recompute else ""
        bar = Progress(cfg.epochs * n_groups, title, enabled=progress)
        result = _train_groups(make, seeds, size, data, cfg, problem, bar, lrs, recompute)
    finally:
        torch.set_num_threads(threads)
        settings()
    result.train_index, result.folds = tr, folds
    result.seconds = time.perf_counter() - started
    return result


def matmul_settings(device: torch.device, deterministic: bool):
    """Set the products of a run: on CUDA, fp32 products in TF32 (Ampere and later: inputs rounded to
    a 10-bit mantissa, several times fp32's rate) unless `deterministic`, which turns on torch's
    deterministic algorithms (and the cuBLAS workspace they need) for bit-reproducible GPU runs.
    CPU products are unchanged (TF32 is a CUDA format). Returns a function that restores the
    settings found."""
    found = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuBLAS needs to be deterministic
    tf32 = device.type == "cuda" and not deterministic
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = False if deterministic else found[2]
    torch.use_deterministic_algorithms(deterministic or found[3])

    def restore():
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = found[:2]
        torch.backends.cudnn.benchmark = found[2]
        torch.use_deterministic_algorithms(found[3])
    return restore


def dropout_seed(seed: int) -> int:
    """The seed of a member's dropout generator, from its initialisation seed (another stream)."""
    return int(np.random.SeedSequence([seed, DROPOUT_STREAM]).generate_state(1, np.uint64)[0] >> 1)


DROPOUT_STREAM = 0xD20


class Plan(NamedTuple):
    """How a run's members train: `size` at a time, activations `recompute`d or kept, `eval_rows`
    clips per member in a validation pass (fuse.training.memory)."""

    size: int
    recompute: bool
    eval_rows: int


def plan_groups(problem, model: str, make, data, cfg: TrainConfig, n_members: int) -> Plan:
    """As many members per group as `cfg.max_memory` (default: what the machine has) holds, from a
    probe of two members (fuse.training.memory); activations recomputed when `cfg.recompute` is on,
    or auto and one member does not fit otherwise. MemoryBudgetError when not one fits."""
    device = data.device
    budget, held = cfg.max_memory or machine_budget(device), process_memory(device)
    with torch.random.fork_rng(devices=[]):
        probe = Ensemble(make, 2, device, cfg.precision)
        cost = member_cost(probe, problem.shapes, data.companions, len(problem.classes), problem.multi_label,
                           min(data.eval_rows, data.val_padded.shape[1]), cfg.batch_size, *data.kept_bytes())
    del probe
    can = cost.recomputed is not None and cfg.recompute != "off"
    recompute = can and cfg.recompute == "on"
    # beside what the process holds: every member's best weights, kept to the end (recomputing:
    # on disk until every group has trained, _Spilled)
    reserved = cost.weights * n_members
    plan = functools.partial(group_size, n_members=n_members, budget=budget, held=held, given=bool(cfg.max_memory))
    try:
        size = plan(cost.recomputing() if recompute else cost, reserved=0 if recompute else reserved, what=model,
                    recomputed=recompute)
    except MemoryBudgetError:
        if recompute or not can:
            raise
        recompute = True
        size = plan(cost.recomputing(), reserved=0, what=model, recomputed=True)
        log.info("%s: one member needs ~%s, ~%s with its activations recomputed in the backward pass "
                 "(the same numbers, a second forward pass of its CNN)", model, show_size(cost.total),
                 show_size(cost.recomputing().total))
    if size < n_members:
        log.info("%s: %d members in groups of %d (one member ~%s; --max-memory %s)", model, n_members, size,
                 show_size((cost.recomputing() if recompute else cost).total), show_size(budget))
    rows = evaluation_rows(cost, size, budget - held - (0 if recompute else reserved), device, data.eval_rows,
                           data.val_padded.shape[1])
    return Plan(size, recompute, rows)


def _train_groups(make, seeds, size, data, cfg, problem, bar, lrs=None, recompute=False) -> Fit:
    """Every member trained, `size` at a time; the Fit of all. One group keeps its ensemble for
    the test pass; several are rebuilt from their best weights group by group (MemberGroups)."""
    groups = member_groups(len(seeds), size)
    trained, ensemble = [], None
    for g, group in enumerate(groups):
        ens = Ensemble(lambda i: make(group[i]), len(group), data.device, cfg.precision,
                       dropout_seeds=[dropout_seed(seeds[e]) for e in group], recompute=recompute)
        rates = [lrs[e] for e in group] if lrs is not None else cfg.lr
        outcome = _train(ens, data.for_group(group), cfg, problem, rates, bar, g * cfg.epochs)
        if len(groups) == 1:
            ensemble = (ens, outcome.best_params)
        elif recompute:  # memory is tight: the finished members' weights wait on disk
            outcome.states = _Spilled(outcome.states)
        outcome.best_params = None
        trained.append(outcome)
        del ens  # the next group's members take its place
    bar.close()
    fit = _collect(trained, data, len(seeds) // cfg.folds, cfg.folds)
    if ensemble is not None:
        fit._ensemble, fit._best_params = ensemble  # for the test pass in this process
    else:
        fit._ensemble, fit._best_params = MemberGroups(lambda e: load_member(make(e), fit.states[e]), len(seeds),
                                                       size, data.device, cfg.precision), None
    fit._ensemble.eval_rows = data.eval_rows
    return fit


class _Spilled:
    """A finished group's best weights in an unnamed temporary file until every group has trained
    (then read back, once, by iterating): where one member's activations barely fit, the members
    trained before it need not hold memory (15 MER-sized e2el members: 1.5 GB)."""

    def __init__(self, states: list[dict]):
        self.file = tempfile.TemporaryFile()
        torch.save(states, self.file)

    def __iter__(self):
        self.file.seek(0)
        states = torch.load(self.file, weights_only=True)
        self.file.close()
        return iter(states)


def member_groups(n_members: int, size: int) -> list[list[int]]:
    """Members 0..n-1 in groups of `size`; a member left alone beside groups of two or more runs
    beside a copy of itself ([e, e]), whose results are dropped: torch computes some products of a
    single member by other kernels (a batch of one matrix), which round otherwise."""
    groups = [list(range(a, min(a + size, n_members))) for a in range(0, n_members, size)]
    return [g * 2 if len(g) == 1 and size > 1 else g for g in groups]


HEAP_BLOCKS = 256 << 20  # bytes: blocks up to this size stay in the heap when freed (glibc)


def keep_freed_blocks() -> bool:
    """Let glibc keep freed blocks of up to HEAP_BLOCKS in the heap. By default it maps every block
    above 32 MB afresh and unmaps it when freed, so each step's large gradients (the first layers of
    15 MER-sized members: 47 MB) page-fault on every write: ~15,000 faults and a third of a step,
    measured. In about one process in four glibc maps them anyway (probably when the heap cannot
    grow in place). False where there is no glibc (nothing changes)."""
    return _heap_thresholds(HEAP_BLOCKS, 2 * HEAP_BLOCKS)


def return_freed_blocks() -> bool:
    """Undo keep_freed_blocks: glibc's default thresholds (128 KiB), and the heap's free memory
    returned now. Where memory is tight (activations recomputed), blocks kept free in the heap
    fragment it: a recomputed e2el step on MER-sized inputs peaked at 8.7 GB with them kept, 5.2 GB
    without (measured; each step then maps its large blocks afresh: page faults, docs/BENCHMARKS.md).
    False where there is no glibc."""
    return _heap_thresholds(128 << 10, 128 << 10, trim=True)


def _heap_thresholds(mmap: int, trim_above: int, trim: bool = False) -> bool:
    """Set glibc's mmap and trim thresholds (bytes); `trim`: return the heap's free memory now.
    False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    done = bool(libc.mallopt(m_mmap_threshold, mmap)) and bool(libc.mallopt(m_trim_threshold, trim_above))
    if trim:
        libc.malloc_trim(0)
    return done


SMALL_STEP = 1e8  # multiply-adds of a step's first layers below which a second thread costs more than it gives


def step_threads(problem, n_members: int, batch_size: int, model_config) -> int:
    """CPU threads for training: one when a step is small (thread hand-offs dominate, and badly so
    on a shared machine), else all of torch's."""
    width = (getattr(model_config, "hidden", None) or (256,))[0]   # crossbert: no hidden layer
    macs = n_members * batch_size * width * sum(int(np.prod(s)) for s in problem.shapes)
    return 1 if macs < SMALL_STEP else torch.get_num_threads()


def standardized(model: str, shapes, modalities, enabled: bool = True) -> list[bool]:
    """Which blocks are standardized (per column, training-fold statistics): all when `enabled`,
    unless the model says otherwise: `standardize = False` (pixels and log-mels are normalised
    inside), or `standardized_blocks(shapes, modalities)` (e.g. the vectors, not the sequences)."""
    cls = MODELS[model]
    if not enabled or not getattr(cls, "standardize", True):
        return [False] * len(shapes)
    if hasattr(cls, "standardized_blocks"):
        return list(cls.standardized_blocks(shapes, modalities))
    return [True] * len(shapes)


def _member_net(problem, model, model_config, seed):
    torch.manual_seed(seed)
    return build(model, model_config, problem.shapes, problem.modalities, len(problem.classes), problem.multi_label)


def training_only(problem) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the problem's training-only clips (fuse.inputs.extras) and their origin rows."""
    rows = problem.index(TRAIN_ONLY, labelled_only=True)
    origin = problem.origin[rows] if problem.origin is not None else np.full(len(rows), NO_ORIGIN)
    return rows, origin


class _Data:
    """Training tensors on the device and each member's train / validation rows (padded with -1).
    Local row i < len(tr) is training clip tr[i]; training-only clips (fuse.inputs.extras) follow. Rows,
    statistics and sequence lengths are every member's; the copies kept per member (standardized
    inputs, validation inputs) only those of the members of `group` (for_group). The training rows
    and the clips' sequence lengths stay on the host, where each step's lengths are read without
    waiting for the device (step_lengths)."""

    def __init__(self, problem, tr, folds, members, device, flags, extra=None, eval_rows=4096):
        self.eval_rows = eval_rows  # clips per member in one validation pass
        self.cache_val = True       # validation inputs kept between epochs (up to VAL_CACHE_BYTES)
        extra_rows, extra_origin = extra if extra is not None else (np.zeros(0, int), np.zeros(0, int))
        rows = np.concatenate([tr, extra_rows]).astype(np.int64)
        self.rows, self.device = rows, device  # problem row of each local row
        local = {int(r): i for i, r in enumerate(rows)}
        # on a CPU the problem's arrays themselves (no copy), read at the local rows' problem rows
        on_cpu = device.type == "cpu"
        self.blocks = [torch.as_tensor(b if on_cpu else b[rows], device=device) for b in problem.blocks]
        self.index = torch.as_tensor(rows if on_cpu else np.arange(len(rows)), device=device)
        self.multi = problem.multi_label
        lab = problem.labels[rows]
        self.labels = torch.as_tensor(np.nan_to_num(lab) if self.multi else lab,
                                      dtype=torch.float32 if self.multi else torch.long, device=device)
        val = problem.valence[rows]
        self.has_valence = torch.as_tensor(~np.isnan(val), dtype=torch.float32, device=device)
        self.valence = torch.as_tensor(np.nan_to_num(val), dtype=torch.float32, device=device)
        self.labels_np, self.valence_np = lab[:len(tr)], val[:len(tr)]
        self.train_rows = torch.as_tensor(_padded([np.array([local[int(r)] for r in member_rows(
            tr, folds[s], k, extra_rows, extra_origin)]) for s, k in members]))  # on the host: _train
        self.val_rows = [np.flatnonzero(folds[s] == k) for s, k in members]
        self.val_host = _padded(self.val_rows)
        self.val_padded = torch.as_tensor(self.val_host, device=device)
        self.companions, self.lengths = sequence_lengths(problem, rows)
        self.norms = [self._norms(rows, flags) for rows in self.train_rows.numpy()] if any(flags) else None
        self.mean = [torch.stack([n[i][0] for n in self.norms]) if flag else None for i, flag in enumerate(flags)] \
            if any(flags) else None
        self.std = [torch.stack([n[i][1] for n in self.norms]) if flag else None for i, flag in enumerate(flags)] \
            if any(flags) else None
        self.group, self.standardized, self._val_inputs = list(range(len(members))), None, None
        self.picked = torch.arange(len(members), device=device)

    def for_group(self, group: list[int]) -> "_Data":
        """The data with the per-member copies of `group`'s members, who train together: its rows
        [G, ...] from train_rows[group] and val_padded[group] (the padding widths every member's)."""
        view = copy.copy(self)
        view.group, view._val_inputs = group, None  # the validation passes' inputs, gathered once (val_chunks)
        view.picked = torch.as_tensor(group, device=self.device)
        # row r of member e's standardized copy (below) is row e * n + r of its flattened block
        view.member_offset = (torch.arange(len(group), device=self.device) * len(self.rows)).unsqueeze(1)
        view.standardized = view._standardized_copies()
        return view

    def _norms(self, rows, flags):
        """Per block (mean, std) over the member's training rows, None where not standardized."""
        rows = self.index[torch.as_tensor(rows[rows >= 0], device=self.device)]
        out = []
        for b, flag in zip(self.blocks, flags):
            x = b[rows].float() if flag else None
            out.append((x.mean(0), x.std(0).clamp(min=1e-6)) if flag else None)
        return out

    def kept_bytes(self) -> tuple[int, int]:
        """Bytes one member's kept copies can take: (its standardized inputs, its validation inputs)."""
        per_row = [int(np.prod(b.shape[1:])) * 4 for b in self.blocks]
        copies = sum(n for n, m in zip(per_row, self.mean or [None] * len(per_row)) if m is not None)
        return len(self.rows) * copies, self.val_padded.shape[1] * sum(per_row)

    def _standardized_copies(self):
        """Per standardized block, every group member's standardized copy of it [G, n, ...], made
        once when they fit in INPUT_CACHE_BYTES: a step then only gathers rows (15 MER-sized
        members' batch: 0.6 ms, against 1.7 ms to gather and standardize it each step). The same
        numbers either way. None per block not standardized; None when they do not fit."""
        if self.mean is None:
            return None
        G, n = len(self.group), len(self.rows)
        size = G * n * sum(int(np.prod(b.shape[1:])) for b, m in zip(self.blocks, self.mean) if m is not None) * 4
        if size > INPUT_CACHE_BYTES:
            return None
        out = []
        for b, mean, std in zip(self.blocks, self.mean, self.std):
            if mean is None:
                out.append(None)
                continue
            copies = torch.empty((G, n) + tuple(b.shape[1:]), dtype=torch.float32, device=b.device)
            x = rows_of(b, self.index).float()
            for i, e in enumerate(self.group):  # one member at a time: no [G, n, ...] temporaries
                copies[i] = standardize(x, mean[e], std[e])
            out.append(copies.view(G * n, *b.shape[1:]))
        return out

    def val_chunks(self):
        """Inputs of each validation pass of the group, [G, <= eval_rows, ...] per block, with their
        sequence lengths (step_lengths). The same every epoch: gathered and standardized once when
        they fit in VAL_CACHE_BYTES (a tenth of a 15-member MER-sized step's epoch otherwise) and
        memory is not tight (cache_val)."""
        if self._val_inputs is not None:
            yield from self._val_inputs
            return
        V = self.val_padded.shape[1]
        size = len(self.group) * V * sum(int(np.prod(b.shape[1:])) for b in self.blocks) * 4
        keep = self.cache_val and size <= VAL_CACHE_BYTES
        chunks = []
        for start in range(0, V, self.eval_rows):
            every = self.val_padded[:, start:start + self.eval_rows]
            inputs = self.gather(every[self.picked])
            chunk = (inputs, self.step_lengths(inputs, self.val_host[:, start:start + self.eval_rows]))
            if keep:
                chunks.append(chunk)
            yield chunk
        if keep:
            self._val_inputs = chunks

    def gather(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """rows [G, B] of the group's members (-1 = padding) -> inputs [G, B, ...] per block,
        standardized per member."""
        safe = rows.clamp(min=0)
        at = self.index[safe]
        out = []
        for i, b in enumerate(self.blocks):
            if self.standardized is not None and self.standardized[i] is not None:
                out.append(rows_of(self.standardized[i], safe + self.member_offset))
                continue
            x = rows_of(b, at).float()  # uint8 / float16 blocks stay compact until here
            if self.mean is not None and self.mean[i] is not None:
                shape = (x.shape[0], 1) + x.shape[2:]
                x = standardize(x, self.mean[i][self.picked].view(shape), self.std[i][self.picked].view(shape))
            out.append(x)
        return out

    def step_lengths(self, inputs: list[torch.Tensor], every: np.ndarray) -> dict[int, int]:
        """{id(input): steps} for the sequence blocks among `inputs`: the steps up to the last valid
        one of any clip of `every` [E, B] (every member's rows of this step or pass, -1 = padding;
        on the host), so that each group keeps the steps all members would (fuse.models.seq.trim)."""
        real = every[every >= 0]
        return {id(inputs[i]): longest(n[real]) for i, n in self.lengths.items()}


def sequence_blocks(shapes, modalities) -> list[tuple[int, int]]:
    """(sequence block, its validity block) of every [T, ...] block followed by its [T] mask or []
    count in its modality (fuse.models.seq.roles)."""
    out = []
    for modality in dict.fromkeys(modalities):
        group = [i for i, m in enumerate(modalities) if m == modality]
        try:
            found = roles([shapes[i] for i in group])
        except ValueError:  # not a sequence model's inputs
            continue
        out += [(group[item], group[valid]) for kind, item, valid in found if kind != "vector" and valid is not None]
    return out


def sequence_lengths(problem, rows) -> tuple[dict[int, int], dict[int, np.ndarray]]:
    """({validity block: its sequence block}, {sequence block: steps of each of `rows` up to its
    last valid one [n] int64}) for the sequence blocks of `problem`."""
    companions, lengths = {}, {}
    for item, valid in sequence_blocks(problem.shapes, problem.modalities):
        companions[valid], lengths[item] = item, valid_steps(problem.blocks[valid][rows], problem.shapes[item][0])
    return companions, lengths


def valid_steps(validity: np.ndarray, T: int) -> np.ndarray:
    """Steps of each clip up to its last valid one, [n] int64, from its validity block (host
    values, as fuse.models.seq.validity reads them on the device): a count [n] (steps t < count
    are valid) or a mask [n, T] (steps > 0 are valid)."""
    block = np.asarray(validity, dtype=np.float64)
    if block.ndim == 1:
        return np.ceil(np.clip(block, 0, T)).astype(np.int64)
    seen = block > 0
    return np.where(seen.any(1), T - np.argmax(seen[:, ::-1], axis=1), 0).astype(np.int64)


def longest(steps: np.ndarray) -> int:
    """The steps a batch keeps: its longest clip's, at least one (fuse.models.seq.trim)."""
    return max(1, int(steps.max(initial=0)))


VAL_CACHE_BYTES = 1 << 30  # validation inputs kept between epochs up to this size (float32)
INPUT_CACHE_BYTES = 1 << 30  # members' standardized copies of the inputs up to this size (float32)
OUTLIER_CLIP = 10.0  # standardized values beyond +-10 SD are clipped: one odd test clip (an openSMILE
                    # ratio of 500 SD, seen on the demo) must not blow up its valence


def rows_of(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[index] for an index of any shape: index_select, 5x faster than advanced indexing on a CPU
    (15 x 32 rows of 1024: 57 against 290 us)."""
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


def standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return ((x - mean) / std).clamp(-OUTLIER_CLIP, OUTLIER_CLIP)


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    out = np.full((len(rows), max(len(r) for r in rows)), -1, dtype=np.int64)
    for e, r in enumerate(rows):
        out[e, :len(r)] = r
    return out


def _epoch_order(train_rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each member's training rows in a fresh random order, padding (-1) last: [E, n_max], on the
    host as train_rows are."""
    keys = torch.rand(train_rows.shape, generator=generator).masked_fill(train_rows < 0, 2.0)
    return train_rows.gather(1, keys.argsort(dim=1))


def split_fit(fit: Fit, n_rates: int) -> list[Fit]:
    """A Fit of an lr_grid run -> one Fit per learning rate (its S seeds), each charged an equal
    share of the seconds. The in-process ensemble is dropped: each rebuilds its members from states."""
    S = len(fit.folds) // n_rates
    K = fit.best_epoch.shape[1]
    return [Fit(train_index=fit.train_index, folds=fit.folds[g * S:(g + 1) * S],
                oof_probs=fit.oof_probs[g * S:(g + 1) * S], oof_valence=fit.oof_valence[g * S:(g + 1) * S],
                best_epoch=fit.best_epoch[g * S:(g + 1) * S], history=fit.history[g * S:(g + 1) * S],
                states=fit.states[g * S * K:(g + 1) * S * K], norms=fit.norms[g * S * K:(g + 1) * S * K],
                seconds=fit.seconds / n_rates)
            for g in range(n_rates)]


@dataclass
class _Trained:
    """What training a group of members leaves, per member of the group."""

    group: list[int]                       # its members (a lone member twice: member_groups)
    best_epoch: np.ndarray                 # [G]
    history: np.ndarray                    # [G, epochs] (NaN after a member stopped early)
    val_best: list                         # [G] (probabilities [V, C], valence [V]) at the best epoch
    states: list                           # [G] best weights (fuse.training.ensemble.Ensemble.member_state)
    best_params: dict                      # the best weights, stacked (on the device)
    epochs: int                            # epochs it trained (fewer when all its members stopped early)


def _train(ens, data, cfg, problem, lr, bar, done: int = 0) -> _Trained:
    """Train the members of data.group (the Ensemble `ens`) for cfg.epochs; `lr`: one rate or one
    per member; `done`: epochs of earlier groups on the progress bar. Every step draws the same
    batch order and keeps the same sequence steps as a run of all members (a group's members get
    that run's numbers)."""
    opt = ens.optimizer(lr, cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seeds[0])
    group, G = data.group, ens.n
    best_score = np.full(G, -np.inf)
    best_epoch = np.zeros(G, dtype=int)
    history = np.full((G, cfg.epochs), np.nan)
    best_params = {k: v.detach().clone() for k, v in ens.params.items()}
    n_classes = len(problem.classes)
    val_best = [(np.zeros((len(data.val_rows[e]), n_classes)), np.zeros(len(data.val_rows[e]))) for e in group]
    # early stopping per member (Lightning's EarlyStopping, as SAMSEMO's run.py uses it): a member
    # whose score has not improved for `patience` epochs keeps its best epoch; the group trains on
    # until every member of it has stopped, their later epochs unused and unrecorded
    stopped = np.zeros(G, dtype=bool)
    ran = cfg.epochs
    for epoch in range(cfg.epochs):
        order = _epoch_order(data.train_rows, generator)  # every member's: the group takes its own
        every = order.to(data.device)  # one copy an epoch; each step's lengths are read from `order`
        for start in range(0, every.shape[1], cfg.batch_size):
            step = every[:, start:start + cfg.batch_size]
            rows = step[data.picked]
            weight = (rows >= 0).float()
            rows = rows.clamp(min=0)
            inputs = data.gather(rows)
            opt.zero_grad(set_to_none=True)
            with step_lengths(data.step_lengths(inputs, order[:, start:start + cfg.batch_size].numpy())):
                loss = ens.loss(inputs, rows_of(data.labels, rows), rows_of(data.valence, rows), weight,
                                weight * rows_of(data.has_valence, rows))
            loss.backward()
            opt.step()
        probs, predicted = _validate(ens, data)
        improved = np.zeros(G, dtype=bool)
        for i in np.flatnonzero(~stopped):
            e = group[i]
            n = len(data.val_rows[e])
            score = _selection_score(problem, data, e, probs[i, :n], predicted[i, :n])
            history[i, epoch] = score
            if score > best_score[i]:
                best_score[i], best_epoch[i] = score, epoch
                val_best[i] = (probs[i, :n], predicted[i, :n])
                improved[i] = True
        _keep_best(best_params, ens.params, improved)
        bar.update(done + epoch + 1, f"val {np.nanmean(history[:, epoch]):.3f}")
        if cfg.patience:
            stopped |= epoch - best_epoch >= cfg.patience
            if stopped.all():
                ran = epoch + 1
                bar.update(done + cfg.epochs, f"stopped at epoch {ran}")
                break
    states = [ens.member_state(i, best_params) for i in range(G)]
    n = len(dict.fromkeys(group))  # a lone member's copy left out
    return _Trained(group[:n], best_epoch[:n], history[:n], val_best[:n], states[:n], best_params, ran)


def eval_rows(model: str) -> int:
    """Clips per member in one evaluation pass: a model whose activations are much larger than its
    inputs (a CNN over 16 crops per clip) says how many (`eval_rows`)."""
    return getattr(MODELS[model], "eval_rows", 4096)


def _validate(ens, data):
    """Validation-fold probabilities [G, V, C] and valence [G, V] (numpy) of the current weights."""
    outs = []
    for inputs, lengths in data.val_chunks():
        with step_lengths(lengths):
            outs.append(ens.predict(inputs))
    logits = torch.cat([o[0] for o in outs], dim=1)
    valence = torch.cat([o[1] for o in outs], dim=1)
    probs = member_sigmoid(logits) if data.multi else logits.softmax(-1)
    return probs.cpu().numpy(), valence.cpu().numpy()


def _selection_score(problem, data, e, probs, predicted) -> float:
    """The best-epoch criterion on member e's validation fold: weighted F1 - 0.25 * valence MSE
    (F1 alone without valence); multi-label: weighted average precision in place of F1, since
    thresholds are chosen after training."""
    rows = data.val_rows[e]
    if problem.multi_label:
        quality = metrics.weighted_average_precision(data.labels_np[rows], probs)
    else:
        quality = metrics.quick_weighted_f1(data.labels_np[rows], probs.argmax(1), probs.shape[1])
    mse = metrics.valence_mse(data.valence_np[rows], predicted) if problem.has_valence else None
    return metrics.combined_score(float(quality), mse)


def _keep_best(best: dict, params: dict, improved: np.ndarray):
    """Copy the members that improved into the best weights."""
    if improved.any():
        index = torch.as_tensor(np.flatnonzero(improved), device=next(iter(params.values())).device)
        for name, value in params.items():
            best[name].index_copy_(0, index, value.detach().index_select(0, index))


def _collect(trained: list[_Trained], data, S: int, K: int) -> Fit:
    """The Fit of every member (e = s * K + k) from its group's outcome."""
    n, C = len(data.labels_np), trained[0].val_best[0][0].shape[1]
    oof_probs, oof_valence = np.zeros((S, n, C)), np.zeros((S, n))
    best_epoch = np.concatenate([t.best_epoch for t in trained])
    # the epochs the longest group trained: what one group of all members would have trained
    history = np.concatenate([t.history for t in trained])[:, :max(t.epochs for t in trained)]
    for t in trained:
        for e, best in zip(t.group, t.val_best):
            oof_probs[e // K, data.val_rows[e]], oof_valence[e // K, data.val_rows[e]] = best
    norms = ([[(pair[0].cpu(), pair[1].cpu()) if pair is not None else None for pair in member] for member in data.norms]
             if data.norms is not None else [None] * S * K)
    return Fit(train_index=None, folds=None, oof_probs=oof_probs, oof_valence=oof_valence,
               best_epoch=best_epoch.reshape(S, K), history=history.reshape(S, K, -1),
               states=[state for t in trained for state in t.states], norms=norms)


class MemberGroups:
    """Saved members evaluated group by group: `make(e)` builds member e with its weights; each
    group (member_groups of `size`) is an Ensemble built when its turn comes (fuse.training.loop.predict)."""

    eval_rows = None  # clips per member in an evaluation pass, where planned (fuse.training.memory.evaluation_rows)

    def __init__(self, make, n: int, size: int, device, precision: str = "fp32"):
        self.make, self.n, self.size, self.device, self.precision = make, n, size, device, precision

    def __iter__(self):
        for group in member_groups(self.n, self.size):
            yield group, Ensemble(lambda i: self.make(group[i]), len(group), self.device, self.precision)


@torch.no_grad()
def predict(ens, params: dict, norms: list, blocks: list[np.ndarray], multi_label: bool,
            chunk: int = 2048, modalities: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every member's outputs on the same clips: probabilities [E, n, C] and valence [E, n].
    ens: an Ensemble (its weights, or `params`) or MemberGroups (one group at a time);
    blocks: [n, ...] per block; norms: per member None, or per block (mean, std) or None;
    modalities: the blocks', so that a sequence model keeps the steps up to a chunk's last valid
    one, read from the host blocks (fuse.models.seq.trim); without, every step."""
    if isinstance(ens, MemberGroups):
        probs, valence = [], []
        for group, part in ens:
            p, v = predict(part, None, [norms[e] for e in group], blocks, multi_label, chunk, modalities)
            probs.append(p[:len(set(group))]), valence.append(v[:len(set(group))])  # a lone member's copy left out
        return np.concatenate(probs), np.concatenate(valence)
    device = ens.device
    sequences = sequence_blocks([b.shape[1:] for b in blocks], modalities) if modalities is not None else []
    scales = [_stacked_norms(norms, i, device) for i in range(len(blocks))]
    probs, valence = [], []
    for start in range(0, len(blocks[0]), chunk):
        inputs = []
        for b, scale in zip(blocks, scales):
            x = torch.as_tensor(b[start:start + chunk], device=device).float()
            x = x.unsqueeze(0).expand(ens.n, *x.shape)
            inputs.append(standardize(x, *scale) if scale is not None else x)
        lengths = {id(inputs[item]): longest(valid_steps(blocks[valid][start:start + chunk], blocks[item].shape[1]))
                   for item, valid in sequences}
        with step_lengths(lengths):
            logits, val = ens.predict(inputs, params)
        probs.append((member_sigmoid(logits) if multi_label else logits.softmax(-1)).cpu().numpy())
        valence.append(val.cpu().numpy())
    return np.concatenate(probs, axis=1), np.concatenate(valence, axis=1)


def _stacked_norms(norms: list, i: int, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Block i's (mean, std) of every member, [E, 1, ...] each on the device; None where not standardized."""
    if norms[0] is None or norms[0][i] is None:
        return None
    return tuple(torch.stack([m[i][j] for m in norms]).to(device).unsqueeze(1) for j in (0, 1))


PREDICT_CHUNK = 2048  # clips per evaluation pass of a run's members (at most the model's eval_rows)


def load_ensemble(problem_shapes, modalities, n_classes, multi_label, model, model_config, states,
                  device: str = "auto", precision: str = "fp32", max_memory: int | None = None):
    """Saved member weights to score another dataset with: an Ensemble of all, or MemberGroups
    when they do not fit `max_memory` together (default: what the machine has; fuse.training.memory)."""
    device = resolve_device(device)

    def make(e):
        return load_member(build(model, model_config, problem_shapes, modalities, n_classes, multi_label), states[e])

    size, held, rows = len(states), process_memory(device), min(PREDICT_CHUNK, eval_rows(model))
    if len(states) > 1:
        with torch.random.fork_rng(devices=[]):
            probe = Ensemble(make, 2, device, precision)
            companions = {valid: item for item, valid in sequence_blocks(problem_shapes, modalities)}
            cost = member_cost(probe, problem_shapes, companions, n_classes, multi_label, rows)
        del probe
        budget = max_memory or machine_budget(device)
        size = group_size(cost, len(states), budget, held, 0, model, bool(max_memory))
        rows = evaluation_rows(cost, size, budget - held, device, rows, PREDICT_CHUNK)
    ens = Ensemble(make, size, device, precision) if size == len(states) else \
        MemberGroups(make, len(states), size, device, precision)
    ens.eval_rows = rows
    return ens
