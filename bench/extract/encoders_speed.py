"""Extraction speed of the whisper:, video: and llm: families on the demo corpus against a loop in the
style of MERBench's feature_extraction/ scripts, measured in the same run on the same clips with
RANDOM-INITIALISED models of real sizes (their features mean nothing: speed only).

(a) ours: `python -m extract --features <family>:<model>`: every layer (llm: the last four), pooled
    per clip, batched, written to the HDF5 cache;
(b) MERBench style (theirs in style only): one clip at a time, the model's output for one layer
    choice, one .npy per clip: Whisper runs encoder and a two-token decoder (their script keeps the
    decoder's last state), VideoMAE 16 uniformly sampled frames (last layer, mean over patches),
    the LLM one sentence at a time (sum of the last four layers, mean over the text's tokens).

    python bench/extract/encoders_speed.py --clips 16 [--out table.md]
"""
from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch
from click.testing import CliRunner

from extract.__main__ import main as extract_main
from extract.core import models
from extract.core.media import decode
from extract.stand_ins import _byte_bpe
from extract.visual.video import uniform_frames
from manifests.demo.corpus import generate


def build_models(root: Path) -> dict[str, Path]:
    """Whisper base (512 x 6 encoder layers), VideoMAE small (384 x 12, 16 x 224 px), a 512 x 8
    Llama (32k vocabulary): random weights, saved as a user's folders are."""
    from transformers import (LlamaConfig, LlamaForCausalLM, VideoMAEConfig, VideoMAEImageProcessor,
                              VideoMAEModel, WhisperConfig, WhisperFeatureExtractor, WhisperModel)

    torch.manual_seed(0)
    folders = {name: root / name for name in ("whisper", "videomae", "llama")}
    WhisperModel(WhisperConfig(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                               decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
                               vocab_size=51865)).eval().save_pretrained(folders["whisper"])
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folders["whisper"])
    VideoMAEModel(VideoMAEConfig(hidden_size=384, num_attention_heads=6, intermediate_size=1536)).eval() \
        .save_pretrained(folders["videomae"])
    VideoMAEImageProcessor().save_pretrained(folders["videomae"])
    tokenizer = _byte_bpe(bos="<s>")
    LlamaForCausalLM(LlamaConfig(hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8,
                                 vocab_size=32000, bos_token_id=tokenizer.bos_token_id)).eval() \
        .save_pretrained(folders["llama"])
    tokenizer.save_pretrained(folders["llama"])
    for folder in folders.values():
        models.mark_stand_in(folder, "random weights, for speed only")
    return folders


def run_ours(corpus: Path, feature: str, cache: Path) -> float:
    start = time.perf_counter()
    result = CliRunner().invoke(extract_main, ["--dataset", "demo", "--root", str(corpus), "--cache", str(cache),
                                               "--features", feature, "--quiet"])
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    return time.perf_counter() - start


def merbench_whisper(videos: list[Path], folder: Path, out: Path):
    """Per clip: audio, log-mel, encoder + two decoder tokens, the decoder's last state, one .npy."""
    from transformers import AutoModel, WhisperFeatureExtractor

    model, processor = AutoModel.from_pretrained(folder).eval(), WhisperFeatureExtractor.from_pretrained(folder)
    for video in videos:
        features = processor(decode(video).audio, sampling_rate=16000, return_tensors="pt").input_features
        start_tokens = torch.tensor([[1, 1]]) * model.config.decoder_start_token_id
        with torch.no_grad():
            state = model(features, decoder_input_ids=start_tokens).last_hidden_state[0]
        np.save(out / f"{video.stem}.npy", state.mean(0).numpy())


def merbench_videomae(videos: list[Path], folder: Path, out: Path):
    """Per clip: frames, 16 sampled uniformly, the last layer averaged over patches then tubelets."""
    from transformers import AutoImageProcessor, AutoModel

    model, processor = AutoModel.from_pretrained(folder).eval(), AutoImageProcessor.from_pretrained(folder)
    for video in videos:
        frames = decode(video, audio=False, fps=25).frames
        frames = frames[uniform_frames(len(frames), 16)]
        with torch.no_grad():
            state = model(processor(list(frames), return_tensors="pt")["pixel_values"]).last_hidden_state
        np.save(out / f"{video.stem}.npy", state[0].mean(0).numpy())


def merbench_llm(sentences: dict[str, str], folder: Path, out: Path):
    """Per sentence: tokens, every hidden state, the last four summed, the text's tokens averaged."""
    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    for name, sentence in sentences.items():
        with torch.no_grad():
            hidden = model(**tokenizer(sentence, return_tensors="pt"), output_hidden_states=True).hidden_states
        np.save(out / f"{name}.npy", torch.stack(hidden)[-4:].sum(0)[0, 1:].mean(0).numpy())


def timed(loop, *args) -> float:
    start = time.perf_counter()
    loop(*args)
    return time.perf_counter() - start


@click.command()
@click.option("--clips", default=16, show_default=True, type=click.IntRange(2))
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the table as markdown here.")
def main(clips, out):
    """Clips per second: ours against a MERBench-style loop, per family (same run, same clips)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "demo", clips)  # as `python -m manifests.demo --out DIR --clips N`
        folders = build_models(tmp / "models")
        videos = sorted((tmp / "demo").rglob("*.mp4"))
        with open(tmp / "demo" / "transcription.csv", newline="") as f:
            sentences = {row["name"]: row["sentence"] for row in csv.DictReader(f)}
        rows = []
        for family, loop, inputs in (("whisper", merbench_whisper, videos), ("video", merbench_videomae, videos),
                                     ("llm", merbench_llm, sentences)):
            folder = folders[{"whisper": "whisper", "video": "videomae", "llm": "llama"}[family]]
            ours = run_ours(tmp / "demo", f"{family}:{folder}", tmp / f"cache-{family}")
            (tmp / f"npy-{family}").mkdir()
            theirs = timed(loop, inputs, folder, tmp / f"npy-{family}")
            rows.append((family, ours, theirs))
    report = render(clips, rows)
    click.echo(report)
    if out:
        Path(out).write_text(report)


OUTPUTS = {"whisper": ("7 layers over the real frames, mean", "decoder's last state (2 tokens)"),
           "video": ("13 layers, mean over tokens", "last layer, mean over patches"),
           "llm": ("last 4 layers, mean and last token", "sum of last 4, mean over tokens")}


def render(clips, rows) -> str:
    lines = [f"demo clips: {clips}; models RANDOM-INITIALISED: Whisper base (512 x 6), VideoMAE small "
             f"(384 x 12, 16 x 224 px), Llama 512 x 8; torch threads: {torch.get_num_threads()}", "",
             "| family | ours: stored | ours s | MERBench-style: stored | theirs s | ratio |",
             "| --- | --- | --- | --- | --- | --- |"]
    for family, ours, theirs in rows:
        stored, their_output = OUTPUTS[family]
        lines.append(f"| {family} | {stored} | {ours:.1f} | {their_output} | {theirs:.1f} | {theirs / ours:.2f}x |")
    lines += ["", "ours: the whole command (model load, decode, batches, HDF5 write, merge); theirs: model load "
              "and the loop, decoding included"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
