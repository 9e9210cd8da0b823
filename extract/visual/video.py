"""`video:<hub id or folder>`: a clip-level video encoder (VideoMAE and its kind) on the clip's frames.

    python -m extract --dataset mer2023 --features videomae-base --device cuda
    python -m extract --dataset demo --features video:data/models/tiny-videomae

The clip's frames, decoded at `fps`, are sampled to the model's clip length (`num_frames`, 16 for
VideoMAE) evenly over the clip as MERBench samples them (frame floor(i * T / N) of T, i < N; a clip
of fewer than N frames repeats its last one); the image processor resizes and crops them; one
forward pass per clip. Every hidden state (embeddings output first) is mean-pooled over its
tokens (space-time patches): "mean" [L, D] per clip, float16 by default, L = layers + 1; the last
row is MERBench's utterance-level VideoMAE feature (its mean over patches, then over tubelets), but
on the whole frame rather than on face crops. "n_frames": distinct frames sampled. Every clip has
the same input shape, so batches are exact.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..core import models
from ..core.base import KINDS, MODEL_RUNTIME, BatchExtractor, ClipError, Output, _config, option, register_presets
from .face_track import sample_indices


@dataclass(frozen=True)
class VideoConfig:
    fps: float = 25.0             # decoding grid the clip's frames are sampled from
    n_frames: int = option(0, at_least=0)  # frames per clip (0: the model's num_frames, 16 for VideoMAE)
    store_dtype: str = "float16"  # float16 or float32 in the cache
    device: str = "auto"
    compute_dtype: str = "float32"  # --dtype: float32, float16 (GPU) or bfloat16 (autocast)
    batch_seconds: float = 8.0    # clips per forward pass (the CLI's --batch-seconds)

    def __post_init__(self):
        models.check_dtypes(self.store_dtype, self.compute_dtype)


def uniform_frames(n_decoded: int, n_frames: int) -> np.ndarray:
    """Indices of `n_frames` of `n_decoded` frames evenly over the clip, floor(i * n_decoded / n_frames),
    or every frame then the last one repeated when there are fewer (MERBench's sampling)."""
    if n_decoded >= n_frames:
        return np.arange(n_frames) * n_decoded // n_frames
    return np.minimum(np.arange(n_frames), n_decoded - 1)


class VideoLayers(BatchExtractor):
    """Every hidden state of an HF video encoder (`AutoModel` + `AutoImageProcessor`), pooled per clip."""

    name, version, dims = "video", "1", "[L, D] per clip (L = layers + 1)"
    description = "every hidden layer of a HF clip-level video encoder (VideoMAE, ...), mean over tokens"
    needs = frozenset({"frames"})
    Config = VideoConfig
    runtime_options = MODEL_RUNTIME
    primary = "mean"
    source = ""  # hub id or local folder; presets set it, `video:<source>` passes it

    def __init__(self, config=None, source: str | None = None):
        super().__init__(config)
        self.source = source or self.source
        self._model = self._processor = self._clip_length = None

    def identity(self) -> dict:
        return super().identity() | {"model": models.model_identity(self.source)}

    def provenance(self) -> dict:
        return super().provenance() | {
            "model": models.model_identity(self.source), "weights_dtype": models.WEIGHTS_DTYPE,
            "frames_per_clip": self.clip_length,
            "sampling": "floor(i * T / N) of the T frames decoded at fps (last repeated when T < N)",
            "pooling": "mean over tokens, every hidden state, embeddings first",
            "config": dataclasses.asdict(self.config)}

    @property
    def clip_length(self) -> int:
        """Frames per clip: the `n_frames` option, or the model's own `num_frames`."""
        if self._clip_length is None:
            from transformers import AutoConfig

            model_config = models.from_source(AutoConfig, self.source, "the config of model")
            self._clip_length = self.config.n_frames or int(getattr(model_config, "num_frames", 16))
        return self._clip_length

    # -- per clip, in workers: sample and preprocess the frames ---------------------------------
    def setup_worker(self):
        from transformers import AutoImageProcessor

        if self._processor is None:
            self._processor = models.from_source(AutoImageProcessor, self.source, "the processor of model")
        self.clip_length

    def prepare(self, clip, media):
        """float32 [N, 3, H, W]: the clip's N sampled frames, resized, cropped and normalised."""
        self.setup_worker()
        if media.frames is None:
            raise ClipError("no frames decoded for this clip")
        decoded = sample_indices(media.frame_times, self.config.fps)  # another feature may decode faster
        picked = decoded[uniform_frames(len(decoded), self.clip_length)]
        pixels = self._processor(list(media.frames[picked]), return_tensors="pt")["pixel_values"][0]
        return {"pixels": pixels.numpy(), "n_frames": len(set(picked.tolist()))}

    def cost(self, payload) -> float:
        return 1.0

    # -- per batch, in the main process ---------------------------------------------------------
    def setup(self):
        from transformers import AutoModel

        self.setup_worker()
        self._device = models.resolve_device(self.config.device)
        models.autocast(self._device, self.config.compute_dtype)  # refuses float16 on CPU before any work
        self._model, _ = models.load_pretrained(self.source, AutoModel)
        self._model.to(self._device)

    def extract_batch(self, clips, payloads) -> list[Output]:
        import torch

        pixels = torch.from_numpy(np.stack([p["pixels"] for p in payloads])).to(self._device)
        with torch.inference_mode(), models.autocast(self._device, self.config.compute_dtype):
            out = self._model(pixel_values=pixels, output_hidden_states=True)
        layers = torch.stack([h.float().mean(1) for h in out.hidden_states], 1).cpu().numpy()  # [B, L, D]
        dtype = np.dtype(self.config.store_dtype)
        return [Output(arrays={"mean": m.astype(dtype), "n_frames": np.int32(p["n_frames"])})
                for m, p in zip(layers, payloads)]


def video_encoder(argument: str, options: dict[str, str]) -> VideoLayers:
    """every hidden layer of a HF clip-level video encoder (VideoMAE, ...) on 16 sampled frames, [L, D] per clip"""
    return VideoLayers(_config(VideoConfig, options, f"video:{argument}"), source=argument)


KINDS["video"] = video_encoder

PRESETS = {
    "videomae-base": {"source": "MCG-NJU/videomae-base", "dims": "13 x 768 per clip",
                      "description": "VideoMAE base (Kinetics-400, self-supervised; as MERBench), every layer"},
    "videomae-large": {"source": "MCG-NJU/videomae-large", "dims": "25 x 1024 per clip",
                       "description": "VideoMAE large (as MERBench), every layer"},
}
register_presets(VideoLayers, PRESETS, globals())
