"""`e2el`: SAMSEMO's E2E-L (Bujnowski et al. 2024, 3.1-3.2) on cached sequences.

Per modality a branch that emits class logits (and a valence): face crops and spectrogram pieces
go through a VGG-style CNN per item, then a transformer encoder over the clip's items with a
learned CLS token and a padding mask; a vector (the text encoder's CLS) goes through one linear
layer. Several modalities are mixed by one learned scalar weight each (late fusion). As in
samsungnlp/samsemo `src/model_E2E.py`; see docs/sequence-models.md for what differs.

A modality's blocks say what it is, by shape:
  [T, H, W, C] images (face-crops#crops) with [T] a validity mask (face-crops#mask, > 0 = a crop)
  [P, F, W] spectrogram pieces (e2el-spectrogram#pieces) with [] a count (#n_pieces)
  [D] or [k, D] a vector (text-minilm#first@-1; k layers are averaged)
Without a mask or count every item is real.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from . import register
from .blocks import LayerPool, Linear, TaskWeights
from .seq import ItemCNN, SequenceEncoder, trim
from .seq import validity as valid_steps

# SAMSEMO's face normalisation (RGB, 0-255 pixels); gray crops use the mean of the three
PIXEL_MEAN, PIXEL_STD = (159.0, 111.0, 102.0), (37.0, 33.0, 32.0)


@dataclass(frozen=True)
class E2ELConfig:
    channels: tuple[int, ...] = (64, 64, 64, 128, 256, 512)   # stem, then one VGG block each
    width: int = 64            # transformer width
    layers: int = 4
    heads: int = 4
    feedforward: int = 2048    # nn.TransformerEncoderLayer's default, which E2E-L keeps
    dropout: float = 0.1
    project: int = 1024        # CNN output -> project -> width
    loss: str = "sum"


@register("e2el")
class E2EL(nn.Module):
    Config = E2ELConfig
    # default features (fuse.inputs.specs.resolve): spectrogram pieces, face crops, the text encoder's CLS
    inputs = {"A": ["e2el-spectrogram#pieces", "e2el-spectrogram#n_pieces"], "V": ["face-crops#crops", "face-crops#mask"],
              "L": ["{text}#first@-1"]}
    uses_row_mask = True       # fuse.training.ensemble passes which batch rows are real
    standardize = False        # as SAMSEMO's: pixels normalised in the network, spectrogram pieces as cached
    # SAMSEMO's run.py: Adam, lr 1e-4, weight decay 1e-6, batch 16, at most 50 epochs, early stopping
    # (Lightning's EarlyStopping default patience of 3 validation epochs)
    training_defaults = {"lr": 1e-4, "weight_decay": 1e-6, "batch_size": 16, "epochs": 50, "patience": 3}
    eval_rows = 8              # clips per member per evaluation pass: CNN activations are ~20x the crops

    def __init__(self, config: E2ELConfig, shapes, modalities, n_classes: int, multi_label: bool = False):
        super().__init__()
        self.config, self.n_classes = config, n_classes
        order = list(dict.fromkeys(modalities))
        self.groups = [[i for i, m in enumerate(modalities) if m == mod] for mod in order]
        self.roles = [_roles([shapes[i] for i in group], mod) for group, mod in zip(self.groups, order)]
        self.branches = nn.ModuleList(self._branch(role, shapes, group) for role, group in zip(self.roles, self.groups))
        self.fusion = nn.Parameter(torch.empty(1, len(order)).uniform_(-len(order) ** -0.5, len(order) ** -0.5)) \
            if len(order) > 1 else None
        self.task_weights = TaskWeights(config.loss)

    def _branch(self, role, shapes, group) -> nn.Module:
        c, out = self.config, self.n_classes + 1  # class logits and a valence
        kind, item, _ = role
        if kind == "vector":
            shape = shapes[group[item]]
            return nn.ModuleDict({"pool": LayerPool(shape[0] if len(shape) == 2 else 1, False),
                                  "out": Linear(shape[-1], out)})
        shape = shapes[group[item]]
        channels, size = (shape[3], shape[1:3]) if kind == "images" else (1, shape[1:3])
        return nn.ModuleDict({
            "cnn": ItemCNN(channels, size, c.channels, c.width, c.dropout, stem_dropout=kind == "pieces",
                           hidden=c.project),
            "encoder": SequenceEncoder(c.width, c.layers, c.heads, c.feedforward, c.dropout),
            "out": Linear(c.width, out)})

    def forward(self, blocks: list[torch.Tensor], rows: torch.Tensor | None = None):
        """blocks [E, B, ...] each; rows [E, B] bool: False for rows that only fill a member's
        batch up (their items enter no batch statistics)."""
        outs = [self._modality(branch, role, [blocks[i] for i in group], rows)
                for branch, role, group in zip(self.branches, self.roles, self.groups)]
        if self.fusion is None:
            out = outs[0]
        else:
            out = torch.einsum("ebcm,em->ebc", torch.stack(outs, dim=-1), self.fusion)
        return out[..., :self.n_classes], out[..., self.n_classes]

    def _modality(self, branch, role, blocks, rows=None):
        kind, item, validity = role
        x = blocks[item]
        if kind == "vector":
            return branch["out"](branch["pool"](x))
        valid = valid_steps(x, blocks[validity] if validity is not None else None)
        if rows is not None:
            valid = valid * rows.unsqueeze(-1).to(valid.dtype)
        x, valid = trim(x, valid)  # slots after the batch's last real item: skipped
        if kind == "images":
            x = normalise_pixels(x.permute(0, 1, 2, 5, 3, 4))   # [E, B, T, C, H, W]
        else:
            x = x.unsqueeze(3)                                   # [E, B, P, 1, F, W]
        h = branch["encoder"](branch["cnn"](x, valid), valid)
        return branch["out"](h)

    def combine_losses(self, loss_e, loss_v):
        return self.task_weights(loss_e, loss_v)


def normalise_pixels(x: torch.Tensor) -> torch.Tensor:
    """[..., C, H, W] 0-255 pixels -> SAMSEMO's normalised values (C = 3 RGB or 1 gray)."""
    mean, std = pixel_scale(x.device, x.shape[-3])
    return (x - mean) / std


@functools.cache
def pixel_scale(device: torch.device, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PIXEL_MEAN and PIXEL_STD as float32 [C, 1, 1] on `device`, made once per device: made per
    forward, each would be a copy from the host that waits for the GPU."""
    mean, std = torch.tensor(PIXEL_MEAN), torch.tensor(PIXEL_STD)
    if channels == 1:
        mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
    return mean.view(-1, 1, 1).to(device), std.view(-1, 1, 1).to(device)


def _roles(shapes: list[tuple], modality: str) -> tuple[str, int, int | None]:
    """(kind, index of the item block, index of its mask / count block or None) for the blocks of
    one modality; refuses combinations E2E-L has no branch for."""
    shapes = [tuple(s) for s in shapes]  # (lists when read back from a run's model.json)
    sequences = [i for i, s in enumerate(shapes) if len(s) in (3, 4)]
    if not sequences:
        if len(shapes) != 1:
            raise ValueError(f"e2el: modality {modality} has {len(shapes)} vector features; give one "
                             "(e.g. the text encoder's CLS: text-minilm#first@-1)")
        return "vector", 0, None
    if len(sequences) > 1 or len(shapes) > 2:
        raise ValueError(f"e2el: modality {modality} has features of shapes {shapes}; give one sequence "
                         "(face-crops#crops, e2el-spectrogram#pieces) and optionally its mask or count")
    item = sequences[0]
    kind = "images" if len(shapes[item]) == 4 else "pieces"
    rest = [i for i in range(len(shapes)) if i != item]
    if rest and shapes[rest[0]] not in ((), (shapes[item][0],)):
        raise ValueError(f"e2el: modality {modality}: a {shapes[rest[0]]} feature cannot be the mask or count "
                         f"of a {shapes[item]} sequence (expected [] or [{shapes[item][0]}])")
    return kind, item, rest[0] if rest else None
