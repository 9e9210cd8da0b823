"""librosa features: MFCC, log-mel and the SAMSEMO E2E-L spectrogram pieces.

All take the clip's audio as 16 kHz mono float32 (see extract.core.media).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.base import Extractor, Output, register
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
    n_fft: int = 400          # SAMSEMO E2E-L: 400-sample window at 16 kHz
    hop_length: int = 200
    n_mels: int = 128
    piece_frames: int = 32
    max_pieces: int = 32
    store_dtype: str = "float16"  # float16 or float32 in the cache (computed in float32)

    def __post_init__(self):
        if self.store_dtype not in STORE_DTYPES:
            raise ValueError(f"store_dtype {self.store_dtype!r}: choose one of {STORE_DTYPES}")


@register
class E2ELSpectrogram(Extractor):
    name, dims = "e2el-spectrogram", "pieces [32, 128, 32] + n_pieces"
    description = "SAMSEMO E2E-L mel-spectrogram pieces of 32 frames, at most 32 per clip, zero-padded"
    Config = PiecesConfig

    def extract(self, clip, media) -> Output:
        c = self.config
        mel = log_mel(media.audio, c.n_fft, c.hop_length, c.n_mels)  # [n_mels, T]
        n_pieces = int(min(c.max_pieces, max(1, -(-mel.shape[1] // c.piece_frames))))
        pieces = np.zeros((c.max_pieces, c.n_mels, c.piece_frames), dtype=np.float32)
        for i in range(n_pieces):
            chunk = mel[:, i * c.piece_frames:(i + 1) * c.piece_frames]
            pieces[i, :, :chunk.shape[1]] = chunk
        return Output(arrays={"pieces": pieces.astype(c.store_dtype),
                              "n_pieces": np.asarray(n_pieces, dtype=np.int32)})
