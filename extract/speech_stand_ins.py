"""Tiny random-initialised speech encoders (`python -m extract.stand_ins`): stand-ins for tests and
the demo, loaded through the same path as hub models. Not pretrained: their features mean nothing."""
from __future__ import annotations

from . import models
from .media import SAMPLE_RATE

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _save_stand_in(folder, model_cls, config, description, return_attention_mask):
    import torch
    from transformers import Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    model_cls(config).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True,
                             return_attention_mask=return_attention_mask).save_pretrained(folder)
    models.mark_stand_in(folder, description)


@models.stand_in("tiny-hubert")
def tiny_hubert(folder):
    """Layer-norm front end, like hubert-large: exact when padded."""
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(**TINY, feat_extract_norm="layer", do_stable_layer_norm=True)
    _save_stand_in(folder, HubertModel, config, "tiny HuBERT (layer-norm front end, 32 x 2 layers)", True)


@models.stand_in("tiny-wav2vec2")
def tiny_wav2vec2(folder):
    """Group-norm front end, like hubert-base and wav2vec2-base: not exact when padded."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(**TINY, feat_extract_norm="group", do_stable_layer_norm=False)
    _save_stand_in(folder, Wav2Vec2Model, config, "tiny wav2vec 2.0 (group-norm front end, 32 x 2 layers)", False)


@models.stand_in("tiny-wavlm")
def tiny_wavlm(folder):
    """Layer-norm WavLM (gated relative position bias), like wavlm-large."""
    from transformers import WavLMConfig, WavLMModel

    config = WavLMConfig(**TINY, feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=32,
                         max_bucket_distance=100)
    _save_stand_in(folder, WavLMModel, config, "tiny WavLM (layer-norm front end, 32 x 2 layers)", True)


@models.stand_in("tiny-data2vec-audio")
def tiny_data2vec_audio(folder):
    """data2vec-audio: layer-norm CNN, but stacked positional convolutions that read the padding."""
    from transformers import Data2VecAudioConfig, Data2VecAudioModel

    config = Data2VecAudioConfig(**TINY | {"num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 5})
    _save_stand_in(folder, Data2VecAudioModel, config, "tiny data2vec-audio (32 x 2 layers)", True)
