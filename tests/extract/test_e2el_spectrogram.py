"""e2el-spectrogram: SAMSEMO's prep_aud.py transform (torchaudio's MelSpectrogram with its defaults),
checked against the formula written out in numpy, its pieces cut as prep_aud.py cuts them."""
import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from cache import open_feature
from extract.__main__ import main
from extract.acoustic.spectral import E2ELSpectrogram, PiecesConfig
from extract.core.base import ClipError
from extract.core.media import Media


def htk_mel_power(audio: np.ndarray, rate=16000, n_fft=400, hop=200, n_mels=128) -> np.ndarray:
    """torchaudio.transforms.MelSpectrogram(rate, n_fft=400) written out: reflect-padded centred
    frames, periodic Hann window, |rfft|^2, HTK triangles of height 1 from 0 Hz to Nyquist.
    float64 [n_mels, 1 + len // hop]."""
    padded = np.pad(audio.astype(np.float64), n_fft // 2, mode="reflect")
    starts = np.arange(1 + len(audio) // hop) * hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    power = np.abs(np.fft.rfft(np.stack([padded[s:s + n_fft] for s in starts]) * window, axis=1)) ** 2
    mel = np.linspace(0, 2595 * np.log10(1 + rate / 2 / 700), n_mels + 2)
    edges = 700 * (10 ** (mel / 2595) - 1)
    freqs = np.linspace(0, rate // 2, n_fft // 2 + 1)
    rising = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - freqs[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    return np.maximum(0, np.minimum(rising, falling)) @ power.T


def test_pieces_are_samsemos_mel_power_spectrogram(folder_corpus, tmp_path):
    result = CliRunner().invoke(main, ["--dataset", "mine", "--clips", str(folder_corpus), "--features",
                                       "e2el-spectrogram", "--set", "e2el-spectrogram.store_dtype=float32",
                                       "--cache", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    audio, _ = soundfile.read(folder_corpus.parent / "c.wav", dtype="float32")  # 16 kHz PCM decodes exactly
    expected = htk_mel_power(audio)
    feat = open_feature("mine", "e2el-spectrogram", tmp_path)
    pieces, n = feat.array(ids=["c"])[0], int(feat.array("n_pieces", ids=["c"])[0])
    frames = expected.shape[1]
    assert n == -(-frames // 32) and feat.provenance["version"] == "2"
    got = np.concatenate(list(pieces[:n]), axis=1)  # [128, 32 n]: the frames, then the last piece's padding
    np.testing.assert_allclose(got[:, :frames], expected, rtol=1e-3, atol=1e-6 * expected.max())
    assert (got[:, frames:] == 0).all() and (pieces[n:] == 0).all()  # padding: zero power (silence)
    assert expected.max() > 1  # linear power, no log: a dB scale would be ~0-60 here and negative in silence


def test_db_scale_float16_range_and_short_clips():
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    power = E2ELSpectrogram(PiecesConfig(store_dtype="float32")).extract(None, Media(audio=tone)).arrays["pieces"]
    db = E2ELSpectrogram(PiecesConfig(scale="db", store_dtype="float32")).extract(None, Media(audio=tone)).arrays
    np.testing.assert_allclose(db["pieces"], 10 * np.log10(np.maximum(power, 1e-10)), atol=1e-4)
    assert db["n_pieces"] == 3  # 81 frames: the third piece padded with 15 frames of silence
    np.testing.assert_allclose(db["pieces"][2, :, 17:], -100, atol=1e-4)  # silence: the -100 dB floor
    np.testing.assert_allclose(db["pieces"][3:], -100, atol=1e-4)
    loud = 8 * tone  # power beyond float16's 65504
    with pytest.raises(ClipError, match=r"exceeds float16's range \(65504\): extract with --set "
                                        r"e2el-spectrogram.store_dtype=float32"):
        E2ELSpectrogram().extract(None, Media(audio=loud))
    assert E2ELSpectrogram(PiecesConfig(store_dtype="float32")).extract(None, Media(audio=loud)).arrays[
        "pieces"].max() > 65504
    with pytest.raises(ClipError, match="audio of 150 samples is too short for a 400-sample window"):
        E2ELSpectrogram().extract(None, Media(audio=tone[:150]))
    with pytest.raises(ValueError, match="scale 'log': choose one of"):
        PiecesConfig(scale="log")
