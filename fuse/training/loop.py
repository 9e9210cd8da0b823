"""The one training loop: K-fold CV x seeds, trained together, best epoch per fold.

Every (seed, fold) is a member of one batched model (fuse.training.ensemble). Per epoch each member sees its
own shuffled training clips in batches; members with fewer clips get masked padding. After each
epoch every member is scored on its validation fold; its weights at the best epoch (combined
score: weighted F1 - 0.25 * valence MSE, F1 alone without valence) are kept, and the test pass runs
once with them. Standardization statistics come from each member's training clips only.
"""
from __future__ import annotations

import ctypes
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cache.cli import check_device
from fuse import metrics
from fuse.inputs.extras import NO_ORIGIN, TRAIN_ONLY, member_rows
from fuse.inputs.folds import make_folds
from fuse.models import MODELS, build
from .ensemble import Ensemble, load_member
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
    the Fit holds G x S seeds, rate-major: split_fit gives one Fit per rate."""
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
        keep_freed_blocks()
        torch.set_num_threads(cfg.threads or step_threads(problem, len(members), cfg.batch_size, model_config))
    torch.manual_seed(cfg.seeds[0])  # dropout masks
    ens = Ensemble(lambda e: _member_net(problem, model, model_config, cfg.seeds[members[e][0]] * 1000 + members[e][1]),
                   len(members), device, cfg.precision)
    flags = standardized(model, problem.shapes, problem.modalities, cfg.standardize)
    data = _Data(problem, tr, folds, members, device, flags, training_only(problem), eval_rows(model))
    try:
        title = f"{model}: {len(cfg.seeds)} seed(s) x {cfg.folds} folds" if lrs is None else \
            f"{model}: {len(cfg.lr_grid)} learning rates x {len(cfg.seeds) // len(cfg.lr_grid)} seed(s) x {cfg.folds} folds"
        result = _train(ens, data, cfg, problem, progress, title, lrs)
    finally:
        torch.set_num_threads(threads)
    result.train_index, result.folds = tr, folds
    result.seconds = time.perf_counter() - started
    return result


HEAP_BLOCKS = 256 << 20  # bytes: blocks up to this size stay in the heap when freed (glibc)


def keep_freed_blocks() -> bool:
    """Let glibc keep freed blocks of up to HEAP_BLOCKS in the heap. By default it maps every block
    above 32 MB afresh and unmaps it when freed, so each step's large gradients (the first layers of
    15 MER-sized members: 47 MB) page-fault on every write: ~15,000 faults and a third of a step,
    measured. In about one process in four glibc maps them anyway (probably when the heap cannot
    grow in place). False where there is no glibc (nothing changes)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, HEAP_BLOCKS)) and bool(libc.mallopt(m_trim_threshold, 2 * HEAP_BLOCKS))


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
    Local row i < len(tr) is training clip tr[i]; training-only clips (fuse.inputs.extras) follow."""

    def __init__(self, problem, tr, folds, members, device, flags, extra=None, eval_rows=4096):
        self.eval_rows = eval_rows  # clips per member in one validation pass
        extra_rows, extra_origin = extra if extra is not None else (np.zeros(0, int), np.zeros(0, int))
        rows = np.concatenate([tr, extra_rows]).astype(np.int64)
        self.rows = rows  # problem row of each local row
        local = {int(r): i for i, r in enumerate(rows)}
        self.blocks = [torch.as_tensor(b[rows], device=device) for b in problem.blocks]
        self.multi = problem.multi_label
        lab = problem.labels[rows]
        self.labels = torch.as_tensor(np.nan_to_num(lab) if self.multi else lab,
                                      dtype=torch.float32 if self.multi else torch.long, device=device)
        val = problem.valence[rows]
        self.has_valence = torch.as_tensor(~np.isnan(val), dtype=torch.float32, device=device)
        self.valence = torch.as_tensor(np.nan_to_num(val), dtype=torch.float32, device=device)
        self.labels_np, self.valence_np = lab[:len(tr)], val[:len(tr)]
        self.train_rows = _padded([np.array([local[int(r)] for r in member_rows(tr, folds[s], k, extra_rows, extra_origin)])
                                   for s, k in members], device)
        self.val_rows = [np.flatnonzero(folds[s] == k) for s, k in members]
        self.val_padded = _padded(self.val_rows, device)
        self._val_inputs = None  # the validation passes' inputs, gathered once (val_chunks)
        self.norms = [self._norms(rows, flags) for rows in self.train_rows.cpu().numpy()] if any(flags) else None
        self.mean = [torch.stack([n[i][0] for n in self.norms]) if flag else None for i, flag in enumerate(flags)] \
            if any(flags) else None
        self.std = [torch.stack([n[i][1] for n in self.norms]) if flag else None for i, flag in enumerate(flags)] \
            if any(flags) else None
        # row r of member e's standardized copy (below) is row e * n + r of its flattened block
        self.member_offset = (torch.arange(len(members), device=device) * len(rows)).unsqueeze(1)
        self.standardized = self._standardized_copies()

    def _norms(self, rows, flags):
        """Per block (mean, std) over the member's training rows, None where not standardized."""
        rows = torch.as_tensor(rows[rows >= 0], device=self.blocks[0].device)
        out = []
        for b, flag in zip(self.blocks, flags):
            x = b[rows].float() if flag else None
            out.append((x.mean(0), x.std(0).clamp(min=1e-6)) if flag else None)
        return out

    def _standardized_copies(self):
        """Per standardized block, every member's standardized copy of it [E, n, ...], made once
        when they fit in INPUT_CACHE_BYTES: a step then only gathers rows (15 MER-sized members'
        batch: 0.6 ms, against 1.7 ms to gather and standardize it each step). The same numbers
        either way. None per block not standardized; None when they do not fit."""
        if self.mean is None:
            return None
        E = len(self.norms)
        size = E * sum(b.numel() for b, m in zip(self.blocks, self.mean) if m is not None) * 4
        if size > INPUT_CACHE_BYTES:
            return None
        out = []
        for b, mean, std in zip(self.blocks, self.mean, self.std):
            if mean is None:
                out.append(None)
                continue
            copies = torch.empty((E,) + tuple(b.shape), dtype=torch.float32, device=b.device)
            x = b.float()
            for e in range(E):  # one member at a time: no [E, n, ...] temporaries
                copies[e] = standardize(x, mean[e], std[e])
            out.append(copies.view(E * b.shape[0], *b.shape[1:]))
        return out

    def val_chunks(self):
        """Inputs of each validation pass, [E, <= eval_rows, ...] per block. The same every epoch:
        gathered and standardized once when they fit in VAL_CACHE_BYTES (a tenth of a 15-member
        MER-sized step's epoch otherwise), else per pass."""
        if self._val_inputs is not None:
            yield from self._val_inputs
            return
        E, V = self.val_padded.shape
        size = E * V * sum(int(np.prod(b.shape[1:])) for b in self.blocks) * 4
        chunks = []
        for start in range(0, V, self.eval_rows):
            inputs = self.gather(self.val_padded[:, start:start + self.eval_rows])
            if size <= VAL_CACHE_BYTES:
                chunks.append(inputs)
            yield inputs
        if size <= VAL_CACHE_BYTES:
            self._val_inputs = chunks

    def gather(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """rows [E, B] (-1 = padding) -> inputs [E, B, ...] per block, standardized per member."""
        safe = rows.clamp(min=0)
        out = []
        for i, b in enumerate(self.blocks):
            if self.standardized is not None and self.standardized[i] is not None:
                out.append(rows_of(self.standardized[i], safe + self.member_offset))
                continue
            x = rows_of(b, safe).float()  # uint8 / float16 blocks stay compact until here
            if self.mean is not None and self.mean[i] is not None:
                shape = (x.shape[0], 1) + x.shape[2:]
                x = standardize(x, self.mean[i].view(shape), self.std[i].view(shape))
            out.append(x)
        return out


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


def _padded(rows: list[np.ndarray], device) -> torch.Tensor:
    out = np.full((len(rows), max(len(r) for r in rows)), -1, dtype=np.int64)
    for e, r in enumerate(rows):
        out[e, :len(r)] = r
    return torch.as_tensor(out, device=device)


def _epoch_order(train_rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each member's training rows in a fresh random order, padding (-1) last: [E, n_max]."""
    keys = torch.rand(train_rows.shape, generator=generator, device="cpu").to(train_rows.device)
    keys = keys.masked_fill(train_rows < 0, 2.0)
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


def _train(ens, data, cfg, problem, progress, title, lrs=None) -> Fit:
    opt = ens.optimizer(lrs if lrs is not None else cfg.lr, cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seeds[0])
    E, S, K = ens.n, len(cfg.seeds), cfg.folds
    best_score = np.full(E, -np.inf)
    best_epoch = np.zeros(E, dtype=int)
    history = np.full((E, cfg.epochs), np.nan)
    best_params = {k: v.detach().clone() for k, v in ens.params.items()}
    n_classes = len(problem.classes)
    val_best = [(np.zeros((len(r), n_classes)), np.zeros(len(r))) for r in data.val_rows]
    # early stopping per member (Lightning's EarlyStopping, as SAMSEMO's run.py uses it): a member
    # whose score has not improved for `patience` epochs keeps its best epoch; the batched model
    # trains on until every member has stopped, their later epochs unused and unrecorded
    stopped = np.zeros(E, dtype=bool)
    bar = Progress(cfg.epochs, title, enabled=progress)
    for epoch in range(cfg.epochs):
        order = _epoch_order(data.train_rows, generator)
        for start in range(0, order.shape[1], cfg.batch_size):
            rows = order[:, start:start + cfg.batch_size]
            keep = rows >= 0
            rows = rows.clamp(min=0)
            weight = keep.float()
            opt.zero_grad(set_to_none=True)
            loss = ens.loss(data.gather(rows), rows_of(data.labels, rows), rows_of(data.valence, rows), weight,
                            weight * rows_of(data.has_valence, rows))
            loss.backward()
            opt.step()
        probs, predicted = _validate(ens, data)
        improved = np.zeros(E, dtype=bool)
        for e in np.flatnonzero(~stopped):
            n = len(data.val_rows[e])
            score = _selection_score(problem, data, e, probs[e, :n], predicted[e, :n])
            history[e, epoch] = score
            if score > best_score[e]:
                best_score[e], best_epoch[e] = score, epoch
                val_best[e] = (probs[e, :n], predicted[e, :n])
                improved[e] = True
        _keep_best(best_params, ens.params, improved)
        bar.update(epoch + 1, f"val {np.nanmean(history[:, epoch]):.3f}")
        if cfg.patience:
            stopped |= epoch - best_epoch >= cfg.patience
            if stopped.all():
                history = history[:, :epoch + 1]
                break
    bar.close()
    return _collect(ens, data, best_params, best_epoch, history, val_best, S, K)


def eval_rows(model: str) -> int:
    """Clips per member in one evaluation pass: a model whose activations are much larger than its
    inputs (a CNN over 16 crops per clip) says how many (`eval_rows`)."""
    return getattr(MODELS[model], "eval_rows", 4096)


def _validate(ens, data):
    """Validation-fold probabilities [E, V, C] and valence [E, V] (numpy) of the current weights."""
    outs = [ens.predict(inputs) for inputs in data.val_chunks()]
    logits = torch.cat([o[0] for o in outs], dim=1)
    valence = torch.cat([o[1] for o in outs], dim=1)
    probs = logits.sigmoid() if data.multi else logits.softmax(-1)
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


def _collect(ens, data, best_params, best_epoch, history, val_best, S, K) -> Fit:
    n, C = len(data.labels_np), val_best[0][0].shape[1]
    oof_probs, oof_valence = np.zeros((S, n, C)), np.zeros((S, n))
    for e, rows in enumerate(data.val_rows):
        oof_probs[e // K, rows], oof_valence[e // K, rows] = val_best[e]
    states = [ens.member_state(e, best_params) for e in range(ens.n)]
    norms = ([[(pair[0].cpu(), pair[1].cpu()) if pair is not None else None for pair in member] for member in data.norms]
             if data.norms is not None else [None] * ens.n)
    fit = Fit(train_index=None, folds=None, oof_probs=oof_probs, oof_valence=oof_valence,
              best_epoch=best_epoch.reshape(S, K),
              history=history.reshape(S, K, -1), states=states, norms=norms)
    fit._ensemble, fit._best_params = ens, best_params  # for the test pass in this process
    return fit


@torch.no_grad()
def predict(ens: Ensemble, params: dict, norms: list, blocks: list[np.ndarray], multi_label: bool,
            chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Every member's outputs on the same clips: probabilities [E, n, C] and valence [E, n].
    blocks: [n, ...] per block; norms: per member None, or per block (mean, std) or None."""
    device = ens.device
    probs, valence = [], []
    for start in range(0, len(blocks[0]), chunk):
        inputs = []
        for i, b in enumerate(blocks):
            x = torch.as_tensor(b[start:start + chunk], device=device).float()
            x = x.unsqueeze(0).expand(ens.n, *x.shape)
            if norms[0] is not None and norms[0][i] is not None:
                mean = torch.stack([m[i][0] for m in norms]).to(device).unsqueeze(1)
                std = torch.stack([m[i][1] for m in norms]).to(device).unsqueeze(1)
                x = standardize(x, mean, std)
            inputs.append(x)
        logits, val = ens.predict(inputs, params)
        probs.append((logits.sigmoid() if multi_label else logits.softmax(-1)).cpu().numpy())
        valence.append(val.cpu().numpy())
    return np.concatenate(probs, axis=1), np.concatenate(valence, axis=1)


def load_ensemble(problem_shapes, modalities, n_classes, multi_label, model, model_config, states,
                  device: str = "auto", precision: str = "fp32") -> Ensemble:
    """An Ensemble holding saved member weights (for scoring another dataset with a run)."""
    def make(e):
        return load_member(build(model, model_config, problem_shapes, modalities, n_classes, multi_label), states[e])
    return Ensemble(make, len(states), resolve_device(device), precision)
