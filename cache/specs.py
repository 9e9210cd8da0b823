"""The feature-spec grammar: `FEATURE[#KEY][@LAYERS]` names a cached array and the layers to read.

FEATURE is the cached feature's name (as given to extract: `mfcc`, `ssl:models/tiny-hubert`), `#KEY`
one of its stored arrays or sequences (default: the primary array; `#KEY.length` a sequence's frame
counts), `@LAYERS` a layer selector for a per-layer [N, L, D] array (every hidden state of a model,
pooled per clip). '#' and '@' cannot occur in a hub id, so they never clash with a name.
Extraction stores every layer; a spec chooses late:

    hubert-large              every layer (same as hubert-large@all)
    hubert-large@18,19,20     layers 18, 19 and 20 (0 is the CNN output projection, L-1 the last layer)
    hubert-large@-1           the last layer
    hubert-large@-4:          the last four (Python slice: start:stop:step, stop excluded)
    hubert-large@12:          layer 12 to the end
    hubert-large@0:25:4,-1    items combine, in the order given

    spec = parse_spec("hubert-large#mean@18,19,20")   # FeatureSpec: feature, key, selector
    x = select_layers(array, spec.selector)            # [N, L, D] -> [N, 3, D]
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_INDEX = re.compile(r"^-?\d+$")
_SLICE = re.compile(r"^(-?\d+)?:(-?\d+)?(?::(-?\d+))?$")


class LayerSelectionError(ValueError):
    """A selector that cannot be parsed, or that names layers the feature does not have."""


@dataclass(frozen=True)
class LayerSelector:
    """Parsed `@...` selector: items are layer indices (int) or slices, in the order given."""

    text: str = "all"
    items: tuple = (slice(None),)

    def indices(self, n_layers: int) -> list[int]:
        """The selected layer indices in [0, n_layers), in order; refuses out-of-range and repeated layers."""
        chosen = []
        for item in self.items:
            if isinstance(item, slice):
                picked = list(range(n_layers))[item]
                if not picked:
                    raise LayerSelectionError(f"layer selector @{self.text}: {_show(item)} selects no layer "
                                              f"of {n_layers}")
                chosen += picked
            elif -n_layers <= item < n_layers:
                chosen.append(item % n_layers)
            else:
                raise LayerSelectionError(f"layer selector @{self.text}: layer {item} out of range for "
                                          f"{n_layers} layers (0..{n_layers - 1}, or -{n_layers}..-1)")
        repeated = sorted({i for i in chosen if chosen.count(i) > 1})
        if repeated:
            raise LayerSelectionError(f"layer selector @{self.text}: layers {repeated} selected more than once")
        return chosen


ALL = LayerSelector()


def parse_selector(text: str) -> LayerSelector:
    """'18,19,20' | '-4:' | 'all' -> LayerSelector."""
    text = text.strip()
    if text in ("", "all"):
        return ALL
    items = []
    for part in (p.strip() for p in text.split(",")):
        if _INDEX.match(part):
            items.append(int(part))
        elif match := _SLICE.match(part):
            start, stop, step = (int(g) if g is not None else None for g in match.groups())
            if step == 0:
                raise LayerSelectionError(f"layer selector @{text}: slice step cannot be 0")
            items.append(slice(start, stop, step))
        else:
            raise LayerSelectionError(f"layer selector @{text}: cannot read {part!r}; expected layer numbers "
                                      "(18,19,20), a slice (-4: for the last four) or 'all'")
    return LayerSelector(text, tuple(items))


def parse_feature_spec(spec: str) -> tuple[str, LayerSelector]:
    """'hubert-large@18,19,20' -> ('hubert-large', LayerSelector); no '@' selects every layer."""
    feature, at, selector = spec.partition("@")
    if not feature:
        raise LayerSelectionError(f"{spec!r}: a feature name is needed before '@'")
    return feature.strip(), parse_selector(selector) if at else ALL


KEY_SEP = "#"


@dataclass(frozen=True)
class FeatureSpec:
    """A parsed spec: `text` as given, the cached `feature`, the stored `key` (None: primary) and
    the layer `selector`."""

    text: str
    feature: str
    key: str | None
    selector: LayerSelector


def parse_spec(text: str) -> FeatureSpec:
    """'hubert-large#mean@18,19,20' -> FeatureSpec('...', 'hubert-large', 'mean', LayerSelector)."""
    name, selector = parse_feature_spec(text)
    feature, sep, key = name.rpartition(KEY_SEP)
    if not sep:
        return FeatureSpec(text, name, None, selector)
    if not feature.strip() or not key.strip():
        raise ValueError(f"feature spec {text!r}: expected FEATURE#KEY (e.g. mfcc#stats), optionally @LAYERS")
    return FeatureSpec(text, feature.strip(), key.strip(), selector)


def select_layers(array: np.ndarray, selector: LayerSelector | str) -> np.ndarray:
    """[N, L, D] -> [N, k, D]: the selected layers, in the selector's order (same dtype)."""
    if isinstance(selector, str):
        selector = parse_selector(selector)
    if array.ndim != 3:
        raise LayerSelectionError(f"layer selector @{selector.text} needs a per-layer feature [N, L, D]; "
                                  f"this one has shape {tuple(array.shape)}")
    return array[:, selector.indices(array.shape[1])]


def _show(item: slice) -> str:
    parts = ["" if v is None else str(v) for v in (item.start, item.stop)]
    return ":".join(parts) + (f":{item.step}" if item.step is not None else "")
