"""The MER-NOISE corruptions (MER 2023 baseline, section 2.3), as the official main-corrupt.py
makes them: speech noise at a given SNR, and video blurred down and up a Gaussian pyramid.

    files, start = noise_draw(n, len(noise_files), length_of, rng)   # noise files joined, where to start
    mixture = fit_range(mix_at_snr(speech, noise, snr_db=7))          # float32 [n]; snr(speech, mixture) == 7
    blurred = blur_frames(frames, factor=4)                           # uint8 [T, H, W, 3], same size
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def fit_length(noise: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """`noise` cropped, or looped, to n samples, starting at `offset`."""
    if len(noise) == 0:
        raise ValueError("empty noise")
    reps = -(-(offset % len(noise) + n) // len(noise))
    return np.tile(noise, reps)[offset % len(noise):offset % len(noise) + n]


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, offset: int = 0) -> np.ndarray:
    """speech + g * noise (cropped or looped to its length), g such that
    10 log10(P_speech / P_scaled_noise) = snr_db exactly (P: mean square). float32 [n]."""
    speech = np.asarray(speech, np.float64)
    noise = fit_length(np.asarray(noise, np.float64), len(speech), offset)
    p_speech, p_noise = np.mean(speech ** 2), np.mean(noise ** 2)
    if p_noise == 0 or p_speech == 0:
        raise ValueError("silent speech or silent noise: an SNR cannot be set")
    gain = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    return (speech + gain * noise).astype(np.float32)


def noise_draw(n: int, n_files: int, length_of, rng: np.random.Generator) -> tuple[list[int], int]:
    """main-corrupt.py's noise for a clip of n samples: files drawn at random (with replacement)
    and joined until they are longer than the clip, then a start drawn uniformly in [0, joined - n].
    `length_of(i)`: the samples of file i. -> (the files' indices in order, the start)."""
    picks, total = [], 0
    while total <= n:
        picks.append(int(rng.integers(n_files)))
        length = length_of(picks[-1])
        if length == 0:  # (the joined noise would never grow)
            raise ValueError(f"noise file number {picks[-1]} holds no audio")
        total += length
    return picks, int(rng.integers(total - n + 1))


def fit_range(mixture: np.ndarray) -> np.ndarray:
    """The mixture scaled down as a whole when it leaves [-1, 1] (main-corrupt.py: 'avoid clipping
    noise'), so the SNR stays what was drawn; within range it is returned as it is."""
    peak = float(np.max(np.abs(mixture))) if len(mixture) else 0.0
    return (mixture / peak).astype(np.float32) if peak > 1 else mixture


def snr(speech: np.ndarray, mixture: np.ndarray) -> float:
    """The SNR in dB of `mixture` against the clean `speech` it was made from."""
    speech = np.asarray(speech, np.float64)
    residual = np.asarray(mixture, np.float64)[:len(speech)] - speech
    return float(10 * np.log10(np.mean(speech ** 2) / np.mean(residual ** 2)))


def babble(others: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """A babble noise of n samples: other clips' speech, each at unit power from a random offset,
    summed (a stand-in for MUSAN speech when no noise folder is given)."""
    out = np.zeros(n)
    for audio in others:
        audio = np.asarray(audio, np.float64)
        power = np.mean(audio ** 2)
        if power > 0:
            out += fit_length(audio, n, int(rng.integers(len(audio)))) / np.sqrt(power)
    return out


def blur_frames(frames: np.ndarray, factor: int) -> np.ndarray:
    """Each frame down a Gaussian pyramid log2(factor) levels (OpenCV's pyrDown: 5x5 binomial
    filter, every second row and column) and up again (pyrUp) to its size, as main-corrupt.py's
    func_blur: detail above the new Nyquist frequency is gone. factor 1: unchanged; a power of two.
    uint8 [T, H, W, 3]."""
    levels = round(math.log2(factor))
    if 2 ** levels != factor:
        raise ValueError(f"blur factor {factor}: the Gaussian pyramid halves per level, give a power of two")
    return np.stack([_down_and_up(f, levels) for f in frames]) if levels else frames


def _down_and_up(frame: np.ndarray, levels: int) -> np.ndarray:
    sizes = []
    for _ in range(levels):
        sizes.append((frame.shape[1], frame.shape[0]))
        frame = cv2.pyrDown(frame)
    for size in reversed(sizes):  # pyrUp to each size on the way down (odd sides: its default + 1, cropped)
        frame = cv2.pyrUp(frame, dstsize=size)
    return frame
