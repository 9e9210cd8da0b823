"""Augmented copies: new ids linked to their origin, labels copied, each method changes what it
should (measured), the same seed gives the same copies, and fuse.train can read the result. Speech
noise: only a noise folder's audio files, a random crop of one; babble names the clips it holds."""
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.signal import correlate

from extract.augment import cutout, gaussian_noise, main, transform
from extract.core.media import decode_streams
from extract.corrupt.degrade import snr
from manifests import load_manifest
from tests.conftest import write_table
from tests.media import write_clip


def test_gaussian_noise_is_at_30_db(speech_16k):
    assert abs(snr(speech_16k, gaussian_noise(speech_16k, 30.0, np.random.default_rng(0))) - 30.0) < 0.1


def test_pitch_shift_moves_a_tone():
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    rng = np.random.default_rng(1)
    audio_fn, frames_fn = transform("pitch", rng)
    shifted = audio_fn(tone)
    peak = lambda x: np.argmax(np.abs(np.fft.rfft(x))) * 16000 / len(x)
    ratio = peak(shifted) / peak(tone)
    assert frames_fn is None and abs(12 * np.log2(ratio)) > 0.9 and abs(12 * np.log2(ratio)) < 2.1


def test_video_methods_change_the_frames_and_cutout_blanks_one_square():
    from tests.media import face_frames

    frames = face_frames(3, size=64)
    for method in ("blur", "rotate", "brightness"):
        audio_fn, frames_fn = transform(method, np.random.default_rng(2))
        out = frames_fn(frames)
        assert audio_fn is None and out.shape == frames.shape and np.abs(out.astype(int) - frames).mean() > 1
    frames = np.maximum(frames, 1)                    # no black pixel before the cutout
    out = cutout(frames, np.random.default_rng(3))
    blank = (out == 0).all(axis=(0, 3))
    assert blank.sum() == 16 * 16                     # a quarter of the side, in every frame


def test_copies_are_linked_labelled_and_seeded(folder_corpus, tmp_path):
    def run(out, seed):
        result = CliRunner().invoke(main, ["--dataset", "mine", "--clips", str(folder_corpus), "--out", str(out),
                                           "--methods", "gauss,cutout", "--seed", str(seed)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return load_manifest("mine-aug", clips=out / "clips.csv")

    copies = run(tmp_path / "aug", 0)
    clean = {c.id: c for c in load_manifest("mine", clips=folder_corpus)}
    # training clips a (video) and b (video): a gauss and a cutout copy each; c is a test clip
    assert sorted(c.id for c in copies) == ["a~cutout", "a~gauss", "b~cutout", "b~gauss"]
    for c in copies:
        assert c.origin == c.id.split("~")[0] and c.label == clean[c.origin].label and c.split == "train"
    noisy = decode_streams(tmp_path / "aug" / "media" / "a~gauss.mp4", audio=True).audio
    assert noisy is not None and len(noisy) > 0
    again = run(tmp_path / "again", 0)
    frames = lambda root, cid: decode_streams(root / "media" / f"{cid}.mp4", audio=False, fps=10).frames
    assert np.array_equal(frames(tmp_path / "aug", "a~cutout"), frames(tmp_path / "again", "a~cutout"))
    other = run(tmp_path / "other", 1)
    assert not np.array_equal(frames(tmp_path / "aug", "a~cutout"), frames(tmp_path / "other", "a~cutout"))
    assert [c.id for c in again] == [c.id for c in copies] == [c.id for c in other]


def test_unknown_methods_are_refused(folder_corpus, tmp_path):
    result = CliRunner().invoke(main, ["--dataset", "mine", "--clips", str(folder_corpus), "--out",
                                       str(tmp_path / "aug"), "--methods", "gauss,warp"])
    assert result.exit_code == 2 and "choose from" in result.output and not (tmp_path / "aug").exists()


def test_scene_folders_are_augmented_into_scene_folders(samsemo_release, tmp_path):
    from PIL import Image

    from manifests.samsemo import frame_files

    out = tmp_path / "aug"
    result = CliRunner().invoke(main, ["--dataset", "samsemo", "--root", str(samsemo_release), "--out", str(out),
                                       "--methods", "gauss,cutout"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # training scenes ab12cd34ef_0, ab12cd34ef_1 and mn90op12qr_0, whose frames differ in size (fails)
    assert "4 augmented copies of 3 training clips, 2 failed" in result.output
    copies = load_manifest("samsemo-aug", clips=out / "clips.csv")
    assert sorted(c.id for c in copies) == ["ab12cd34ef_0~cutout", "ab12cd34ef_0~gauss",
                                            "ab12cd34ef_1~cutout", "ab12cd34ef_1~gauss"]
    assert all(c.error is None and c.video.is_dir() and c.label == {"ab12cd34ef_0": "happiness",
                                                                     "ab12cd34ef_1": "sadness"}[c.origin]
               for c in copies)
    scene = samsemo_release / "segmented" / "combined" / "ab12cd34ef_0"
    clean, noisy = decode_streams(scene).audio, decode_streams(out / "media" / "ab12cd34ef_0~gauss").audio
    assert abs(snr(clean, noisy) - 30.0) < 0.5
    cut = [np.asarray(Image.open(p).convert("RGB")) for _, p in frame_files(out / "media" / "ab12cd34ef_0~cutout")]
    assert len(cut) == 5 and all((frame.max(-1) < 8).sum() >= 0.9 * 24 * 24 for frame in cut)  # a 24x24 square


def augment_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def noise_folder(tmp_path):
    """A MUSAN-like noise folder: 8 s of white noise in speech/, and the corpus's text files."""
    folder = tmp_path / "musan"
    (folder / "speech").mkdir(parents=True)
    for name in ("LICENSE", "ANNOTATIONS", "README"):
        (folder / name).write_text(f"{name} of the corpus\n")
    (folder / "speech" / "._n.wav").write_text("macOS metadata")  # a copy's hidden file, not audio
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 8 * 16000).astype(np.float32)
    write_clip(folder / "speech" / "n.wav", noise, 16000)
    return folder


def test_noise_is_a_random_crop_of_an_audio_file_of_the_noise_folder(tmp_path, speech_16k, noise_folder):
    for cid, shift in (("a", 0), ("b", 4000)):
        write_clip(tmp_path / f"{cid}.wav", np.roll(speech_16k, shift), 16000)
    rows = [dict(id="a", path="a.wav", split="train", label="happy"), dict(id="b", path="b.wav", split="train",
                                                                             label="sad")]
    corpus = write_table(tmp_path / "clips.csv", rows)
    result = augment_cli("--dataset", "mine", "--clips", corpus, "--out", tmp_path / "aug", "--methods", "noise",
                         "--noise-dir", noise_folder)
    assert result.exit_code == 0, result.output
    assert "2 augmented copies of 2 training clips, 0 failed" in result.output   # no text file drawn as noise
    noise = decode_streams(noise_folder / "speech" / "n.wav", audio=True).audio
    starts = []
    for cid in ("a", "b"):
        clean = decode_streams(tmp_path / f"{cid}.wav", audio=True).audio
        residual = decode_streams(tmp_path / "aug" / "media" / f"{cid}~noise.wav", audio=True).audio - clean
        fit = correlate(noise, residual, mode="valid", method="fft") / np.linalg.norm(residual)
        energy = np.concatenate([[0], np.cumsum(noise.astype(np.float64) ** 2)])
        fit /= np.sqrt(energy[len(residual):] - energy[:-len(residual)])  # of each window of the noise
        starts.append(int(np.argmax(fit)))
        assert fit.max() > 0.99, cid               # the residual is the noise file from that sample on
    assert min(starts) > 0 and starts[0] != starts[1], starts
    assert [c.origin for c in load_manifest("aug", clips=tmp_path / "aug" / "clips.csv")] == ["a", "b"]


def test_a_noise_folder_without_audio_files_is_refused(tmp_path, folder_corpus, noise_folder):
    (noise_folder / "speech" / "n.wav").unlink()
    result = augment_cli("--dataset", "mine", "--clips", folder_corpus, "--out", tmp_path / "aug", "--methods",
                         "noise", "--noise-dir", noise_folder)
    assert result.exit_code == 2 and "no audio files" in result.output and not (tmp_path / "aug").exists()


def test_babble_copies_name_every_clip_whose_speech_they_hold(folder_corpus, tmp_path):
    """Without a noise folder a copy's noise is other training clips' speech; folds are formed only
    when fuse.train runs, so the copy names them and fuse.train keeps it out of their validation folds."""
    for _ in range(2):  # the second run finds the copies written and records the same clips
        result = augment_cli("--dataset", "mine", "--clips", folder_corpus, "--out", tmp_path / "aug",
                             "--methods", "noise")
        assert result.exit_code == 0, result.output
        copies = load_manifest("aug", clips=tmp_path / "aug" / "clips.csv")
        assert {c.id: c.origin for c in copies} == {"a~noise": "a;b", "b~noise": "b;a"}   # c is a test clip
