"""The MER-NOISE corruptions (MER 2023 baseline, section 2.3): speech noise at a given SNR, and
video blurred by down- and upsampling.

    mixture = mix_at_snr(speech, noise, snr_db=7.5)   # float32 [n]; snr(speech, mixture) == 7.5
    blurred = blur_frames(frames, factor=4)           # uint8 [T, H, W, 3], same size
"""
from __future__ import annotations

import numpy as np
from PIL import Image


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
    """Each frame downsampled by `factor` (area average) and upsampled back (bilinear): detail
    above the new Nyquist frequency is gone. factor 1: unchanged. uint8 [T, H, W, 3]."""
    if factor == 1:
        return frames
    h, w = frames.shape[1:3]
    small = (max(1, w // factor), max(1, h // factor))
    return np.stack([np.asarray(Image.fromarray(f).resize(small, Image.BOX).resize((w, h), Image.BILINEAR))
                     for f in frames])
