"""Every hidden layer of a self-supervised speech encoder (HuBERT, wav2vec 2.0, WavLM, data2vec-audio).

    python -m extract --dataset mer2023 --features hubert-large
    python -m extract --dataset demo --features ssl:data/models/tiny-hubert --set ssl:data/models/tiny-hubert.std=true

Stores, per clip, the mean (and optionally std) over valid frames of every hidden state (CNN output
projection + each transformer layer): "mean" float16 [L, D], L = num_hidden_layers + 1. Layers are
chosen at fusion time (cache/specs.py: `hubert-large@18,19,20`). Batches are exact: a clip's features
do not depend on its batch mates (see `SpeechModelFeatures.extract_batch`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..core import models
from ..core.base import KINDS, MODEL_RUNTIME, BatchExtractor, ClipError, Output, register_presets
from ..core.media import SAMPLE_RATE
from .pooling import Moments, average_pool_time, combine, masked_moments, window_bounds

PADDING_LEAKS = {"data2vec-audio"}  # model types whose encoder mixes padded frames into valid ones


@dataclass(frozen=True)
class SpeechModelConfig:
    std: bool = False                  # also store the std over frames ("std" [L, D])
    store_dtype: str = "float16"       # float16 or float32 in the cache
    frame_layers: tuple = ()           # layers also stored frame by frame (ragged "layer<i>" [T, D]), e.g. 18+19
    frame_pool: int = 1                # average-pool the stored frames by this factor in time
    window_seconds: float = 30.0       # longer clips run as near-equal windows, pooled back frame-weighted
    device: str = "auto"
    compute_dtype: str = "float32"     # --dtype: float32, float16 (GPU) or bfloat16 (autocast)
    batch_seconds: float = 60.0        # audio per forward pass, summed over the batch

    def __post_init__(self):
        object.__setattr__(self, "frame_layers", tuple(int(i) for i in self.frame_layers))
        models.check_dtypes(self.store_dtype, self.compute_dtype)


class SpeechModelFeatures(BatchExtractor):
    """Hidden states of a HuggingFace speech encoder (`AutoModel` + `AutoFeatureExtractor`), pooled per clip."""

    name, version, dims = "ssl", "1", "[L, D] per clip (L = layers + 1)"
    description = "every hidden layer of a HF speech encoder (hub id or folder), mean over frames"
    Config = SpeechModelConfig
    runtime_options = MODEL_RUNTIME
    primary = "mean"
    source = ""  # hub id or local folder; presets set it, `ssl:<source>` passes it

    def __init__(self, config=None, source: str | None = None):
        super().__init__(config)
        self.source = source or self.source
        self._model = self._processor = self._model_config = self._model_identity = None

    # -- what the output depends on -------------------------------------------------------------
    @property
    def model_config(self):
        if self._model_config is None:
            from transformers import AutoConfig

            self._model_config = models.from_source(AutoConfig, self.source, "the config of model")
        return self._model_config

    @property
    def model_identity(self) -> dict:
        """Hub id and revision, or folder name and weights hash (hashed once: large files)."""
        if self._model_identity is None:
            self._model_identity = models.model_identity(self.source)
        return self._model_identity

    def identity(self) -> dict:
        return super().identity() | {"model": self.model_identity}

    def provenance(self) -> dict:
        config = self.model_config
        return super().provenance() | {
            "model": self.model_identity,
            "model_config": config.to_diff_dict(), "layers": self.n_layers, "hidden_size": config.hidden_size,
            "feat_extract_norm": self.feat_extract_norm, "compute_dtype": self.config.compute_dtype,
            "weights_dtype": models.WEIGHTS_DTYPE,
            "store_dtype": self.config.store_dtype,
            "pooling": "mean" + (" and std" if self.config.std else "") + " over valid frames",
            "config": dataclasses.asdict(self.config)}

    @property
    def n_layers(self) -> int:
        return self.model_config.num_hidden_layers + 1

    @property
    def feat_extract_norm(self) -> str:
        return getattr(self.model_config, "feat_extract_norm", "layer")  # data2vec-audio: layer norm

    @property
    def exact_when_padded(self) -> bool:
        """Layer-norm front ends with an attention mask give the same features padded or not;
        group-norm ones normalise over the padding too, and data2vec-audio's stacked positional
        convolutions read it, so those only batch equal lengths."""
        return self.feat_extract_norm == "layer" and self.model_config.model_type not in PADDING_LEAKS

    # -- per clip, in workers -------------------------------------------------------------------
    def setup_worker(self):
        self.min_samples  # loads the config once per worker

    @property
    def min_samples(self) -> int:
        """Shortest audio that gives one frame: the CNN front end's receptive field."""
        field, hop = 1, 1
        for kernel, stride in zip(self.model_config.conv_kernel, self.model_config.conv_stride):
            field += (kernel - 1) * hop
            hop *= stride
        return field

    def prepare(self, clip, media):
        audio = media.audio
        if len(audio) < self.min_samples:
            raise ClipError(f"clip too short for {self.source.rstrip('/').split('/')[-1]}: "
                             f"{len(audio) / SAMPLE_RATE:.3f} s gives no frame "
                             f"(needs at least {self.min_samples / SAMPLE_RATE:.3f} s)")
        return audio

    # -- batches, in the main process -----------------------------------------------------------
    def setup(self):
        from transformers import AutoFeatureExtractor, AutoModel

        self.check_model_type()
        self.device = models.resolve_device(self.config.device)
        models.autocast(self.device, self.config.compute_dtype)  # refuses float16 on CPU before any work
        model, self._processor = models.load_pretrained(self.source, AutoModel, AutoFeatureExtractor)
        self._model = self.encoder_of(model).to(self.device)
        self._model_config = model.config

    def check_model_type(self):
        """ValueError before loading when the model reads another input than raw audio."""
        if self.model_config.model_type == "whisper":
            raise ValueError(f"{self.source} is a Whisper model: it reads log-mel input_features, not "
                             f"raw audio; use whisper:{self.source}")

    def encoder_of(self, model):
        """The part of the loaded model whose hidden states are stored."""
        return model

    def extract_batch(self, clips, payloads) -> list[Output]:
        window = int(self.config.window_seconds * SAMPLE_RATE)
        segments = [(i, audio[a:b]) for i, audio in enumerate(payloads) for a, b in window_bounds(len(audio), window)]
        results = {}  # segment index -> (Moments, frames): forward passes take segments out of time order
        for group in self._forward_groups(list(enumerate(segments))):
            for k, m, f in zip(group, *self.forward([segments[k][1] for k in group])):
                results[k] = m, f
        per_clip = [[results[k] for k, (i, _) in enumerate(segments) if i == clip] for clip in range(len(payloads))]
        return [self._output(combine([m for m, _ in parts]), [f for _, f in parts]) for parts in per_clip]

    def _forward_groups(self, segments):
        """[(index, (clip, audio))] -> lists of indices, one per forward pass: at most `batch_seconds`
        of audio, similar lengths together, and equal lengths only for group-norm models."""
        budget = self.config.batch_seconds * SAMPLE_RATE
        group, total, size_of_group = [], 0, None
        for k, (_, audio) in sorted(segments, key=lambda s: len(s[1][1])):
            size = self.padded_length(len(audio))
            if group and not (total + size <= budget and (self.exact_when_padded or size == size_of_group)):
                yield group
                group, total = [], 0
            group.append(k)
            total, size_of_group = total + size, size
        if group:
            yield group

    def padded_length(self, n_samples: int) -> int:
        """Samples a forward pass computes for `n_samples` of audio (Whisper pads to 30 s)."""
        return n_samples

    def forward(self, audios: list[np.ndarray]) -> tuple[list[Moments], list[dict]]:
        """One forward pass over padded `audios` -> per row: Moments over its valid frames, and
        {layer: float32 [T, D]} of the layers in `frame_layers`."""
        hidden, lengths = self.hidden_states(audios)
        layers = [self._layer_index(i) for i in self.config.frame_layers]
        frames = [{i: hidden[i, b, :lengths[b]].float().cpu().numpy() for i in layers}
                  for b in range(len(audios))]
        return masked_moments(hidden, lengths.cpu()), frames

    def hidden_states(self, audios: list[np.ndarray]):
        """Padded `audios` -> (every hidden state, torch [L, B, T, D]; valid frames per row, torch int [B])."""
        import torch

        inputs = self._processor(audios, sampling_rate=SAMPLE_RATE, padding=True,
                                 return_attention_mask=True, return_tensors="pt")
        values, mask = inputs["input_values"].to(self.device), inputs["attention_mask"].to(self.device)
        with torch.inference_mode(), models.autocast(self.device, self.config.compute_dtype):
            out = self._model(values, attention_mask=mask, output_hidden_states=True)
        hidden = torch.stack(out.hidden_states)                                   # [L, B, T, D]
        return hidden, self._model._get_feat_extract_output_lengths(mask.sum(-1)).clamp(max=hidden.shape[2])

    def _layer_index(self, layer: int) -> int:
        if not -self.n_layers <= layer < self.n_layers:
            raise ValueError(f"frame_layers: layer {layer} out of range for {self.n_layers} hidden states")
        return layer % self.n_layers

    def _output(self, moments: Moments, frames: list[dict]) -> Output:
        dtype = np.dtype(self.config.store_dtype)
        arrays = {"mean": moments.mean.astype(dtype), "n_frames": np.int32(moments.n)}
        if self.config.std:
            arrays["std"] = moments.std.astype(dtype)
        ragged = {f"layer{i}": average_pool_time(np.concatenate([f[i] for f in frames]),
                                                 self.config.frame_pool).astype(dtype)
                  for i in (frames[0] if frames else {})}
        return Output(arrays=arrays, ragged=ragged)


def speech_model(argument: str, options: dict[str, str]) -> SpeechModelFeatures:
    """every hidden layer of a HF speech encoder (HuBERT, wav2vec 2.0, WavLM, data2vec-audio)"""
    from ..core.base import _config

    return SpeechModelFeatures(_config(SpeechModelConfig, options, f"ssl:{argument}"), source=argument)


KINDS["ssl"] = speech_model


# -- presets: the names users know ------------------------------------------------------------------
def _preset(source: str, dims: str, description: str) -> dict:
    return {"source": source, "dims": f"{dims} per clip", "description": description}


GROUP_NORM = "group norm: one length per batch"
PRESETS = {
    "hubert-base": _preset("TencentGameMate/chinese-hubert-base", "13 x 768",
                           f"Chinese HuBERT base (as the MER 2023 baseline), every layer; {GROUP_NORM}"),
    "hubert-large": _preset("TencentGameMate/chinese-hubert-large", "25 x 1024",
                            "Chinese HuBERT large (as the MER 2023 baseline), every layer"),
    "wav2vec2-base": _preset("facebook/wav2vec2-base", "13 x 768",
                             f"wav2vec 2.0 base (LibriSpeech), every layer; {GROUP_NORM}"),
    "wav2vec2-large": _preset("facebook/wav2vec2-large-lv60", "25 x 1024",
                              "wav2vec 2.0 large (LibriLight 60k h), every layer"),
    "wavlm-base-plus": _preset("microsoft/wavlm-base-plus", "13 x 768", f"WavLM base+, every layer; {GROUP_NORM}"),
    "wavlm-large": _preset("microsoft/wavlm-large", "25 x 1024", "WavLM large, every layer"),
}
register_presets(SpeechModelFeatures, PRESETS, globals())

