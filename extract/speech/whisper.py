"""Every hidden layer of Whisper's encoder (`whisper:<hub id or folder>`, whisper-* presets).

    python -m extract --dataset mer2023 --features whisper-large-v3 --device cuda --dtype bfloat16
    python -m extract --dataset demo --features whisper:data/models/tiny-whisper

Whisper reads log-mel `input_features` (hop 160 samples: 100 frames per second) padded to 30 s,
and its encoder halves them (a stride-2 convolution): 1500 frames, one per 20 ms. Only the frames
of the clip's real audio, ceil(ceil(n / 160) / 2) of them, are pooled; the padding's are not.
Stores what `ssl:` stores: "mean" float16 [L, D] (L = encoder_layers + 1), "n_frames", "std" and
frame-level layers as options. Clips longer than 30 s run as near-equal windows pooled back
frame-weighted. Every clip is padded on its own to 30 s, so batches are exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import models
from ..core.base import KINDS, _config, register_presets
from ..core.media import SAMPLE_RATE
from .encoders import SpeechModelConfig, SpeechModelFeatures
from .pooling import window_bounds


@dataclass(frozen=True)
class WhisperEncoderConfig(SpeechModelConfig):
    window_seconds: float = 30.0   # at most Whisper's 30 s input; longer clips run in windows
    batch_seconds: float = 480.0   # padded audio per forward pass: every window counts 30 s


class WhisperEncoderFeatures(SpeechModelFeatures):
    """Hidden states of a HuggingFace Whisper encoder, pooled over the clip's real frames."""

    name, version, dims = "whisper", "1", "[L, D] per clip (L = encoder layers + 1)"
    description = "every hidden layer of a Whisper encoder (hub id or folder), mean over real frames"
    Config = WhisperEncoderConfig

    @property
    def min_samples(self) -> int:
        return 1  # one log-mel frame gives one encoder frame

    @property
    def exact_when_padded(self) -> bool:
        return True  # each clip is padded to 30 s on its own, whatever its batch mates

    def check_model_type(self):
        if self.model_config.model_type != "whisper":
            raise ValueError(f"{self.source} is a {self.model_config.model_type} model, not Whisper; "
                             f"use ssl:{self.source}")

    def encoder_of(self, model):
        return model.get_encoder()  # the decoder is never run

    def setup(self):
        super().setup()
        limit = self._processor.n_samples / SAMPLE_RATE
        if self.config.window_seconds > limit:
            raise ValueError(f"window_seconds={self.config.window_seconds}: Whisper reads at most {limit:g} s")

    def provenance(self) -> dict:
        return super().provenance() | {
            "feat_extract_norm": None,
            "input": "log-mel input_features padded to 30 s; pooled over the clip's real frames only"}

    def cost(self, payload) -> float:
        return self.padded_length(len(payload)) / SAMPLE_RATE

    def padded_length(self, n_samples: int) -> int:
        """Samples a forward pass computes for a clip of `n_samples`: 30 s per window."""
        window = int(self.config.window_seconds * SAMPLE_RATE)
        return len(window_bounds(n_samples, window)) * 30 * SAMPLE_RATE

    def hidden_states(self, audios: list[np.ndarray]):
        """Audios (each <= 30 s) -> (every encoder hidden state, torch [L, B, 1500, D];
        encoder frames of each row's real audio, torch int [B])."""
        import torch

        inputs = self._processor(audios, sampling_rate=SAMPLE_RATE, return_attention_mask=True,
                                 return_tensors="pt")
        mel_frames = inputs["attention_mask"].sum(-1)  # log-mel frames over real samples
        with torch.inference_mode(), models.autocast(self.device, self.config.compute_dtype):
            out = self._model(inputs["input_features"].to(self.device), output_hidden_states=True)
        hidden = torch.stack(out.hidden_states)                                   # [L, B, 1500, D]
        lengths = self._model._get_feat_extract_output_lengths(mel_frames)
        return hidden, lengths.clamp(max=hidden.shape[2])


def whisper_encoder(argument: str, options: dict[str, str]) -> WhisperEncoderFeatures:
    """every hidden layer of a Whisper encoder, over the clip's real frames (not the 30 s padding)"""
    return WhisperEncoderFeatures(_config(WhisperEncoderConfig, options, f"whisper:{argument}"), source=argument)


KINDS["whisper"] = whisper_encoder

PRESETS = {
    "whisper-base": {"source": "openai/whisper-base", "dims": "7 x 512 per clip",
                     "description": "Whisper base encoder (as MERBench), every layer over the real frames"},
    "whisper-large-v2": {"source": "openai/whisper-large-v2", "dims": "33 x 1280 per clip",
                         "description": "Whisper large-v2 encoder (as MERBench), every layer over the real frames"},
    "whisper-large-v3": {"source": "openai/whisper-large-v3", "dims": "33 x 1280 per clip",
                         "description": "Whisper large-v3 encoder (128 mel bins), every layer over the real frames"},
}
register_presets(WhisperEncoderFeatures, PRESETS, globals())
