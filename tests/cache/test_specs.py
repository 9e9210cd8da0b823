"""Layer selectors: 'feature@selector' specs choose layers of [N, L, D] per-layer features."""
import re

import numpy as np
import pytest

from cache.specs import ALL, LayerSelectionError, parse_feature_spec, parse_selector, select_layers

L = 25  # hubert-large: CNN projection + 24 transformer layers


@pytest.fixture
def hubert_large():
    # value = layer index, so a selection shows which layers it took
    return np.broadcast_to(np.arange(L, dtype=np.float16)[None, :, None], (4, L, 8)).copy()


@pytest.mark.parametrize("selector, layers", [
    ("18,19,20", [18, 19, 20]),
    ("-1", [24]),
    ("-4:", [21, 22, 23, 24]),
    ("12:", list(range(12, 25))),
    ("0:25:8", [0, 8, 16, 24]),
    ("::-12", [24, 12, 0]),
    ("20, 18 ,0", [20, 18, 0]),
    ("0:2,-1", [0, 1, 24]),
    ("all", list(range(L))),
])
def test_selectors_pick_the_documented_layers_in_order(hubert_large, selector, layers):
    picked = select_layers(hubert_large, selector)
    assert picked.shape == (4, len(layers), 8) and picked.dtype == np.float16
    assert picked[0, :, 0].tolist() == layers


def test_feature_spec_splits_name_and_selector():
    feature, selector = parse_feature_spec("hubert-large@18,19,20")
    assert feature == "hubert-large" and selector.indices(L) == [18, 19, 20]
    assert parse_feature_spec("hubert-large") == ("hubert-large", ALL)
    assert parse_feature_spec("ssl:data/models/tiny-hubert@-1")[0] == "ssl:data/models/tiny-hubert"


@pytest.mark.parametrize("selector, message", [
    ("25", "layer 25 out of range for 25 layers (0..24, or -25..-1)"),
    ("-26", "layer -26 out of range"),
    ("30:", "30: selects no layer of 25"),
    ("18,-7", "layers [18] selected more than once"),
])
def test_out_of_range_or_repeated_layers_are_clear_errors(hubert_large, selector, message):
    with pytest.raises(LayerSelectionError, match=re.escape(message)):
        select_layers(hubert_large, selector)


@pytest.mark.parametrize("text", ["18-20", "last", "1:2:0", "1,,2"])
def test_unreadable_selectors_say_what_is_expected(text):
    with pytest.raises(LayerSelectionError, match="expected layer numbers|step cannot be 0"):
        parse_selector(text)


def test_a_feature_without_layers_is_refused():
    with pytest.raises(LayerSelectionError, match=r"needs a per-layer feature \[N, L, D\].*\(4, 384\)"):
        select_layers(np.zeros((4, 384)), "-1")
    with pytest.raises(LayerSelectionError, match="feature name is needed"):
        parse_feature_spec("@-1")
