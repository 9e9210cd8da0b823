"""The one code path every model loads through: a hub id or a local folder, on a chosen device.

    model, processor = load_pretrained("TencentGameMate/chinese-hubert-large", AutoModel, AutoFeatureExtractor)
    model, processor = load_pretrained("data/models/tiny-hubert", AutoModel, AutoFeatureExtractor)

Tiny random-initialised stand-ins for tests and the demo are built by `python -m extract.stand_ins
--out data/models` (`make models`); their builders all live in extract.stand_ins.
"""
from __future__ import annotations

import functools
import hashlib
import os
from contextlib import nullcontext
from pathlib import Path

STAND_IN_NOTE = "random-initialised stand-in, NOT pretrained: its features carry no learned meaning"
DTYPES = ("float32", "float16", "bfloat16")  # compute precision (--dtype)
STORE_DTYPES = ("float16", "float32")         # precision of model features in the cache
WEIGHTS_DTYPE = "float32"                     # model weights as loaded (provenance: weights_dtype)


def is_local(source: str) -> bool:
    return Path(source).is_dir()


def from_source(cls, source: str, what: str = "model", **kwargs):
    """`cls.from_pretrained(source)` for a hub id or a local folder: one offline rule, one error.

    A local folder never touches the network; with HF_HUB_OFFLINE=1 a hub id is read from the
    local HF cache only. `what` names the part in the error ("model", "the tokenizer of model").
    """
    local = is_local(source)
    if not local and os.environ.get("HF_HUB_OFFLINE") == "1":
        kwargs.setdefault("local_files_only", True)
    try:
        return cls.from_pretrained(source, **kwargs)
    except OSError as err:
        where = "folder" if local else "hub id (and no local copy in the HF cache)"
        raise OSError(f"cannot load {what} {source!r} as a {where}: {err}") from None


def load_pretrained(source: str, model_cls, processor_cls=None, weights_dtype: str = WEIGHTS_DTYPE, **kwargs):
    """(model in eval mode, processor or None) from a hub id or a local folder, its weights in
    `weights_dtype` (WEIGHTS_DTYPE: float32, and autocast alone sets the compute precision), never
    in the dtype a checkpoint's config names: transformers' default `dtype="auto"` loads a float16
    checkpoint (openai/whisper-large-v3's) in float16, which float32 inputs cannot meet, and which
    a run at --dtype bfloat16 would compute in while recording bfloat16."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar is the one that matters
    model = from_source(model_cls, source, "model", dtype=resolve_dtype(weights_dtype), **kwargs).eval()
    processor = from_source(processor_cls, source, "the processor of model") if processor_cls else None
    return model, processor


def weights_sha256(source: str) -> str | None:
    """Hash of a local model folder's weight files (stands for the revision of a hub model).

    Computed once per process for unchanged files (hashing a large model takes a second)."""
    folder = Path(source)
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    return _hash_files(tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files))


@functools.lru_cache(maxsize=64)
def _hash_files(files: tuple) -> str:
    digest = hashlib.sha256()
    for path, _size, _mtime in files:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def model_identity(source: str) -> dict:
    """What identifies a model in a fingerprint and in provenance: never a path of this machine.

    Hub id and revision (the commit its files come from) for a hub model; folder name and weights
    hash for a folder, so a moved folder keeps its caches. A folder built by `make models` says it
    is a random stand-in.
    """
    if is_local(source):
        identity = {"model": Path(source).resolve().name, "weights_sha256": weights_sha256(source)}
        if (Path(source) / "STAND_IN").exists():
            identity["stand_in"] = STAND_IN_NOTE
        return identity
    return {"model": source, "revision": hub_revision(source)}


@functools.lru_cache(maxsize=64)
def hub_revision(source: str) -> str:
    """The commit of a hub model: the HF cache keeps each commit's files in `snapshots/<commit>/`,
    and its config is resolved there (downloaded if needed, offline from the cache)."""
    from transformers.utils import cached_file

    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        config = Path(cached_file(source, "config.json", local_files_only=offline))
    except OSError as err:
        where = "hub id (and no local copy in the HF cache)" if offline else "hub id"
        raise OSError(f"cannot load the config of model {source!r} as a {where}: {err}") from None
    if config.parent.parent.name != "snapshots":
        raise OSError(f"cannot tell the revision of model {source!r}: {config} is not in an HF cache snapshot")
    return config.parent.name


def check_dtypes(store_dtype: str, compute_dtype: str):
    """Refuse a storage or compute precision we do not support (config validation)."""
    if store_dtype not in STORE_DTYPES:
        raise ValueError(f"store_dtype {store_dtype!r}: choose one of {STORE_DTYPES}")
    if compute_dtype not in DTYPES:
        raise ValueError(f"compute_dtype {compute_dtype!r}: choose one of {DTYPES}")


def resolve_device(device: str = "auto"):
    import torch

    from cache.cli import check_device

    if check_device(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(compute_dtype: str):
    import torch

    if compute_dtype not in DTYPES:
        raise ValueError(f"compute_dtype {compute_dtype!r}: choose one of {DTYPES}")
    return getattr(torch, compute_dtype)


def autocast(device, compute_dtype: str):
    """Mixed precision on a GPU (or bfloat16 on CPU); float32 runs as is."""
    import torch

    if compute_dtype == "float32":
        return nullcontext()
    if device.type == "cpu" and compute_dtype == "float16":
        raise ValueError("float16 autocast is not supported on CPU: use bfloat16 or float32")
    return torch.autocast(device.type, dtype=resolve_dtype(compute_dtype))


def mark_stand_in(folder: Path, description: str):
    """Label a saved folder as a random stand-in, for people and for provenance."""
    (Path(folder) / "STAND_IN").write_text(f"{description}\n{STAND_IN_NOTE}\n")
