"""Extractors: a small class with a frozen Config, registered by name for the CLI.

A Config's numeric options are checked when `--set` builds it (`_config`): an int option is a
count or a size (>= 1), a float one a rate, a duration or a budget (> 0), unless its field says
otherwise with `option(default, at_least=...)` (a count that may be 0, a signed layer index)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from cache import config_fingerprint, library_versions, non_default_config

# name -> extractor class; kind prefix ("ssl", "text", "vision") -> factory(argument) -> extractor
REGISTRY: dict[str, type["Extractor"]] = {}
KINDS: dict[str, Callable[[str], "Extractor"]] = {}


# CLI runtime option -> the Config field it sets, for extractors that run a model on a device
MODEL_RUNTIME = {"device": "device", "dtype": "compute_dtype", "batch_seconds": "batch_seconds"}
ANY = float("-inf")  # option(..., at_least=ANY): any number (a layer index counted from the end)


def option(default, at_least):
    """A Config field whose value may go down to `at_least` (ANY: no bound), where the rule for
    numbers (ints >= 1, floats > 0) does not fit it."""
    return field(default=default, metadata={"at_least": at_least})


def check_ranges(config, spec: str):
    """ValueError naming the feature, option, value and allowed range of the first numeric
    option of `config` out of its range (see the module docstring)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        low = f.metadata.get("at_least")
        if low is None:
            low, allowed = (1, ">= 1") if isinstance(value, int) else (None, "> 0")
        else:
            allowed = f">= {low}"
        inside = value > 0 if low is None else value >= low  # NaN is never inside
        if not inside:
            raise ValueError(f"{spec}: option {f.name}={value} is out of range (allowed: {allowed})")


def register(cls):
    REGISTRY[cls.name] = cls
    return cls


class ClipError(ValueError):
    """The clip's content is at fault (too short, no face, no transcript), not the extractor: a
    failure of that clip, never taken for an extractor bug (see extract.core.recorder)."""


@dataclass
class Output:
    """What an extractor returns for one clip: fixed-shape arrays and frame-level sequences."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    ragged: dict[str, np.ndarray] = field(default_factory=dict)
    flag: str = ""  # why a processed clip is flagged (e.g. a truncated transcript); '' when not


@dataclass(frozen=True)
class NoConfig:
    pass


class Extractor:
    """Base class. Subclasses set `name`, `version`, `needs`, `dims`, `description`, `Config`
    and implement `extract(clip, media) -> Output`. Change `version` whenever the output changes."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    needs: ClassVar[frozenset] = frozenset({"audio"})  # subset of {"audio", "frames", "text"}
    dims: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig
    batched: ClassVar[bool] = False
    # the CLI's runtime options (--device, --dtype, --batch-seconds) this extractor uses -> the
    # Config field each sets; the others never reach it
    runtime_options: ClassVar[dict[str, str]] = {}

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    def setup(self):
        """Load heavy resources once per process (called lazily before the first clip)."""

    def extract(self, clip, media) -> Output:
        raise NotImplementedError

    def attach_cache(self, dataset: str, root):
        """Called once before a run with where its cache lives, for extractors that read another
        cached feature of the dataset (e.g. ASR transcripts). Raise ValueError to refuse the run."""

    def identity(self) -> dict:
        """What the output depends on: the non-default config (model extractors replace a local
        folder by its weights hash here, so moving a model folder keeps the cache valid)."""
        return non_default_config(self.config)

    @property
    def fingerprint(self) -> str:
        return config_fingerprint(self.name, self.version, self.identity())

    def provenance(self) -> dict:
        return {"extractor": self.name, "version": self.version,
                "config": dataclasses.asdict(self.config), "fingerprint": self.fingerprint,
                "libraries": library_versions()}


class BatchExtractor(Extractor):
    """A model run on batches of clips in the main process (where the GPU is).

    Workers decode each clip and call `prepare(clip, media) -> payload` (picklable; e.g. the audio,
    or aligned face crops); the main process groups payloads of similar `cost` (seconds of audio,
    number of crops) into batches of at most `batch_budget` and calls
    `extract_batch(clips, payloads) -> [Output]`. `setup()` runs in the main process only.
    """

    batched: ClassVar[bool] = True
    # loaded in the main process by setup(); never pickled to the workers
    MAIN_PROCESS_STATE: ClassVar[tuple] = ("_model", "_processor", "_tokenizer", "_loaded")

    def __getstate__(self):  # workers get the recipe, never the loaded model
        return {k: (None if k in self.MAIN_PROCESS_STATE else v) for k, v in self.__dict__.items()}

    def setup_worker(self):
        """Resources `prepare` needs, once per worker process."""

    def prepare(self, clip, media):
        return media.audio

    def cost(self, payload) -> float:
        return len(payload) / 16000

    @property
    def batch_budget(self) -> float:
        return float(getattr(self.config, "batch_seconds", 60.0))

    def extract_batch(self, clips: list, payloads: list) -> list[Output]:
        raise NotImplementedError


def register_presets(base_cls, presets: dict[str, dict], namespace: dict):
    """Register one subclass of `base_cls` per preset ({feature name: class attributes}).

    Each class also becomes an attribute of the module whose `namespace` (globals()) is given, so
    worker processes can unpickle it."""
    for name, attrs in presets.items():
        cls = type(f"{base_cls.__name__}_{name.replace('-', '_')}", (base_cls,),
                   {"name": name, "__module__": namespace["__name__"], **attrs})
        namespace[cls.__name__] = register(cls)


def known_names() -> list[str]:
    return sorted(REGISTRY) + [f"{kind}:<hub id or folder>" for kind in sorted(KINDS)]


def cache_name(spec: str) -> str:
    """The name a feature is cached under when the command gives no alias: `kind:<folder>` is
    named after the folder's last name (`vision:models/tiny-vit` -> `vision:tiny-vit`), so neither
    the file name nor the feature name holds a path; registry names and hub ids stay as given."""
    from .models import is_local

    kind, _, argument = spec.partition(":")
    if argument and kind in KINDS and is_local(argument):
        return f"{kind}:{Path(argument).resolve().name}"
    return spec


def build(spec: str, options: dict[str, str] | None = None) -> Extractor:
    """An extractor from a registry name or `kind:argument`, with `options` overriding its Config."""
    if spec in REGISTRY:
        cls = REGISTRY[spec]
        return cls(_config(cls.Config, options or {}, spec))
    kind, _, argument = spec.partition(":")
    if argument and kind in KINDS:
        return KINDS[kind](argument, options or {})
    raise UnknownFeature(f"unknown feature {spec!r}; valid names: {', '.join(known_names())} "
                         "(python -m extract --list describes them)")


class UnknownFeature(ValueError):
    pass


def _config(config_cls, options: dict[str, str], spec: str):
    """`config_cls` with `options` ({field: text from --set}) parsed and checked (check_ranges):
    ValueError naming the feature and option, before any work."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values = {}
    for key, raw in options.items():
        if key not in fields:
            raise UnknownFeature(f"{spec} has no option {key!r}; options: {', '.join(fields) or 'none'}")
        values[key] = _coerce(raw, config_cls, key, spec)
    config = config_cls(**values)
    check_ranges(config, spec)
    return config


def _coerce(raw: str, config_cls, key: str, spec: str):
    default = getattr(config_cls(), key)
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, (int, float)):
        try:
            return type(default)(raw)
        except ValueError:
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ValueError(f"{spec}: option {key}={raw!r} is not {kind}") from None
    if isinstance(default, tuple):
        return tuple(type(default[0])(x) if default else x for x in raw.split("+"))
    return raw
