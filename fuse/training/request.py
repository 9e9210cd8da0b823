"""A training request: the options of `python -m fuse.train`, checked before any work (prepare),
and the run id and folder it trains into. Trained and written by fuse.results.runs:

    request = TrainRequest.from_options(dataset="demo", modalities=["A", "V"], model="attention")
    result = run_training(request)      # -> Result: folder, metrics
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cache import LayerSelectionError, cache_root, open_clips
from cache.cli import Refused
from fuse.folders import claim
from fuse.inputs import specs as feature_specs
from fuse.inputs.extras import TRAIN_ONLY, add_augmented
from fuse.inputs.problem import load_problem
from fuse.inputs.pseudo import add_pseudo, members_path
from fuse.models import MODELS, build, make_config
from .loop import TrainConfig, resolve_device
from .memory import parse_size

NEURAL_TRAINING = ("epochs", "batch_size", "precision", "weight_decay", "patience")
# how a run is computed, not what it computes: the same results whatever their values
NOT_IN_RUN_ID = ("device", "threads", "lr_grid", "max_memory", "deterministic", "recompute")
NET_OPTIONS = ("hidden", "dropout", "decoder", "loss", "layer_weights", "attention_scores", "structure", "channels",
               "width", "alpha", "temperature")


@dataclass
class TrainRequest:
    model: str
    configs: list                      # one model config, or three for `afg --structure all`
    train: TrainConfig
    dataset: str | None = None
    cache_dir: str | None = None
    modalities: list | None = None
    features: dict = field(default_factory=dict)
    test_splits: list | None = None
    out: str | None = None
    corpus: dict = field(default_factory=dict)   # layout / root / clips: a clip table override
    quiet: bool = False
    augment: str | None = None         # a cached dataset of augmented copies (training folds only)
    pseudo: str | None = None          # a pseudo-label CSV (fuse.semi; training folds only)

    @classmethod
    def from_options(cls, model="attention", modalities=None, features=None, dataset=None, cache_dir=None,
                     folds=5, seeds=1, device="auto", threads=None, standardize=True, test_splits=None, out=None,
                     layout=None, root=None, clips=None, quiet=False, lr=None, augment=None, pseudo=None,
                     max_memory=None, deterministic=False, recompute="auto", **options) -> "TrainRequest":
        """Options as the command line names them; refuses (ValueError) those `model` cannot use.
        max_memory: bytes, or a size such as '6G' (fuse.training.memory.parse_size)."""
        if isinstance(max_memory, str):
            max_memory = parse_size(max_memory)
        net = {k: options.pop(k, None) for k in NET_OPTIONS}
        training = {k: options.pop(k, None) for k in NEURAL_TRAINING}
        if options:
            raise ValueError(f"unknown option(s): {', '.join(sorted(options))}")
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}: choose from {', '.join(sorted(MODELS))}")
        if getattr(MODELS[model], "estimator", False):
            given = [f"--{k.replace('_', '-')}" for k, v in {**net, **training}.items() if v is not None]
            if given:
                raise ValueError(f"--model {model} is not trained by epochs and has no {', '.join(given)}")
            configs = [make_config(model, **({"learning_rate": lr} if lr else {}))]
            train = TrainConfig(folds=folds, seeds=tuple(range(seeds)), device=device, standardize=standardize,
                                threads=threads, max_memory=max_memory, deterministic=deterministic,
                                recompute=recompute)
        else:
            structures = ["1", "2", "3"] if net.get("structure") == "all" else [net.get("structure")]
            configs = [make_config(model, **{**net, "structure": s}) for s in structures]
            given = {k: v for k, v in {**training, "lr": lr}.items() if v is not None}
            defaults = getattr(MODELS[model], "training_defaults", {})  # e.g. e2el: SAMSEMO's lr, batch, epochs, patience
            train = TrainConfig(folds=folds, seeds=tuple(range(seeds)), device=device, standardize=standardize,
                                threads=threads, max_memory=max_memory, deterministic=deterministic,
                                recompute=recompute, **{**defaults, **given})
        if train.precision not in ("fp32", "bf16"):
            raise ValueError(f"--precision {train.precision!r}: choose fp32 or bf16")
        resolve_device(device)
        splits = [s.strip() for s in test_splits.split(",") if s.strip()] if test_splits else None
        corpus = {k: v for k, v in dict(layout=layout, root=root, clips=clips).items() if v}
        return cls(model, configs, train, dataset, cache_dir, modalities, features or {}, splits, out, corpus, quiet,
                   augment, pseudo)


def choose_dataset(cache_dir) -> str:
    """The one dataset in the cache; refuses none or several, listing them."""
    base = cache_root(cache_dir)
    found = sorted(p.name for p in base.glob("*") if p.is_dir() and any(p.glob("*.h5")))
    if len(found) == 1:
        return found[0]
    if not found:
        raise Refused(f"no cached dataset in {base}: run `make demo` or `make extract`, or give --cache DIR")
    raise Refused(f"several datasets are cached in {base} ({', '.join(found)}): choose one with --dataset")


def cached_features(dataset: str, cache_dir) -> list[str]:
    return sorted(p.stem for p in (cache_root(cache_dir) / dataset).glob("*.h5") if not p.name.startswith("_"))


def clip_table(request: TrainRequest, dataset: str):
    """The cached clip table, or the one of --layout/--root/--clips."""
    if request.corpus:
        from manifests import load_manifest
        from cache.clips import ClipTable

        try:
            manifest = load_manifest(dataset, **request.corpus)
        except (ValueError, FileNotFoundError) as err:
            raise Refused(str(err)) from None
        return ClipTable.from_manifest(manifest, dataset, source="fuse.train override")
    try:
        return open_clips(dataset, root=request.cache_dir)
    except FileNotFoundError as err:
        raise Refused(str(err)) from None


def prepare(request: TrainRequest):
    """Everything checked before any training: (dataset, problem, test splits). Refuses with exit 2."""
    dataset = request.dataset or choose_dataset(request.cache_dir)
    table = clip_table(request, dataset)
    cached = cached_features(dataset, request.cache_dir)
    try:
        chosen = feature_specs.resolve(dataset, request.modalities, request.features, cached,
                                        inputs=getattr(MODELS[request.model], "inputs", None))
        problem = load_problem(dataset, chosen, root=request.cache_dir, clips=table,
                               max_items=getattr(MODELS[request.model], "max_items", None))
        if not getattr(MODELS[request.model], "estimator", False):  # features the network cannot take
            for config in request.configs:
                build(request.model, config, problem.shapes, problem.modalities, len(problem.classes),
                      problem.multi_label)
    except (feature_specs.SpecError, FileNotFoundError, LayerSelectionError, KeyError, ValueError) as err:
        raise Refused(str(err).strip('"')) from None
    n_train = len(problem.index("train", labelled_only=True))
    if n_train < request.train.folds:
        raise Refused(f"dataset {dataset!r} has {n_train} labelled training clips usable with "
                      f"{', '.join(problem.specs)}: {request.train.folds} folds need at least {request.train.folds}")
    splits = request.test_splits or [s for s in problem.splits if s != "train"]
    unknown = [s for s in splits if s not in table.splits]
    if unknown:
        raise Refused(f"--test-splits {','.join(unknown)}: dataset {dataset!r} has splits {', '.join(table.splits)}")
    return dataset, with_training_only(request, problem), splits


def with_training_only(request: TrainRequest, problem):
    """The problem with --augment copies and --pseudo clips appended as training-only rows."""
    if request.augment:
        problem, note = add_augmented(problem, request.augment, request.cache_dir)
        problem.notes.append(note)
    if request.pseudo:
        problem, note = add_pseudo(problem, request.pseudo, request.train)
        problem.notes.append(note)
    return problem


def feature_identity(provenance: dict, fingerprint: str | None) -> str:
    """What a run's result depends on in a cached feature: its config fingerprint and when its file
    was last merged (a re-extraction with the same config, e.g. more clips, is another feature)."""
    return f"{fingerprint}@{provenance.get('updated') or provenance.get('created') or ''}"


def runs_root(cache_dir=None) -> Path:
    """Where runs go by default: `runs/` beside the cache folder (data/cache -> data/runs)."""
    return cache_root(cache_dir).parent / "runs"


def inputs_identity(table, dataset: str, cache_dir, runs: Path) -> dict:
    """What a run id holds of its inputs besides the features: the clip table's content (labels,
    splits, valence) and where the cache lies seen from the runs folder, so a copy of a cache, or
    one with another clip table, never takes another's run folder (moving both together keeps ids)."""
    frame = table.to_frame().to_csv(index=False, float_format="%.17g")
    where = os.path.relpath(os.path.realpath(cache_root(cache_dir) / dataset), os.path.realpath(runs))
    return {"clips": hashlib.sha256(frame.encode()).hexdigest(), "cache": where}


def run_id(request: TrainRequest, problem, splits, inputs: dict) -> str:
    """Named from the resolved config, the identities of the features used and `inputs`
    (inputs_identity)."""
    identities = {spec: feature_identity(problem.provenance.get(spec, {}), problem.fingerprints.get(spec))
                  for spec in problem.specs}
    blob = {"dataset": problem.dataset, "specs": problem.specs, "modalities": problem.modalities,
            "features": identities, "model": request.model, "splits": splits, "corpus": request.corpus,
            "inputs": inputs,
            **_training_only_identity(request, problem),
            "configs": [dataclasses.asdict(c) for c in request.configs],
            "train": {k: v for k, v in dataclasses.asdict(request.train).items()
                      if k not in NOT_IN_RUN_ID and not (k == "patience" and not v)}}
    digest = hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:10]
    structure = "-all" if len(request.configs) > 1 else ""
    return f"{request.model}{structure}-{''.join(dict.fromkeys(problem.modalities))}-{digest}"


def _training_only_identity(request: TrainRequest, problem) -> dict:
    """What --augment / --pseudo add to a run id (nothing when unused, so old ids stay)."""
    out = {}
    if request.augment:
        out["augment"] = [request.augment, sorted(problem.ids[problem.split == TRAIN_ONLY].tolist())]
    if request.pseudo:
        out["pseudo"] = hashlib.sha256(Path(request.pseudo).read_bytes()).hexdigest()
        members = members_path(request.pseudo)
        if members.is_file():  # per-member pseudo-labels (fuse.inputs.pseudo)
            out["pseudo_members"] = hashlib.sha256(members.read_bytes()).hexdigest()
    return out


def default_folder(request: TrainRequest, dataset: str, problem, splits) -> Path:
    """runs_root/<dataset>/<run id>: the run folder when --out is not given."""
    runs = runs_root(request.cache_dir) / dataset
    inputs = inputs_identity(clip_table(request, dataset), dataset, request.cache_dir, runs)
    return runs / run_id(request, problem, splits, inputs)


def claim_out(request: TrainRequest):
    """Before any work: --out must be new, empty or a run folder of ours (fuse.folders), and not
    hold the --pseudo file this run reads (replacing the folder would delete it)."""
    if not request.out:
        return
    claim(request.out, "run")
    if request.pseudo and Path(request.out).resolve() in Path(request.pseudo).resolve().parents:
        raise Refused(f"--pseudo {request.pseudo} lies in --out {request.out}, which this run replaces: "
                      "copy it out first or give another --out")
