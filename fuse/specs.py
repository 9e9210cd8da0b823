"""Which cached features a run uses: modalities, `--features` specs and per-dataset defaults.

    --modalities A,V                      each modality resolves to its default feature
    --features "A=hubert-large@18,19,20+is10;L=text-minilm@-4:;V=face-fer2013"

`;` separates modalities, `+` joins several features of one modality (AFG treats each as a unit),
and the layer selector after `@` keeps its commas. L and T both mean the lexical modality.
"""
from __future__ import annotations

from cache import parse_spec

MODALITIES = {"A": "acoustic", "L": "lexical", "V": "visual"}
ALIASES = {"T": "L"}

# documented defaults (docs/fusion.md, "Choosing features"): the layers the official extractors
# keep (MER 2023: HuBERT's last layer, the text encoder's last four; MER 2024's MERTools: the last
# four of both), FER2013 standing in for their faces; for the demo the stand-in-free features it caches
DEFAULTS = {
    "mer2023": {"A": "hubert-large@-1", "L": "chinese-macbert-large@-4:", "V": "face-fer2013"},
    "mer2024": {"A": "hubert-large@-4:", "L": "chinese-macbert-large@-4:", "V": "face-fer2013"},
    "demo": {"A": "egemaps", "L": "text-minilm@-1", "V": "face-fer2013"},
    # SAMSEMO's E2E-L (prep_text.py): the CLS vector of multilingual BERT's last layer (the uncased
    # model; its code pairs it with the bert-base-uncased tokenizer, stage 1 with the model's own)
    "samsemo": {"L": "bert-base-multilingual-uncased#first@-1"},
}
# any other dataset: the first of these that is cached
PREFERENCE = {
    "A": ["hubert-large@-4:", "wavlm-large@-4:", "wav2vec2-large@-4:", "hubert-base@-4:", "wavlm-base-plus@-4:",
          "wav2vec2-base@-4:", "is10", "egemaps", "is09", "compare2016", "mfcc"],
    "L": ["chinese-macbert-large@-4:", "chinese-roberta-wwm-ext-large@-4:", "chinese-macbert-base@-4:",
          "bert-base-chinese@-4:", "bert-base-multilingual-uncased@-4:", "text-minilm@-1"],
    "V": ["face-fer2013", "face-dlib"],
}


class SpecError(ValueError):
    """A modality or feature spec that cannot be used (the message names it and the choices)."""


def parse_modalities(text: str) -> list[str]:
    """'A,V' -> ['A', 'V'] (T -> L), refusing unknown letters and repeats."""
    out = []
    for item in filter(None, (s.strip().upper() for s in text.split(","))):
        key = ALIASES.get(item, item)
        if key not in MODALITIES:
            raise SpecError(f"unknown modality {item!r}: choose from A (acoustic), L or T (lexical), V (visual)")
        if key in out:
            raise SpecError(f"modality {item!r} given twice in --modalities {text!r}")
        out.append(key)
    if not out:
        raise SpecError("--modalities names no modality: give e.g. A,V")
    return out


def parse_features(text: str) -> dict[str, list[str]]:
    """'A=x@18,19+y;V=z' -> {'A': ['x@18,19', 'y'], 'V': ['z']}."""
    out: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        modality, eq, specs = part.partition("=")
        key = ALIASES.get(modality.strip().upper(), modality.strip().upper())
        if not eq or key not in MODALITIES:
            raise SpecError(f"--features {part!r}: expected MODALITY=feature[+feature], MODALITY one of A, L (T), V")
        features = [s.strip() for s in specs.split("+") if s.strip()]
        if not features:
            raise SpecError(f"--features {part!r}: no feature named after '='")
        if key in out:
            raise SpecError(f"--features names modality {key} twice")
        out[key] = features
    return out


TEXT = "{text}"  # in a model's `inputs`: the dataset's default lexical feature (e.g. text-minilm)


def resolve(dataset: str, modalities: list[str] | None, features: dict[str, list[str]],
            cached: list[str], inputs: dict[str, list[str]] | None = None) -> list[tuple[str, str]]:
    """[(modality, feature spec), ...] in modality order A, L, V: `features` where given, else the
    model's `inputs` (sequence models: {modality: [spec, ...]}, `{text}` standing for the
    dataset's lexical default feature), else the dataset's default, else the first cached of
    PREFERENCE. `cached` names the cached features."""
    chosen = modalities or [m for m in MODALITIES if m in features]
    extra = sorted(set(features) - set(chosen))
    if extra:
        raise SpecError(f"--features gives {', '.join(extra)} but --modalities {','.join(chosen)} does not use it")
    out = []
    for modality in (m for m in MODALITIES if m in chosen):
        specs = features.get(modality) or default_specs(dataset, modality, cached, inputs)
        out += [(modality, spec) for spec in specs]
    return out


def default_specs(dataset: str, modality: str, cached: list[str],
                  inputs: dict[str, list[str]] | None = None) -> list[str]:
    """The feature specs a modality reads when none is named: the model's `inputs` (sequence
    models), else the dataset's default feature."""
    return _model_default(dataset, modality, cached, inputs) if inputs else [_default(dataset, modality, cached)]


def _default(dataset: str, modality: str, cached: list[str]) -> str:
    given = DEFAULTS.get(dataset, {}).get(modality)
    if given:
        return given
    for spec in PREFERENCE[modality]:
        if spec.partition("@")[0] in cached:
            return spec
    raise SpecError(f"no default {MODALITIES[modality]} feature cached for dataset {dataset!r} "
                    f"(looked for {', '.join(s.partition('@')[0] for s in PREFERENCE[modality])}); "
                    f"name one with --features \"{modality}=FEATURE\" (cached: {', '.join(cached) or 'none'})")


def _model_default(dataset: str, modality: str, cached: list[str], inputs: dict[str, list[str]]) -> list[str]:
    if modality not in inputs:
        raise SpecError(f"this model has no default {MODALITIES[modality]} input; name one with "
                        f"--features \"{modality}=FEATURE\"")
    specs = inputs[modality]
    if any(TEXT in spec for spec in specs):
        text = parse_spec(_default(dataset, "L", cached)).feature
        specs = [spec.replace(TEXT, text) for spec in specs]
    return specs
