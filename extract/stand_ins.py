"""Build the tiny random-initialised stand-in models: `python -m extract.stand_ins --out data/models`.

They load through the same code path as hub models (`from_pretrained` on a folder), so tests and
the demo run without a model hub. They are NOT pretrained: each folder holds a STAND_IN note, and
provenance of every feature they produce says so. Every builder of every model family lives here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from .core.media import SAMPLE_RATE
from .core.models import STAND_IN_NOTE, mark_stand_in

# stand-in name -> builder(folder) that saves a tiny random-initialised model with save_pretrained
STAND_INS: dict[str, Callable[[Path], None]] = {}


def stand_in(name: str):
    def register(builder):
        STAND_INS[name] = builder
        return builder
    return register


# -- speech encoders (ssl:) ---------------------------------------------------------------------------
TINY_SPEECH = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _save_speech(folder, model_cls, config, description, return_attention_mask):
    import torch
    from transformers import Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    model_cls(config).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True,
                             return_attention_mask=return_attention_mask).save_pretrained(folder)
    mark_stand_in(folder, description)


@stand_in("tiny-hubert")
def tiny_hubert(folder):
    """Layer-norm front end, like hubert-large: exact when padded."""
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(**TINY_SPEECH, feat_extract_norm="layer", do_stable_layer_norm=True)
    _save_speech(folder, HubertModel, config, "tiny HuBERT (layer-norm front end, 32 x 2 layers)", True)


@stand_in("tiny-wav2vec2")
def tiny_wav2vec2(folder):
    """Group-norm front end, like hubert-base and wav2vec2-base: not exact when padded."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(**TINY_SPEECH, feat_extract_norm="group", do_stable_layer_norm=False)
    _save_speech(folder, Wav2Vec2Model, config, "tiny wav2vec 2.0 (group-norm front end, 32 x 2 layers)", False)


@stand_in("tiny-wavlm")
def tiny_wavlm(folder):
    """Layer-norm WavLM (gated relative position bias), like wavlm-large."""
    from transformers import WavLMConfig, WavLMModel

    config = WavLMConfig(**TINY_SPEECH, feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=32,
                         max_bucket_distance=100)
    _save_speech(folder, WavLMModel, config, "tiny WavLM (layer-norm front end, 32 x 2 layers)", True)


@stand_in("tiny-data2vec-audio")
def tiny_data2vec_audio(folder):
    """data2vec-audio: layer-norm CNN, but stacked positional convolutions that read the padding."""
    from transformers import Data2VecAudioConfig, Data2VecAudioModel

    config = Data2VecAudioConfig(**TINY_SPEECH | {"num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 5})
    _save_speech(folder, Data2VecAudioModel, config, "tiny data2vec-audio (32 x 2 layers)", True)


# -- speech recognition (asr:) ------------------------------------------------------------------------
@stand_in("tiny-asr-ctc")
def tiny_asr_ctc(folder):
    """A wav2vec2-CTC with 2 layers of width 32 over 26 letters: its transcripts are random letters."""
    import json

    import torch
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor,
                              Wav2Vec2ForCTC, Wav2Vec2Processor)

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    vocab |= {chr(c): 5 + i for i, c in enumerate(range(ord("a"), ord("z") + 1))}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=SAMPLE_RATE, return_attention_mask=True)
    torch.manual_seed(0)
    config = Wav2Vec2Config(vocab_size=len(vocab), pad_token_id=0, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            feat_extract_norm="layer", do_stable_layer_norm=True)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    mark_stand_in(folder, "tiny-asr-ctc: wav2vec2-CTC, 2 layers, letters a-z; transcripts are random")


# -- vision encoders (vision:) ------------------------------------------------------------------------
@stand_in("tiny-vit")
def tiny_vit(folder: Path):
    """A 2-layer 32-d ViT on 32 px images, random weights (a stand-in, NOT pretrained)."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64)
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    mark_stand_in(folder, f"tiny-vit: ViT 2 layers, hidden 32, random weights ({STAND_IN_NOTE})")


# -- Whisper encoders (whisper:) ---------------------------------------------------------------------
@stand_in("tiny-whisper")
def tiny_whisper(folder: Path):
    """A Whisper of width 32 (2 encoder layers, 1 decoder layer) on 80 log-mel bins, 30 s input."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                           vocab_size=64, max_target_positions=32, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(config).eval().save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    mark_stand_in(folder, "tiny-whisper: Whisper encoder 2 layers, hidden 32, 80 mel bins")


# -- clip-level video encoders (video:) ---------------------------------------------------------------
@stand_in("tiny-videomae")
def tiny_videomae(folder: Path):
    """A VideoMAE of width 32 (2 layers) on 16 frames of 32 px, tubelets of 2 frames."""
    import torch
    from transformers import VideoMAEConfig, VideoMAEImageProcessor, VideoMAEModel

    torch.manual_seed(0)
    config = VideoMAEConfig(image_size=32, patch_size=8, num_frames=16, tubelet_size=2, hidden_size=32,
                            num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    VideoMAEModel(config).eval().save_pretrained(folder)
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    mark_stand_in(folder, "tiny-videomae: VideoMAE 2 layers, hidden 32, 16 frames of 32 px")


# -- decoder-only LLM text encoders (llm:) ------------------------------------------------------------
LLM_TEXTS = ["I can't believe it, this is wonderful news", "no.", "我今天真的很高兴", "what a day",
             "Je suis très content, but I am also tired", "oh no, not again", "really? that is amazing"]


def _byte_bpe(bos: str | None):
    """A byte-level BPE tokenizer of 320 tokens trained on LLM_TEXTS, with no pad token of its own
    (as Llama's and Baichuan's); with `bos`, every text starts with it (Llama), without, none does
    (Qwen2, whose tokenizer class adds `<|endoftext|>` as its pad token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = [bos or "<|begin|>", "<|end|>", "<|endoftext|>"]
    tokenizer.train_from_iterator(LLM_TEXTS, trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tokenizer.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token="<|end|>")


def _save_llm(folder, model_cls, config, tokenizer, description):
    import torch

    torch.manual_seed(0)
    model_cls(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    mark_stand_in(folder, description)


TINY_LLM = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256)


@stand_in("tiny-llama")
def tiny_llama(folder: Path):
    """A Llama causal LM of width 32 (3 layers); its tokenizer adds a BOS token and has no pad token."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _byte_bpe(bos="<s>")
    config = LlamaConfig(**TINY_LLM, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=None)
    _save_llm(folder, LlamaForCausalLM, config, tokenizer, "tiny-llama: Llama 3 layers, hidden 32, no pad token")


@stand_in("tiny-qwen2")
def tiny_qwen2(folder: Path):
    """A Qwen2 causal LM of width 32 (3 layers); its tokenizer adds no BOS token and has no pad token."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _byte_bpe(bos=None)
    config = Qwen2Config(**TINY_LLM, vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=None)
    _save_llm(folder, Qwen2ForCausalLM, config, tokenizer, "tiny-qwen2: Qwen2 3 layers, hidden 32, no pad token")


def build_stand_ins(out, only=()) -> list[Path]:
    """Build every stand-in (or those in `only`) under `out`; returns their folders."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    unknown = set(only) - set(STAND_INS)
    if unknown:
        raise click.BadParameter(f"unknown stand-ins {sorted(unknown)}; known: {sorted(STAND_INS)}")
    folders = []
    for name, builder in sorted(STAND_INS.items()):
        if only and name not in only:
            continue
        folder = Path(out) / name
        if not (folder / "STAND_IN").exists():
            folder.mkdir(parents=True, exist_ok=True)
            builder(folder)
        folders.append(folder)
    return folders


@click.command()
@click.option("--out", default="data/models", show_default=True, type=click.Path(file_okay=False))
@click.option("--only", multiple=True, help="Build only these stand-ins.")
def main(out, only):
    """Build the tiny random-initialised stand-in models (for tests and the demo corpus)."""
    for folder in build_stand_ins(out, only):
        click.echo(f"{folder}: {STAND_IN_NOTE}")


if __name__ == "__main__":
    main()
