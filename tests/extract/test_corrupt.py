"""MER-NOISE copies as the official main-corrupt.py makes them: integer SNRs, noise files joined
until longer than the clip, a mixture scaled down rather than clipped, blur down and up a Gaussian
pyramid; the drawn SNR is the SNR, ids and labels survive, draws are seeded, a bad clip costs only
itself, a killed run resumes, a copy goes on only with the settings it was started with."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import convolve1d
from click.testing import CliRunner

from extract.core.media import decode_streams
from extract.corrupt.__main__ import main
from extract.corrupt.copy import SnrRange, draw
from extract.corrupt.degrade import babble, blur_frames, fit_range, mix_at_snr, noise_draw, snr
from manifests import load_manifest
from tests.conftest import write_table
from tests.media import face_frames, speech, write_clip

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def corpus(folder_corpus, tmp_path):
    """The folder corpus in a folder of its own (the copy must go outside it): its clips.csv."""
    root = tmp_path / "corpus"
    root.mkdir()
    for name in ("a.mp4", "b.mp4", "c.wav", "clips.csv"):
        shutil.copy2(folder_corpus.parent / name, root / name)
    return root / "clips.csv"


def corrupt_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_the_mixture_has_the_drawn_snr_on_real_speech(speech_16k):
    others = [speech("we will meet again tomorrow morning", pitch=30), speech("no, not at all", pitch=70)]
    noise = babble(others, len(speech_16k), np.random.default_rng(0))
    for target in (5.0, 7.3, 10.0):
        assert abs(snr(speech_16k, mix_at_snr(speech_16k, noise, target)) - target) < 0.1
    short = others[1][:4000]                                 # shorter than the speech: looped
    assert abs(snr(speech_16k, mix_at_snr(speech_16k, short, 6.0, offset=1234)) - 6.0) < 0.1


def high_band_energy(frame: np.ndarray, factor: int) -> float:
    """Energy of the grey frame's 2-D spectrum above the Nyquist frequency of a factor-x downsampling."""
    grey = frame.astype(float).mean(-1)
    spectrum = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(grey.shape[0]), np.fft.fftfreq(grey.shape[1]), indexing="ij")
    return float(spectrum[np.maximum(abs(fy), abs(fx)) > 0.5 / factor].sum())


def test_blur_removes_detail_above_the_new_nyquist():
    frames = face_frames(2, size=128)
    assert np.array_equal(blur_frames(frames, 1), frames)
    for factor in (2, 4):
        blurred = blur_frames(frames, factor)
        assert blurred.shape == frames.shape
        # bilinear upsampling images a little energy back above the new Nyquist; 70% or more goes
        assert high_band_energy(blurred[0], factor) < 0.3 * high_band_energy(frames[0], factor)


def test_snrs_are_the_official_integers_unless_a_step_is_given():
    """main-corrupt.py draws from np.arange(5, 11): the integers 5..10, each about as often."""
    ids = [f"clip{i:04d}" for i in range(600)]
    integers = [draw(i, 0, SnrRange(5, 10), [1, 2, 4], True, []).snr_db for i in ids]
    assert set(integers) == {5.0, 6.0, 7.0, 8.0, 9.0, 10.0}
    assert min(integers.count(v) for v in set(integers)) > 60
    halves = {draw(i, 0, SnrRange(5, 10, 0.5), [1], True, []).snr_db for i in ids}
    assert halves == {5 + k / 2 for k in range(11)}
    anything = [draw(i, 0, SnrRange(5, 10, 0), [1], True, []).snr_db for i in ids]
    assert len(set(anything)) > 590 and 5 <= min(anything) and max(anything) <= 10


def pyramid(frame: np.ndarray, levels: int) -> np.ndarray:
    """Down a Gaussian pyramid and up again, from its definition (Burt and Adelson; OpenCV's
    pyrDown / pyrUp): the binomial filter [1 4 6 4 1] / 16 along rows and columns, mirrored at the
    border, every second row and column kept; up: zeros between the samples, the filter x2 per
    axis, cut to the size on the way down; rounded (half up) to integers at each level."""
    taps = np.array([1, 4, 6, 4, 1]) / 16
    smooth = lambda x, k: convolve1d(convolve1d(x, k, axis=0, mode="mirror"), k, axis=1, mode="mirror")  # noqa: E731
    x, sizes = frame.astype(float), []
    for _ in range(levels):
        sizes.append(x.shape[:2])
        x = np.floor(smooth(x, taps)[::2, ::2] + 0.5)
    for h, w in reversed(sizes):
        z = np.zeros((2 * x.shape[0], 2 * x.shape[1], x.shape[2]))
        z[::2, ::2] = x
        x = np.floor(smooth(z, 2 * taps)[:h, :w] + 0.5)
    return x


def test_blur_is_the_official_gaussian_pyramid():
    frames = np.ascontiguousarray(face_frames(2, size=128)[:, :75, :101])   # odd sides too
    for factor, levels in ((2, 1), (4, 2)):
        blurred = blur_frames(frames, factor)
        assert blurred.shape == frames.shape and blurred.dtype == np.uint8
        for got, frame in zip(blurred, frames):
            np.testing.assert_array_equal(got, pyramid(frame, levels))
    with pytest.raises(ValueError, match="power of two"):
        blur_frames(frames, 3)


def test_noise_draw_joins_files_until_longer_than_the_clip():
    lengths = [100, 50, 70]
    for seed in range(20):
        picks, start = noise_draw(400, 3, lambda i: lengths[i], np.random.default_rng(seed))
        total = sum(lengths[i] for i in picks)
        assert total > 400 and total - lengths[picks[-1]] <= 400 and 0 <= start <= total - 400


def test_a_mixture_that_would_clip_is_scaled_down_as_a_whole(tmp_path, speech_16k):
    assert fit_range(np.array([0.5, -0.9], np.float32)).tolist() == pytest.approx([0.5, -0.9])
    np.testing.assert_allclose(fit_range(np.array([0.5, -1.5, 1.2], np.float32)), [1 / 3, -1, 0.8], rtol=1e-6)
    root = tmp_path / "loud"
    root.mkdir()
    write_clip(root / "loud.wav", speech_16k / np.abs(speech_16k).max(), 16000)   # at full scale
    write_table(root / "clips.csv", [dict(id="loud", path="loud.wav", split="train", label="happy")])
    (tmp_path / "noise").mkdir()
    write_clip(tmp_path / "noise" / "n.wav", np.clip(0.2 * np.random.default_rng(0).standard_normal(80000), -1, 1), 16000)
    out = tmp_path / "noisy"
    result = corrupt_cli("--dataset", "mine", "--clips", root / "clips.csv", "--out", out, "--snr", "0:0",
                         "--noise-dir", tmp_path / "noise")
    assert result.exit_code == 0, result.output
    before, after = decode_streams(root / "loud.wav").audio, decode_streams(out / "loud.wav").audio
    assert np.abs(after).max() > 0.99 and (np.abs(after) > 0.999).sum() <= 2   # nothing clipped
    gain = float(after @ before / (before @ before))   # the speech, scaled down with the noise
    assert 0.3 < gain < 0.95
    assert abs(10 * np.log10(np.mean((gain * before) ** 2) / np.mean((after - gain * before) ** 2))) < 0.3


def test_noise_files_are_drawn_and_joined_until_longer_than_the_clip(corpus, tmp_path):
    noise_dir = tmp_path / "musan"
    noise_dir.mkdir()
    g = np.random.default_rng(5)
    for k in range(3):  # each far shorter than the clips: several are joined
        write_clip(noise_dir / f"n{k}.wav", np.clip(0.2 * g.standard_normal(4000 + 1000 * k), -1, 1), 16000)
    args = ("--dataset", "mine", "--clips", corpus, "--out", tmp_path / "noisy", "--noise-dir", noise_dir)
    result = corrupt_cli(*args)
    assert result.exit_code == 0, result.output
    table = tmp_path / "noisy" / "corruption.csv"
    row = pd.read_csv(table, dtype=str).set_index("id").loc["c"]
    files = {f"n{k}.wav": decode_streams(noise_dir / f"n{k}.wav").audio for k in range(3)}
    names = row["noise"].split("+")
    joined = np.concatenate([files[name] for name in names])
    before, after = decode_streams(corpus.parent / "c.wav").audio, decode_streams(tmp_path / "noisy" / "c.wav").audio
    n, start = len(before), int(row["noise_start"])
    assert len(joined) > n >= len(joined) - len(files[names[-1]]) and 0 <= start <= len(joined) - n
    assert np.corrcoef(after[:n] - before, joined[start:start + n])[0, 1] > 0.999   # that noise, from there
    assert abs(snr(before, after) - float(row["snr_db"])) < 0.2
    # a run killed before it wrote corruption.csv: the rerun redoes no clip and records the same noise
    written = table.read_bytes()
    table.unlink()
    again = corrupt_cli(*args)
    assert "0 clips corrupted, 3 already done" in again.output and table.read_bytes() == written


def test_a_copy_goes_on_only_with_the_settings_it_was_started_with(corpus, tmp_path):
    out = tmp_path / "noisy"
    assert corrupt_cli("--dataset", "mine", "--clips", corpus, "--out", out).exit_code == 0
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    other = corrupt_cli("--dataset", "mine", "--clips", corpus, "--out", out, "--snr", "5:10:0", "--seed", "2")
    assert other.exit_code == 2, other.output
    assert "was written with other settings (snr [5.0, 10.0, 1.0] there, [5.0, 10.0, 0.0] now, seed 0 there, " \
           "2 now; corruption.json)" in other.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.mp4").write_bytes(b"my own file")
    refused = corrupt_cli("--dataset", "mine", "--clips", corpus, "--out", foreign)
    assert refused.exit_code == 2 and "already holds" in refused.output and "no corruption.json" in refused.output
    assert [p.name for p in foreign.iterdir()] == ["a.mp4"] and (foreign / "a.mp4").read_bytes() == b"my own file"


def test_the_copy_keeps_ids_labels_and_layout_and_records_its_draws(corpus, tmp_path):
    folder_corpus = corpus
    out = tmp_path / "noisy"
    result = corrupt_cli("--dataset", "mine", "--clips", folder_corpus, "--out", out, "--seed", "3")
    assert result.exit_code == 0, result.output
    clean, noisy = load_manifest("mine", clips=folder_corpus), load_manifest("mine", clips=out / "clips.csv")
    assert [(c.id, c.split, c.label, c.valence, c.text) for c in noisy] == \
           [(c.id, c.split, c.label, c.valence, c.text) for c in clean]
    draws = pd.read_csv(out / "corruption.csv").set_index("id")
    assert list(draws.index) == ["a", "b", "c"]
    assert draws["snr_db"].isin(range(5, 11)).all() and set(draws["blur_factor"]) <= {1, 2, 4}
    assert all(n.startswith("babble:") for n in draws["noise"])
    # the WAV (16-bit PCM) holds the mixture at the drawn SNR, within quantisation
    before, after = decode_streams(folder_corpus.parent / "c.wav").audio, decode_streams(out / "c.wav").audio
    assert abs(snr(before, after) - draws.loc["c", "snr_db"]) < 0.2
    video = decode_streams(out / "a.mp4", audio=False, fps=10)
    assert video.frames.shape[1:] == (128, 128, 3) and len(video.frames) == 12

    again = tmp_path / "again"
    corrupt_cli("--dataset", "mine", "--clips", folder_corpus, "--out", again, "--seed", "3")
    assert (again / "corruption.csv").read_bytes() == (out / "corruption.csv").read_bytes()
    other = tmp_path / "other"
    corrupt_cli("--dataset", "mine", "--clips", folder_corpus, "--out", other, "--seed", "4")
    assert not pd.read_csv(other / "corruption.csv")["snr_db"].equals(draws["snr_db"].reset_index(drop=True))


def test_a_clip_that_cannot_be_decoded_is_reported_and_the_rest_written(corpus, tmp_path):
    (corpus.parent / "b.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(500))
    out = tmp_path / "noisy"
    result = corrupt_cli("--dataset", "mine", "--clips", corpus, "--out", out)
    assert result.exit_code == 0, result.output
    assert "failed b:" in result.output and "2 clips corrupted" in result.output
    assert (out / "a.mp4").is_file() and (out / "c.wav").is_file() and not (out / "b.mp4").exists()
    assert list(pd.read_csv(out / "corruption.csv")["id"]) == ["a", "c"]


def test_a_killed_run_resumes_without_redoing_finished_clips(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = []
    for i in range(8):
        write_clip(corpus / f"v{i}.mp4", speech(pitch=40 + 5 * i), 16000, 1, face_frames(20))
        rows.append(dict(id=f"v{i}", path=f"v{i}.mp4", split="train", label="happy"))
    write_table(corpus / "clips.csv", rows)
    out = tmp_path / "noisy"
    cmd = [sys.executable, "-m", "extract.corrupt", "--dataset", "mine", "--clips", str(corpus / "clips.csv"),
           "--out", str(out)]
    run = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(out.glob("v*.mp4")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    written = {p.name: p.stat().st_mtime_ns for p in out.glob("v*.mp4")}
    if not 0 < len(written) < 8:
        pytest.skip(f"the kill landed with {len(written)} of 8 clips written")
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{8 - len(written)} clips corrupted, {len(written)} already done, 0 failed" in rerun.stdout
    assert all(out.joinpath(n).stat().st_mtime_ns == t for n, t in written.items())   # not redone
    assert sorted(p.name for p in out.glob("v*.mp4")) == [f"v{i}.mp4" for i in range(8)]
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    for p in out.glob("v*.mp4"):
        assert len(decode_streams(p, audio=False, fps=10).frames) == 20


@pytest.mark.parametrize("args,phrase", [(["--snr", "10:5"], "LOW is above HIGH"), (["--blur", "0,2"], "--blur"),
                                         (["--snr", "loud"], "LOW:HIGH"), (["--snr", "5:10:-1"], "STEP must be"),
                                         (["--blur", "1,3"], "3 is not a power of two")])
def test_bad_options_are_refused_before_any_work(corpus, tmp_path, args, phrase):
    result = corrupt_cli("--dataset", "mine", "--clips", corpus, "--out", tmp_path / "noisy", *args)
    assert result.exit_code == 2 and phrase in result.output
    assert not (tmp_path / "noisy").exists()


def test_an_output_inside_the_corpus_is_refused(folder_corpus):
    result = corrupt_cli("--dataset", "mine", "--clips", folder_corpus, "--out", folder_corpus.parent / "noisy")
    assert result.exit_code == 2 and "must not be the corpus folder or inside it" in result.output


def test_a_samsemo_release_is_copied_scene_by_scene(samsemo_release, tmp_path):
    from PIL import Image

    from manifests.samsemo import frame_files

    out = tmp_path / "noisy"
    args = ("--dataset", "samsemo", "--root", samsemo_release, "--out", out, "--blur", "4")
    result = corrupt_cli(*args)
    assert result.exit_code == 0, result.output
    assert "3 clips corrupted" in result.output and "failed mn90op12qr_0: MediaError: scene mn90op12qr_0" in result.output
    scenes, copied = samsemo_release / "segmented" / "combined", out / "segmented" / "combined"
    assert not (copied / "mn90op12qr_0").exists()  # a failed scene is not copied clean either
    clean, noisy = load_manifest("samsemo", root=samsemo_release), load_manifest("samsemo", root=out)
    assert [(c.id, c.split, c.label, c.text) for c in noisy] == [(c.id, c.split, c.label, c.text) for c in clean]
    assert [c.id for c in noisy if c.error is None] == ["ab12cd34ef_0", "ab12cd34ef_1", "gh56ij78kl_3"]
    draws = pd.read_csv(out / "corruption.csv").set_index("id")
    for scene in ("ab12cd34ef_0", "gh56ij78kl_3"):
        before, after = decode_streams(scenes / scene).audio, decode_streams(copied / scene).audio
        assert abs(snr(before, after) - draws.loc[scene, "snr_db"]) < 0.2
        frames = [(Image.open(a).convert("RGB"), Image.open(b).convert("RGB"))
                  for (_, a), (_, b) in zip(frame_files(scenes / scene), frame_files(copied / scene))]
        assert len(frames) == 5 and all(a.size == b.size for a, b in frames)
        assert all(high_band_energy(np.asarray(b), 4) < 0.5 * high_band_energy(np.asarray(a), 4) for a, b in frames)
    assert (copied / "ab12cd34ef_0" / "notes.txt").read_text() == "kept as it is"
    assert (out / "meta_and_splits" / "meta.pkl").read_bytes() == \
        (samsemo_release / "meta_and_splits" / "meta.pkl").read_bytes()
    assert not list(out.rglob(".*.tmp-*"))
    again = corrupt_cli(*args)
    assert "0 clips corrupted, 3 already done" in again.output
