"""Speech encoders (HuBERT, wav2vec 2.0, WavLM, data2vec-audio, Whisper): every hidden layer,
pooled exactly over valid frames (importing this registers the `ssl:` kind and its presets).

    encoders  the `ssl:` extractor and the hubert-* / wav2vec2-* / wavlm-* presets
    whisper   the `whisper:` extractor (log-mel input, real frames only) and the whisper-* presets
    pooling   per-layer moments merged across padding and across windows of a long clip
"""
from . import encoders, whisper  # noqa: F401
