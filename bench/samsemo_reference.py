"""samsungnlp/samsemo's own code for bench/samsemo_parity.py, imported from a checkout (never copied).

What its modules import and this machine cannot is stubbed here, and nothing else (`install_stubs`):

  torchaudio       does not install beside the pinned torch. prep_aud.py calls two things of it:
                   `load` (here: soundfile, float32 in [-1, 1] as torchaudio.load gives it) and
                   `transforms.MelSpectrogram`, written out below with torch from torchaudio's
                   documented defaults (periodic Hann window, centred frames with reflect padding,
                   |STFT|^2, HTK mel triangles of height 1 from f_min to f_max = rate // 2).
  facenet_pytorch, prep_video.py's MTCNN and torchvision transforms, which run.py imports through
  torchvision      prep_raw.py; never called here (the crops come from the cache): a call raises.

run.py's own requirements that install here (lightning, tabulate) are required (`missing_requirements`).

Two things of run.py do not run on this torch or machine as published, and are bridged here without
changing what is computed: it builds `ReduceLROnPlateau(..., verbose=True)`, an argument torch has
removed (it only printed; the scheduler steps an optimizer that trains nothing), and it moves its
model to CUDA unconditionally (`.cuda()` is a no-op here when no GPU is present). Its argument
parser has no `--dropout`, which MME2E reads: as published it cannot build its model. The bench
sets 0.1, the default of the code it derives from (Dai et al.'s Multimodal-End2end-Sparse, cli.py)
and ours.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

MODEL_ORDER = "tva"   # MME2E.forward appends its modalities' logits in this order
FLATTENED = {512 * 3 * 3, 512 * 8 * 2}  # model_E2E.py's v_flatten / a_flatten inputs: 512 channels x h x w


def install_stubs(checkout: Path) -> list[str]:
    """Put the checkout on sys.path and stub the imports that cannot be satisfied; returns what was stubbed."""
    sys.path.insert(0, str(checkout))
    stubbed = ["torchaudio (load: soundfile; transforms.MelSpectrogram: written out with torch)"]
    sys.modules["torchaudio"] = _torchaudio()
    if not _importable("facenet_pytorch"):
        sys.modules["facenet_pytorch"] = _uncallable("facenet_pytorch", ("MTCNN",))
        stubbed.append("facenet_pytorch (never called)")
    if not _importable("torchvision"):
        vision = sys.modules["torchvision"] = _uncallable("torchvision", ())
        vision.transforms = sys.modules["torchvision.transforms"] = _uncallable("torchvision.transforms",
                                                                                ("Normalize", "Resize"))
        stubbed.append("torchvision (never called)")
    return stubbed


def missing_requirements() -> list[str]:
    """run.py's imports that install here but are not installed (checked before the stubs, which
    lightning would probe)."""
    return [name for name in ("lightning.pytorch", "tabulate") if not _importable(name)]


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001  (not installed, or installed and broken, as torchvision beside this torch)
        return False
    return True


def _uncallable(name: str, attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    for attr in attrs:
        def refuse(*args, _what=f"{name}.{attr}", **kwargs):
            raise NotImplementedError(f"{_what} is stubbed by bench/samsemo_reference.py")
        setattr(module, attr, refuse)
    return module


def _torchaudio() -> types.ModuleType:
    import soundfile

    module, transforms = types.ModuleType("torchaudio"), types.ModuleType("torchaudio.transforms")

    def load(path):
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return torch.from_numpy(audio.T.copy()), rate

    module.load, module.transforms, transforms.MelSpectrogram = load, transforms, MelSpectrogram
    sys.modules["torchaudio.transforms"] = transforms
    return module


class MelSpectrogram(nn.Module):
    """torchaudio.transforms.MelSpectrogram's signature and defaults; the options prep_aud.py leaves
    at their defaults are the only ones implemented (others raise)."""

    def __init__(self, sample_rate=16000, n_fft=400, win_length=None, hop_length=None, f_min=0.0, f_max=None,
                 pad=0, n_mels=128, window_fn=torch.hann_window, power=2.0, normalized=False, wkwargs=None,
                 center=True, pad_mode="reflect", onesided=None, norm=None, mel_scale="htk"):
        super().__init__()
        if pad or normalized or wkwargs or norm is not None or mel_scale != "htk":
            raise NotImplementedError("this stand-in of torchaudio's MelSpectrogram has only its defaults")
        self.n_fft, self.win_length = n_fft, win_length or n_fft
        self.hop_length, self.power = hop_length or self.win_length // 2, power
        self.center, self.pad_mode = center, pad_mode
        self.register_buffer("window", window_fn(self.win_length))
        f_max = float(sample_rate // 2) if f_max is None else f_max
        self.register_buffer("fb", htk_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(..., time) -> (..., n_mels, frames)."""
        shape = waveform.shape
        spec = torch.stft(waveform.reshape(-1, shape[-1]), self.n_fft, self.hop_length, self.win_length, self.window,
                          self.center, self.pad_mode, normalized=False, onesided=True, return_complex=True)
        spec = spec.abs().pow(self.power).reshape(*shape[:-1], *spec.shape[-2:])
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


def htk_fbanks(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    """torchaudio.functional.melscale_fbanks(norm=None, mel_scale='htk'): [n_freqs, n_mels]."""
    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    points = 700.0 * (10 ** (torch.linspace(mel(f_min), mel(f_max), n_mels + 2) / 2595.0) - 1.0)
    slopes = points.unsqueeze(0) - freqs.unsqueeze(1)
    down, up = -slopes[:, :-2] / (points[1:-1] - points[:-2]), slopes[:, 2:] / (points[2:] - points[1:-1])
    return torch.clamp(torch.minimum(down, up), min=0)


def reference_pieces(scenes: Path, scene: str) -> tuple[np.ndarray, int]:
    """prep_aud.py's Specgram on <scenes>/<scene>/audio.wav: pieces [32, 128, 32] float32 (its
    channel axis dropped: mono) and its piece count (uncapped, as it returns it)."""
    prep_aud = importlib.import_module("preprocessing.prep_aud")
    pieces, length = prep_aud.Specgram(files_path=str(scenes), utt_name=scene).specgram()
    return pieces[0, :, 0].numpy(), int(length)


class _Narrow:
    """torch.nn as model_E2E.py and vgg_block.py see it while MME2E is built at 1/divisor of its CNN
    widths (64-512 channels; the flattened CNN output with them); the forward code is theirs."""

    def __init__(self, divisor: int):
        self.divisor = divisor

    def __getattr__(self, name):
        return getattr(torch.nn, name)

    def _width(self, channels: int) -> int:
        return channels // self.divisor if channels >= 64 else channels

    def Conv2d(self, in_channels, out_channels, *args, **kwargs):  # noqa: N802 (torch.nn's name)
        return nn.Conv2d(self._width(in_channels), self._width(out_channels), *args, **kwargs)

    def BatchNorm2d(self, channels, *args, **kwargs):  # noqa: N802
        return nn.BatchNorm2d(self._width(channels), *args, **kwargs)

    def Linear(self, in_features, out_features, *args, **kwargs):  # noqa: N802
        return nn.Linear(in_features // self.divisor if in_features in FLATTENED else in_features, out_features,
                         *args, **kwargs)


@contextlib.contextmanager
def narrowed(divisor: int = 1):
    """MME2E built inside has its CNN widths divided by `divisor` (1: as published)."""
    modules = [importlib.import_module(m) for m in ("src.model_E2E", "src.vgg_block")]
    saved = [m.nn for m in modules]
    for m in modules:
        m.nn = _Narrow(divisor) if divisor > 1 else nn
    try:
        yield
    finally:
        for m, n in zip(modules, saved):
            m.nn = n


def build_mme2e(modalities: str, emotions, divisor: int = 1, dropout: float = 0.1, width: int = 64) -> nn.Module:
    """SAMSEMO's MME2E (src/model_E2E.py) with run.py's defaults (4 layers, 4 heads, width 64)."""
    model_e2e = importlib.import_module("src.model_E2E")
    hyp = types.SimpleNamespace(emotions=list(emotions), modalities=modalities, trans_nlayers=4, trans_nheads=4,
                                trans_dim=width, dropout=dropout)
    with narrowed(divisor):
        return model_e2e.MME2E(hyp)


def without_dropout(model: nn.Module) -> nn.Module:
    """Every dropout of MME2E at 0, its transformer's included (for a train-mode comparison: random
    masks are draws no two implementations share)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0
    return model


def our_state(ref: nn.Module, order: list[str], n_blocks: int) -> dict[str, torch.Tensor]:
    """MME2E's weights as the state dict of our e2el (one member) whose branches are `order` (A, L,
    V letters) with CNNs of `n_blocks` VGG blocks; our extra valence output gets zero weights."""
    state = {}
    for i, modality in enumerate(order):
        prefix = f"branches.{i}."
        if modality == "L":
            _linear(state, prefix + "out", ref.t_out, pad_outputs=1)
            continue
        v = modality == "V"
        _cnn_state(state, prefix + "cnn.", ref.V if v else ref.A, n_blocks)
        flatten = ref.v_flatten if v else ref.a_flatten
        _linear(state, prefix + "cnn.project.0", flatten[0])
        _linear(state, prefix + "cnn.project.1", flatten[2])
        _encoder_state(state, prefix + "encoder.", ref.v_transformer if v else ref.a_transformer)
        _linear(state, prefix + "out", ref.v_out if v else ref.a_out, pad_outputs=1)
    if len(order) > 1:
        present = [m for m in MODEL_ORDER if m in ref.mod]
        letter = {"A": "a", "V": "v", "L": "t"}
        state["fusion"] = ref.weighted_fusion.weight[:, [present.index(letter[m]) for m in order]]
    return {k: v.detach().clone() for k, v in state.items()}


def _cnn_state(state: dict, prefix: str, cnn: nn.Sequential, n_blocks: int):
    """MME2E's V or A Sequential: its convolutions and batch norms, in order, as our ItemCNN's."""
    ours_convs = ["stem"] + [f"blocks.{j}.conv{k}" for j in range(n_blocks) for k in (1, 2)]
    ours_norms = ["stem_bn"] + [f"blocks.{j}.bn{k}" for j in range(n_blocks) for k in (1, 2)]
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in cnn.modules() if isinstance(m, nn.BatchNorm2d)]
    if len(convs) != len(ours_convs) or len(norms) != len(ours_norms):
        raise ValueError(f"MME2E's CNN has {len(convs)} convolutions, ours {len(ours_convs)}")
    for name, conv in zip(ours_convs, convs):
        state[prefix + name + ".weight"], state[prefix + name + ".bias"] = conv.weight[None], conv.bias[None]
    for name, norm in zip(ours_norms, norms):
        for attr in ("weight", "bias", "running_mean", "running_var"):
            state[f"{prefix}{name}.{attr}"] = getattr(norm, attr)[None]


def _encoder_state(state: dict, prefix: str, transformer: nn.Module):
    """WrappedTransformerEncoder (CLS embedding, nn.TransformerEncoderLayer's) as our SequenceEncoder."""
    state[prefix + "cls"] = transformer.cls_emb.weight
    for j, layer in enumerate(transformer.encoder.layers):
        at = f"{prefix}layers.{j}."
        state[at + "qkv.weight"] = layer.self_attn.in_proj_weight.T[None]  # q, k, v stacked as ours
        state[at + "qkv.bias"] = layer.self_attn.in_proj_bias[None]
        for ours, theirs in (("out", layer.self_attn.out_proj), ("ff1", layer.linear1), ("ff2", layer.linear2)):
            _linear(state, at + ours, theirs)
        for norm in ("norm1", "norm2"):
            state[at + norm + ".weight"] = getattr(layer, norm).weight[None]
            state[at + norm + ".bias"] = getattr(layer, norm).bias[None]


def _linear(state: dict, name: str, linear: nn.Linear, pad_outputs: int = 0):
    """nn.Linear (weight [out, in]) as our member Linear (weight [1, in, out]); `pad_outputs` zero
    columns appended (our valence output)."""
    weight, bias = linear.weight.T, linear.bias
    if pad_outputs:
        weight = torch.cat([weight, weight.new_zeros(weight.shape[0], pad_outputs)], dim=1)
        bias = torch.cat([bias, bias.new_zeros(pad_outputs)])
    state[name + ".weight"], state[name + ".bias"] = weight[None], bias[None]


def reference_inputs(pieces, n_pieces, text, crops, mask):
    """Our e2el's input blocks [1, B, ...] (A, A, L, V, V as fuse.specs orders them) as MME2E.forward
    takes them: (text [B, 1, 768], spectrogram pieces [B, 32, 1, 128, 32], their counts, faces
    [B, 16, 3, 48, 48] normalised as prep_video.py does (padding zero), their counts)."""
    mean, std = torch.tensor([159.0, 111.0, 102.0]), torch.tensor([37.0, 33.0, 32.0])
    faces = (crops[0].permute(0, 1, 4, 2, 3) - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    faces = faces * (mask[0] > 0).float()[..., None, None, None]
    return (text[0][:, None], pieces[0][:, :, None], n_pieces[0].long(), faces, (mask[0] > 0).sum(-1))


def train_reference(checkout: Path, data: Path, epochs: int, batch_size: int, divisor: int, workdir: Path) -> dict:
    """run.py's training on the pickle `data` (its prep_raw.py format): its per-sample dataset
    (src/dataset.py), its LightningModule (EmoModel: BCE, Adam, its per-epoch F1 and thresholds) and
    the Trainer its main() builds, with two changes that compute nothing differently: DataLoaders
    without its 63 worker processes, no progress bar. Its early stopping is kept but set never to fire
    (patience = epochs) so that both sides train `epochs`; MME2E at 1/divisor of its CNN widths,
    V and A. Returns seconds (fit and test), seconds per epoch (training and validation, timed by a
    callback), epochs run, training clips, best validation F1 and test F1."""
    import time

    from lightning.pytorch import Callback, Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.callbacks.early_stopping import EarlyStopping
    from torch.utils.data import DataLoader

    sys.argv = ["run.py", "--train_from_raw_data", "", "--base_dir", "-", "--utt_names_path", "-",
                "--data_path", f"{data.parent}/", "--dataset_name", data.name, "--max_epochs", str(epochs),
                "--batch_size", str(batch_size), "--modalities", "av", "--checkpoints_dir", str(workdir)]
    run = _load("samsemo_run", checkout / "run.py")
    run.args.dropout = 0.1  # run.py has no --dropout, which MME2E reads (see the module docstring)
    run.ReduceLROnPlateau = _plateau_without_verbose(run.ReduceLROnPlateau)
    scoring = _timed(run.EmoModel, "_common_step_epoch_end")
    torch.manual_seed(0)
    with narrowed(divisor), _cuda_is_a_no_op():
        model = run.EmoModel(run.args)
    sets = {split: run.Multimodal_Datasets(run.args.data_path, run.args.dataset_name, split)
            for split in ("train", "valid", "test")}
    loaders = {split: DataLoader(d, batch_size=run.args.batch_size, shuffle=split == "train", num_workers=0)
               for split, d in sets.items()}
    checkpoint = ModelCheckpoint(monitor="f1_average_val", dirpath=run.args.checkpoints_dir, mode="max",
                                 filename="{epoch:02d}-{val_loss:.2f}--{f1_average_val:.2f}")
    stopping = EarlyStopping(monitor="f1_average_val", mode="max", patience=epochs)

    class EpochClock(Callback):
        """Seconds of each epoch, from its start to the next one's (the last: to the end of training):
        its training steps, its validation and run.py's epoch-end scores (hooks that run after a
        callback's on_train_epoch_end)."""
        marks: list = []

        def on_train_epoch_start(self, trainer, module):
            self.marks.append(time.perf_counter())

        def on_train_end(self, trainer, module):
            self.marks.append(time.perf_counter())

    clock = EpochClock()
    trainer = Trainer(max_epochs=run.args.max_epochs, default_root_dir=run.args.checkpoints_dir,
                      check_val_every_n_epoch=1, num_sanity_val_steps=0, callbacks=[checkpoint, stopping, clock],
                      accelerator="cpu", enable_progress_bar=False, enable_model_summary=False, logger=False)
    started = time.perf_counter()
    trainer.fit(model, loaders["train"], loaders["valid"])
    trainer.test(model, dataloaders=loaders["test"], ckpt_path="best")
    return {"seconds": time.perf_counter() - started, "per_epoch": float(np.mean(np.diff(clock.marks))),
            "scoring": sum(scoring[:2 * trainer.current_epoch]) / trainer.current_epoch,  # train + valid per epoch
            "epochs": trainer.current_epoch, "train": len(sets["train"]),
            "valid_f1": float(checkpoint.best_model_score), "test_f1": float(model.prev_test_stats[3][-1]),
            "patience_default": EarlyStopping(monitor="f1_average_val").patience}


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(cls, method: str) -> list[float]:
    """Wrap cls.method to record the seconds of each call (it runs unchanged): the list they go to."""
    import functools
    import time

    seconds, original = [], getattr(cls, method)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    setattr(cls, method, timed)
    return seconds


def _plateau_without_verbose(cls):
    """ReduceLROnPlateau taking run.py's `verbose=True`, which torch no longer accepts (it only printed)."""
    if "verbose" in inspect.signature(cls.__init__).parameters:
        return cls

    class Plateau(cls):
        def __init__(self, optimizer, *args, verbose=False, **kwargs):
            super().__init__(optimizer, *args, **kwargs)

    return Plateau


@contextlib.contextmanager
def _cuda_is_a_no_op():
    """run.py's EmoModel calls `.cuda()` on its model whatever the machine: a no-op without a GPU."""
    saved = nn.Module.cuda
    if not torch.cuda.is_available():
        nn.Module.cuda = lambda self, device=None: self
    try:
        yield
    finally:
        nn.Module.cuda = saved
