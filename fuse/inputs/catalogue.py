"""What is cached, by modality: the utterance-level features a sweep tries when `--features` is silent.

    entries = catalogue("demo", cache_dir)          # one CachedFeature per cached file
    auto_specs("demo", "A", entries)                 # ['egemaps', 'is09', ..., 'random-tiny-hubert@-1', ...]

A feature's modality comes from its provenance: the `modality` that `cache import-npy --modality`
records, else the extractor family (stage 1's registry names and `kind:` extractors, FAMILIES),
else the feature's own name when it is a family's (a MER 2023 folder imported as `hubert-large`).
Utterance-level means one float vector per clip, [N, D], or one per layer, [N, L, D]. Face crops,
spectrogram pieces, token and frame sequences (SEQUENCE_ONLY families, a frame-level import) are
the sequence models' inputs, left out of the pooled models' alternatives.

A per-layer feature enters with LAYER_CHOICES, the last layer and the mean of the last four (the
pooled models average the selected layers), plus the dataset baseline's selector for that feature
(specs.DEFAULTS, e.g. MER 2023's `hubert-large@-1`), never as one alternative per layer.
"""
from __future__ import annotations

from dataclasses import dataclass

from cache import LayerSelectionError, open_feature, parse_spec
from cache.specs import parse_selector
from .specs import DEFAULTS

_SPEECH = ["ssl", "hubert-base", "hubert-large", "wav2vec2-base", "wav2vec2-large", "wavlm-base-plus", "wavlm-large",
           "whisper", "whisper-base", "whisper-large-v2", "whisper-large-v3"]
_TEXT = ["text", "text-minilm", "bert-base-chinese", "bert-base-multilingual-uncased", "chinese-macbert-base",
         "chinese-macbert-large", "chinese-roberta-wwm-ext", "chinese-roberta-wwm-ext-large",
         "llm", "llama-2-13b", "qwen2.5-7b"]
# stage 1's extractor families (its registry names and `kind:` extractors) by the modality they describe
FAMILIES = {**{name: "A" for name in ["is09", "is10", "egemaps", "compare2016", "mfcc", "logmel",
                                      "e2el-spectrogram", *_SPEECH]},
            **{name: "L" for name in [*_TEXT, "asr"]},
            **{name: "V" for name in ["face-crops", "face-crops-crossbert", "face-dlib", "face-fer2013", "vision",
                                      "video", "videomae-base", "videomae-large"]}}
# families whose clip array is no utterance vector: crops, spectrogram pieces, transcripts
SEQUENCE_ONLY = {"e2el-spectrogram", "face-crops", "face-crops-crossbert", "asr"}
LAYER_CHOICES = ("-1", "-4:")   # the last layer; the mean of the last four


@dataclass(frozen=True)
class CachedFeature:
    """A cached feature as a sweep sees it: its modality (None: unknown), its layer count (None: not
    per-layer), and why it is not an utterance-level alternative (None: it is one)."""

    name: str
    modality: str | None
    layers: int | None = None
    left_out: str | None = None


def modality_of(name: str, provenance: dict) -> str | None:
    """A, L or V from the provenance's `modality`, its extractor family or the feature's name."""
    recorded = provenance.get("modality")
    if recorded in ("A", "L", "V"):
        return recorded
    return FAMILIES.get(provenance.get("extractor")) or FAMILIES.get(name)


def describe(dataset: str, name: str, cache_dir=None) -> CachedFeature:
    """The catalogue entry of one cached feature (reads its attributes and array shape only)."""
    with open_feature(dataset, name, root=cache_dir) as feature:
        provenance = feature.provenance
        modality = modality_of(name, provenance)
        family = provenance.get("extractor")
        if family in SEQUENCE_ONLY or (family == "import-npy" and provenance.get("config", {}).get("frame_level")):
            return CachedFeature(name, modality, left_out="sequence input")
        if modality is None:
            return CachedFeature(name, None, left_out="modality unknown (cache import-npy --modality A|L|V)")
        try:
            stored = feature.dataset()
        except (KeyError, ValueError):  # a sequence as its primary, or every clip failed
            stored = None
        if stored is None or stored.dtype.kind != "f" or stored.ndim not in (2, 3):
            return CachedFeature(name, modality, left_out="not one vector per clip")
        return CachedFeature(name, modality, stored.shape[1] if stored.ndim == 3 else None)


def catalogue(dataset: str, cache_dir, names: list[str]) -> list[CachedFeature]:
    """Entries for the cached features `names` (fuse.training.request.cached_features), in name order."""
    return [describe(dataset, name, cache_dir) for name in sorted(names)]


def layer_specs(dataset: str, modality: str, feature: CachedFeature) -> list[str]:
    """A per-layer feature's alternatives: LAYER_CHOICES and the baseline's selector, each set of
    layers once (on a 3-layer model `@-4:` is every layer; on a 1-layer one it is `@-1`)."""
    baseline = parse_spec(DEFAULTS.get(dataset, {}).get(modality, "-"))
    choices = list(LAYER_CHOICES)
    if baseline.feature == feature.name and baseline.key is None and baseline.selector.text != "all":
        choices.append(baseline.selector.text)
    out, seen = [], set()
    for text in choices:
        try:
            layers = tuple(parse_selector(text).indices(feature.layers))
        except LayerSelectionError:  # a baseline's layers this model does not have
            continue
        if layers not in seen:
            seen.add(layers)
            out.append(f"{feature.name}@{text}")
    return out


def auto_specs(dataset: str, modality: str, entries: list[CachedFeature]) -> list[str]:
    """Every utterance-level cached feature of `modality`, per-layer ones with their layer choices."""
    out = []
    for feature in entries:
        if feature.modality == modality and feature.left_out is None:
            out += layer_specs(dataset, modality, feature) if feature.layers else [feature.name]
    return out
