"""librosa features: MFCC, log-mel and the SAMSEMO E2E-L spectrogram pieces (torchaudio's
MelSpectrogram reproduced with librosa: torchaudio does not install beside the pinned torch).

All take the clip's audio as 16 kHz mono float32 (see extract.core.media).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..core.base import ClipError, Extractor, Output, register
from ..core.media import SAMPLE_RATE
from ..core.models import STORE_DTYPES


@dataclass(frozen=True)
class SpectralConfig:
    n_fft: int = 400        # 25 ms window at 16 kHz
    hop_length: int = 160   # 10 ms hop
    n_mels: int = 64
    n_mfcc: int = 40


def clip_statistics(frames: np.ndarray) -> np.ndarray:
    """[T, D] -> [2D] mean then standard deviation over time, float32."""
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)]).astype(np.float32)


def log_mel(audio: np.ndarray, n_fft: int, hop_length: int, n_mels: int) -> np.ndarray:
    """Log-mel power spectrogram in dB: float32 [n_mels, T]."""
    import librosa

    mel = librosa.feature.melspectrogram(y=audio, sr=SAMPLE_RATE, n_fft=n_fft, win_length=n_fft,
                                         hop_length=hop_length, n_mels=n_mels, power=2.0)
    return librosa.power_to_db(mel, ref=1.0, top_db=None).astype(np.float32)


@register
class MFCC(Extractor):
    name, dims = "mfcc", "2*n_mfcc (80) + frames [T, 40]"
    description = "librosa MFCC: per-clip mean and std, and the frame sequence (10 ms hop)"
    Config = SpectralConfig

    def extract(self, clip, media) -> Output:
        import librosa

        c = self.config
        mfcc = librosa.feature.mfcc(y=media.audio, sr=SAMPLE_RATE, n_mfcc=c.n_mfcc, n_fft=c.n_fft,
                                    win_length=c.n_fft, hop_length=c.hop_length, n_mels=c.n_mels)
        frames = mfcc.T.astype(np.float32)
        return Output(arrays={"stats": clip_statistics(frames)}, ragged={"frames": frames})


@register
class LogMel(Extractor):
    name, dims = "logmel", "2*n_mels (128) + frames [T, 64]"
    description = "librosa log-mel spectrogram: per-clip mean and std, and the frame sequence"
    Config = SpectralConfig

    def extract(self, clip, media) -> Output:
        c = self.config
        frames = log_mel(media.audio, c.n_fft, c.hop_length, c.n_mels).T
        return Output(arrays={"stats": clip_statistics(frames)}, ragged={"frames": frames})


@dataclass(frozen=True)
class PiecesConfig:
    # SAMSEMO's prep_aud.py: torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=win_length=400 at
    # 16 kHz) with torchaudio's other defaults: hop win_length // 2, 128 mels, power 2, no log
    n_fft: int = 400
    hop_length: int = 200
    n_mels: int = 128
    piece_frames: int = 32
    max_pieces: int = 32
    scale: str = "power"          # power (SAMSEMO's: linear mel power) or db (10 log10, floor -100 dB)
    store_dtype: str = "float16"  # float16 or float32 in the cache (computed in float32)

    def __post_init__(self):
        if self.store_dtype not in STORE_DTYPES:
            raise ValueError(f"store_dtype {self.store_dtype!r}: choose one of {STORE_DTYPES}")
        if self.scale not in SCALES:
            raise ValueError(f"scale {self.scale!r}: choose one of {SCALES}")


SCALES = ("power", "db")
AMIN = 1e-10  # the db scale's floor (librosa's and torchaudio's amin): silence and padding are -100 dB


@lru_cache(maxsize=4)
def htk_filterbank(n_fft: int, n_mels: int) -> np.ndarray:
    """torchaudio.functional.melscale_fbanks' defaults as MelSpectrogram uses them: HTK mel scale
    from 0 Hz to Nyquist, triangles of height 1 (no area normalisation): float32 [n_mels, 1 + n_fft // 2]."""
    import librosa

    with warnings.catch_warnings():  # the lowest triangles fall between FFT bins: empty, as in torchaudio
        warnings.simplefilter("ignore", UserWarning)
        return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=SAMPLE_RATE / 2,
                                   htk=True, norm=None)


def mel_power(audio: np.ndarray, n_fft: int, hop_length: int, n_mels: int) -> np.ndarray:
    """torchaudio's MelSpectrogram (its defaults; window and FFT of n_fft samples): a periodic Hann
    window, frames centred on every hop with the signal reflected at both ends, |STFT|^2 through
    `htk_filterbank`. float32 [n_mels, 1 + len(audio) // hop_length], linear power."""
    import librosa

    if len(audio) <= n_fft // 2:  # torch.stft's reflect padding needs more samples than it pads
        raise ClipError(f"audio of {len(audio)} samples is too short for a {n_fft}-sample window "
                        f"(at least {n_fft // 2 + 1})")
    stft = librosa.stft(audio, n_fft=n_fft, hop_length=hop_length, win_length=n_fft, window="hann",
                        center=True, pad_mode="reflect")
    return (htk_filterbank(n_fft, n_mels) @ (np.abs(stft) ** 2)).astype(np.float32)


@register
class E2ELSpectrogram(Extractor):
    """SAMSEMO E2E-L's spectrogram pieces (prep_aud.py): the mel spectrogram in 32-frame pieces,
    the last one zero-padded (silence), at most 32 pieces, zero pieces after them; the true count."""

    name, version, dims = "e2el-spectrogram", "2", "pieces [32, 128, 32] + n_pieces"
    description = "SAMSEMO E2E-L mel-power spectrogram (torchaudio's defaults) in pieces of 32 frames, at most 32"
    Config = PiecesConfig

    def extract(self, clip, media) -> Output:
        c = self.config
        mel = mel_power(media.audio, c.n_fft, c.hop_length, c.n_mels)  # [n_mels, T]
        n_pieces = int(min(c.max_pieces, -(-mel.shape[1] // c.piece_frames)))
        pieces = np.zeros((c.max_pieces, c.n_mels, c.piece_frames), dtype=np.float32)
        for i in range(n_pieces):
            chunk = mel[:, i * c.piece_frames:(i + 1) * c.piece_frames]
            pieces[i, :, :chunk.shape[1]] = chunk
        if c.scale == "db":
            pieces = 10 * np.log10(np.maximum(pieces, AMIN))
        return Output(arrays={"pieces": stored(pieces, c.store_dtype),
                              "n_pieces": np.asarray(n_pieces, dtype=np.int32)})

    def provenance(self) -> dict:
        if self.config.scale != "power":
            return super().provenance()
        # fuse.outliers: no robust spread to measure loud clips against (speech is ~1e5 spreads
        # above the silence and padding of most clips); the values are bounded when cached as float16
        return super().provenance() | {"far_out_check": "none: linear mel power is heavy-tailed"}


def stored(values: np.ndarray, dtype: str) -> np.ndarray:
    """values in the cache's dtype; ClipError when float16 cannot hold them (a loud clip's power)."""
    if dtype == "float16" and np.abs(values).max(initial=0) > np.finfo(np.float16).max:
        raise ClipError(f"mel power up to {np.abs(values).max():.4g} exceeds float16's range "
                        f"({np.finfo(np.float16).max:.0f}): extract with --set e2el-spectrogram.store_dtype=float32 "
                        "or --set e2el-spectrogram.scale=db")
    return values.astype(dtype)
