"""Offline English speech synthesis with espeak-ng through ctypes.

Uses the shared library and voice data shipped by the `espeakng_loader` wheel, so no
system package or network is needed. The library is loaded afresh for each utterance so
that the same arguments always give the same samples (espeak-ng otherwise carries state
from one utterance to the next).
"""
from __future__ import annotations

import _ctypes
import ctypes
import threading

import numpy as np

SAMPLE_RATE = 22050  # espeak-ng's fixed output rate

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RAND_SEED = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4

# int callback(short *wav, int numsamples, espeak_EVENT *events)
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()  # espeak-ng keeps global state: one synthesis at a time
_libc = ctypes.CDLL(None)


class _Engine:
    """One freshly loaded, initialised espeak-ng library and the samples its callback collects.

    espeak-ng keeps function-level statics (e.g. the pitch-flutter phase) that run on across
    utterances, so a library kept loaded gives a different waveform for the same call later
    in a process. Loading it afresh for every utterance makes synthesis reproducible.
    """

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate != SAMPLE_RATE:
            self.close()
            raise RuntimeError(f"espeak_Initialize failed or gave rate {rate}")
        self.chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]

    def _collect(self, wav, n_samples, _events):
        if n_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0  # 0 = continue synthesis

    def synth(self, text: str) -> np.ndarray:
        """Speak `text` with the current voice and parameters; int16 [n] at SAMPLE_RATE."""
        self.chunks = []
        # breath noise uses espeak's own generator and libc rand(): fix both
        self.lib.espeak_ng_SetRandSeed(_RAND_SEED)
        _libc.srand(_RAND_SEED)
        data = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(
            data, ctypes.c_size_t(len(data)), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with error {err}")
        self.lib.espeak_Synchronize()
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)

    def close(self):
        """Terminate and unload, so the next _Engine starts from clean statics."""
        self.lib.espeak_Terminate()
        _ctypes.dlclose(self.lib._handle)


def synthesize(text: str, voice: str = "en", rate: int = 175, pitch: int = 50,
               pitch_range: int = 50, volume: int = 100) -> np.ndarray:
    """Speak `text` with espeak-ng.

    voice: espeak voice name, optionally with a variant ("en", "en-us", "en+f3").
    rate: words per minute (80-450); pitch, pitch_range: 0-100; volume: 0-200.
    Returns float32 mono samples in [-1, 1] at SAMPLE_RATE (22,050 Hz), shape [n].
    """
    with _lock:
        engine = _Engine()  # ~5 ms: fresh statics make the output depend only on the arguments
        try:
            if engine.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"unknown espeak-ng voice {voice!r}")
            for param, value in ((_PARAM_RATE, rate), (_PARAM_VOLUME, volume),
                                 (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range)):
                engine.lib.espeak_SetParameter(param, int(value), 0)
            samples = engine.synth(text)
        finally:
            engine.close()
    return (samples.astype(np.float32) / 32768.0)


def speech_at(rate: int, text: str = "I can't believe it, this is wonderful news", **voice) -> np.ndarray:
    """`synthesize(text, **voice)` resampled to `rate` Hz: float32 mono [n]."""
    from scipy.signal import resample_poly

    return resample_poly(synthesize(text, **voice), rate, SAMPLE_RATE).astype(np.float32)
