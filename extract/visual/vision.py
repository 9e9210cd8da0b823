"""`vision:<hub id or folder>`: any HF transformers vision encoder on the clip's aligned faces.

    python -m extract --dataset demo --features vision:google/vit-base-patch16-224-in21k
    python -m extract --dataset demo --features rafdb=vision:/models/my-rafdb-vit

A hub model is identified by its id and revision, a folder by its weights hash (a moved folder
keeps its cache); without an alias a folder's feature is named after it (`vision:my-rafdb-vit`).

Every hidden layer (embeddings output included) is mean-pooled over tokens (ViT, CLIP vision) or
over the spatial grid (ResNet, ConvNeXt stages), then over the clip's detected frames:
`layers` [L, D] per clip, float16 by default. CNN stages of different widths are zero-padded to the
widest and `layer_dims` [L] says how many values of each row are real.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.base import KINDS, MODEL_RUNTIME, _config
from ..core.models import WEIGHTS_DTYPE, autocast, check_dtypes, load_pretrained, model_identity, resolve_device
from .embedder import FaceEmbedder, FaceModelConfig


@dataclass(frozen=True)
class VisionConfig(FaceModelConfig):
    chip_size: int = 224        # aligned chip side fed to the image processor
    store_dtype: str = "float16"  # float16 or float32 in the cache
    batch_seconds: float = 64.0  # face crops per batch

    def __post_init__(self):
        check_dtypes(self.store_dtype, self.compute_dtype)


class VisionLayers(FaceEmbedder):
    """Per-layer pooled hidden states of an HF vision model on aligned face chips."""

    name, version = "vision", "1"  # one extractor serves every model: the model is in identity()
    dims = "[L, D] per model"
    description = "every layer of an HF vision encoder (ViT, CLIP vision, ResNet, ConvNeXt), pooled"
    Config = VisionConfig
    runtime_options = MODEL_RUNTIME
    chip_padding = 0.25
    primary = "layers"

    def __init__(self, config=None, source: str = ""):
        super().__init__(config)
        self.source = source  # hub id or local folder

    @property
    def chip_size(self) -> int:
        return self.config.chip_size

    def identity(self) -> dict:
        return super().identity() | {"model": model_identity(self.source)}

    def setup(self):
        from transformers import AutoImageProcessor, AutoModel

        self._device = resolve_device(self.config.device)
        autocast(self._device, self.config.compute_dtype)  # refuses float16 on CPU before any work
        self._model, self._processor = load_pretrained(self.source, AutoModel, AutoImageProcessor)
        self._model.to(self._device)

    def embed(self, chips):
        import torch

        inputs = self._processor(images=list(chips), return_tensors="pt").to(self._device)
        with torch.inference_mode(), autocast(self._device, self.config.compute_dtype):
            out = self._vision_forward(inputs["pixel_values"])
        pooled = [h.float().mean(dim=1) if h.dim() == 3 else h.float().mean(dim=(2, 3))
                  for h in out.hidden_states]
        width = max(p.shape[1] for p in pooled)
        layers = torch.stack([torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in pooled], 1)
        self._layer_dims = np.array([p.shape[1] for p in pooled], np.int32)
        return {"layers": layers.cpu().numpy()}

    def _vision_forward(self, pixel_values):
        model = getattr(self._model, "vision_model", self._model)  # CLIP: the image tower only
        return model(pixel_values=pixel_values, output_hidden_states=True)

    def extract_batch(self, clips, payloads):
        outputs = super().extract_batch(clips, payloads)
        dtype = np.dtype(self.config.store_dtype)
        for out in outputs:
            out.arrays["layers"] = out.arrays["layers"].astype(dtype)
            out.arrays["layer_dims"] = self._layer_dims
        return outputs

    def provenance(self) -> dict:
        return super().provenance() | {"model": model_identity(self.source), "weights_dtype": WEIGHTS_DTYPE}


def vision_extractor(argument: str, options: dict[str, str]) -> VisionLayers:
    """any HF vision encoder (ViT, CLIP vision, ResNet, ConvNeXt): every layer pooled, [L, D] per clip"""
    return VisionLayers(_config(VisionConfig, options, f"vision:{argument}"), source=argument)


vision_extractor.__doc__ = vision_extractor.__doc__.strip()
KINDS["vision"] = vision_extractor
