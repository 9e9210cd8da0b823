"""Speech-encoder extraction speed: our every-layer pass against a loop in the style of the official
MER 2023 baseline, measured in the same run on the same clips with a base-size RANDOM-INITIALISED
HuBERT (768 x 12 layers, group-norm front end like chinese-hubert-base; its features mean nothing).

(a) ours: `python -m extract --features ssl:<model>` storing all 13 layers (mean per clip, float16);
(b) baseline style: one clip at a time, one layer choice per pass, one .npy per clip, for four choices
    (last layer, layers 9 and 10 = the "18-20 of 24" middle layers at base depth, sum of the last four).
Also the bare model forward time (processor + model, nothing else), to state our pipeline overhead.

    python bench/extract/speech_models_speed.py --clips 16 [--out table.md]
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np
import soundfile
import torch
from click.testing import CliRunner

from cache import open_feature
from extract.__main__ import main as extract_main
from extract.core import models
from extract.speech.encoders import SpeechModelFeatures
from manifests.mediafile import write_clip
from manifests.demo.speech import speech_at
from manifests.folder import write_table

CHOICES = {"last": [12], "layer9": [9], "layer10": [10], "sum-last4": [9, 10, 11, 12]}
TIMES = {"setup": 0.0, "forward": 0.0}


def build_base_model(folder: Path):
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    HubertModel(HubertConfig()).eval().save_pretrained(folder)  # defaults: 768 x 12, group norm
    Wav2Vec2FeatureExtractor(return_attention_mask=False).save_pretrained(folder)
    models.mark_stand_in(folder, "base-size HuBERT (768 x 12), random weights, for speed only")


def build_corpus(folder: Path, n_clips: int) -> tuple[Path, float]:
    """n_clips wav clips of 2-7 s of synthesized speech (MER 2023 clips are mostly 2-10 s)."""
    voice = np.concatenate([speech_at(16000), speech_at(16000, "Why did you do that to me", pitch=70)])
    folder.mkdir(parents=True, exist_ok=True)
    rows, total = [], 0.0
    for i in range(n_clips):
        seconds = 2.0 + 5.0 * i / max(1, n_clips - 1)
        audio = np.resize(voice, int(seconds * 16000)) * 0.6
        write_clip(folder / f"clip{i:03d}.wav", audio)
        rows.append(dict(id=f"clip{i:03d}", path=f"clip{i:03d}.wav", split="train"))
        total += len(audio) / 16000
    return write_table(folder / "clips.csv", rows), total


def instrument():
    """Time model loading and the model's own forward calls inside our pipeline."""
    setup = SpeechModelFeatures.setup

    def timed_setup(self):
        start = time.perf_counter()
        setup(self)
        TIMES["setup"] += time.perf_counter() - start
        forward = self._model.forward

        def timed_forward(*args, **kwargs):
            start = time.perf_counter()
            out = forward(*args, **kwargs)
            TIMES["forward"] += time.perf_counter() - start
            return out

        self._model.forward = timed_forward

    SpeechModelFeatures.setup = timed_setup


def run_ours(table: Path, model: Path, cache: Path) -> float:
    start = time.perf_counter()
    result = CliRunner().invoke(extract_main, ["--dataset", "bench", "--clips", str(table), "--cache", str(cache),
                                               "--features", f"hubert=ssl:{model}", "--quiet"])
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    return time.perf_counter() - start


def run_baseline_style(wavs: list[Path], model_dir: Path, out: Path) -> float:
    """The official baseline's shape: per layer choice, load the model, then per clip read the wav,
    run the model, keep that choice, average over time, np.save one file."""
    from transformers import AutoFeatureExtractor, AutoModel

    start = time.perf_counter()
    for choice, layers in CHOICES.items():
        model = AutoModel.from_pretrained(model_dir).eval()
        processor = AutoFeatureExtractor.from_pretrained(model_dir)
        (out / choice).mkdir(parents=True)
        for wav in wavs:
            audio, rate = soundfile.read(wav, dtype="float32")
            values = processor(audio, sampling_rate=rate, return_tensors="pt").input_values
            with torch.no_grad():
                hidden = model(values, output_hidden_states=True).hidden_states
            feature = torch.stack([hidden[i] for i in layers]).sum(0)[0].mean(0)
            np.save(out / choice / f"{wav.stem}.npy", feature.numpy())
    return time.perf_counter() - start


def bare_forward(wavs: list[Path], model_dir: Path) -> float:
    from transformers import AutoFeatureExtractor, AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()
    processor = AutoFeatureExtractor.from_pretrained(model_dir)
    inputs = [processor(soundfile.read(w, dtype="float32")[0], sampling_rate=16000, return_tensors="pt").input_values
              for w in wavs]
    start = time.perf_counter()
    with torch.inference_mode():
        for values in inputs:
            model(values, output_hidden_states=True)
    return time.perf_counter() - start


def check_same_outputs(cache: Path, baseline: Path) -> float:
    """Largest difference between a baseline .npy and the same choice derived from our cache."""
    feat = open_feature("bench", "hubert", cache)
    means = feat.array().astype(np.float32)  # [N, 13, 768]
    worst = 0.0
    for choice, layers in CHOICES.items():
        for row, cid in enumerate(feat.ids):
            ours = means[row, layers].sum(0)
            theirs = np.load(baseline / choice / f"{cid}.npy")
            worst = max(worst, float(np.abs(ours - theirs).max() / (np.abs(theirs).max() + 1e-12)))
    return worst


@click.command()
@click.option("--clips", default=16, show_default=True, type=click.IntRange(2))
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the table as markdown here.")
def main(clips, out):
    """Seconds of audio per second: our every-layer pass vs a baseline-style loop (same run)."""
    instrument()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_base_model(tmp / "model")
        table, audio = build_corpus(tmp / "corpus", clips)
        wavs = sorted((tmp / "corpus").glob("*.wav"))
        ours = run_ours(table, tmp / "model", tmp / "cache")
        baseline = run_baseline_style(wavs, tmp / "model", tmp / "npy")
        forward = bare_forward(wavs, tmp / "model")
        error = check_same_outputs(tmp / "cache", tmp / "npy")
        cache_bytes = open_feature("bench", "hubert", tmp / "cache").size_on_disk()
        npy_bytes = sum(p.stat().st_size for p in (tmp / "npy").rglob("*.npy"))
    report = render(clips, audio, ours, baseline, forward, error, cache_bytes, npy_bytes)
    click.echo(report)
    if out:
        Path(out).write_text(report)


def render(clips, audio, ours, baseline, forward, error, cache_bytes, npy_bytes) -> str:
    steady = ours - TIMES["setup"]
    overhead = (steady - TIMES["forward"]) / TIMES["forward"]
    return "\n".join([
        f"clips: {clips}, audio: {audio:.1f} s; model: base-size HuBERT 768 x 12, RANDOM-INITIALISED "
        f"(group norm, so our batches hold equal lengths only: here one clip per forward); torch threads: "
        f"{torch.get_num_threads()}",
        "",
        "| run | outputs | wall s | audio s / s |",
        "| --- | --- | --- | --- |",
        f"| (a) ours, `ssl:` all 13 layers, one pass | every layer, mean, float16 | {ours:.1f} | {audio / ours:.1f} |",
        f"| (b) baseline-style loop, 4 passes | last, layer 9, layer 10, sum of last 4 | {baseline:.1f} | "
        f"{audio / baseline:.1f} |",
        f"| bare model forward, one pass (reference) | - | {forward:.1f} | {audio / forward:.1f} |",
        "",
        f"- ratio (b)/(a), same outputs: {baseline / ours:.2f}x",
        f"- our model load: {TIMES['setup']:.1f} s; model forward inside our run: {TIMES['forward']:.1f} s; "
        f"everything else (manifest, decode, processor, pooling, HDF5 write, merge): {steady - TIMES['forward']:.2f} s "
        f"= {100 * overhead:.1f}% of forward time",
        f"- cache size per clip: ours {cache_bytes / clips / 1024:.1f} KiB (13 x 768 float16 in HDF5), baseline "
        f"{npy_bytes / clips / 1024:.1f} KiB (4 .npy float32 files)",
        f"- largest relative difference between a baseline .npy and the same choice from our cache: {error:.1e} "
        "(float16 storage)",
    ])


if __name__ == "__main__":
    main()
