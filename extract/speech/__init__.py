"""Self-supervised speech encoders (HuBERT, wav2vec 2.0, WavLM, data2vec-audio): every hidden layer,
pooled exactly over valid frames (importing this registers the `ssl:` kind and its presets).

    encoders  the `ssl:` extractor and the hubert-* / wav2vec2-* / wavlm-* presets
    pooling   per-layer moments merged across padding and across windows of a long clip
"""
from . import encoders  # noqa: F401
