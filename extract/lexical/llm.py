"""`llm:<hub id or folder>`: a decoder-only LLM (Llama, Qwen, Baichuan-style) as a text encoder.

    python -m extract --dataset mer2023 --features llm:Qwen/Qwen2.5-7B --device cuda --dtype bfloat16
    python -m extract --dataset mer2023 --features llama-2-13b --set llama-2-13b.layers=all
    python -m extract --dataset mine --features llm:baichuan-inc/Baichuan2-13B-Base \\
        --set llm:baichuan-inc/Baichuan2-13B-Base.trust_remote_code=true

Arrays per clip, over the hidden states chosen by `layers` (the `@` grammar of cache.specs; default
`-4:`, the last four, which MERBench sums; `all` for every one: a 40-layer x 5120 model stores
41 x 5120 per key, 420 KB per clip in float16):
    mean      [L', D] float16   mean over the transcript's tokens (special tokens such as BOS left out,
                                as MERBench leaves them out: an LLM's BOS state is an outlier)
    last      [L', D] float16   the transcript's last token (what a causal model has read it all at)
    n_tokens  int32             transcript tokens, after truncation to `max_length`
    truncated uint8             1 when the transcript was longer than `max_length` (clip flagged)
Layer indices in fuse/ (`@`) count within the stored L' (provenance `layers` names the model's).
A tokenizer without a pad token pads with its EOS (or UNK, BOS) token: right padding with an
attention mask, so a causal model's real tokens never see the padding and batches are exact.
Weights load in the compute dtype (`--dtype bfloat16`: half the memory), as MERBench halves LLMs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cache import config_fingerprint
from cache.specs import parse_selector
from manifests.transcripts import DEFAULT_LANGUAGE, LANGUAGES

from ..core import models
from ..core.base import KINDS, ClipError, Output, _config, option, register_presets
from .text import TextEncoderFeatures


@dataclass(frozen=True)
class LLMConfig:
    layers: str = "-4:"            # hidden states stored (0 = embeddings): "-4:", "all", "20,30,40"
    max_length: int = option(512, at_least=2)  # tokens per transcript; longer ones are cut
    transcripts: str = ""          # cached ASR feature of the same dataset, for clips without a transcript
    language: str = DEFAULT_LANGUAGE  # the transcript column read where the file gives several languages
    trust_remote_code: bool = False  # run the model folder's own code (Baichuan)
    store_dtype: str = "float16"   # float16 or float32 in the cache
    device: str = "auto"
    compute_dtype: str = "float32"  # --dtype: weights load in it (float16 on GPU, bfloat16)
    batch_tokens: int = 4096       # tokens per forward pass, summed over the batch

    def __post_init__(self):
        models.check_dtypes(self.store_dtype, self.compute_dtype)
        if self.language not in LANGUAGES:
            raise ValueError(f"language={self.language!r}: choose one of {', '.join(LANGUAGES)}")
        parse_selector(self.layers)  # a bad selector is refused with the options


class LLMFeatures(TextEncoderFeatures):
    """Hidden states of a decoder-only LM (`AutoModel`: the base model, no LM head), pooled per clip."""

    name, version, dims = "llm", "1", "[L', D] per clip (layers=-4: the last four)"
    description = "chosen hidden layers of a decoder-only LLM (hub id or folder): token mean and last token"
    Config = LLMConfig

    @property
    def fingerprint(self) -> str:  # a preset and `llm:<its source>` share their cache
        return config_fingerprint("llm", self.version, self.identity())

    @property
    def load_options(self) -> dict:
        return {"trust_remote_code": True} if self.config.trust_remote_code else {}

    def provenance(self) -> dict:
        self.setup_worker()  # the tokenizer says which token pads
        return super().provenance() | {
            "pooling": "mean over non-special tokens; last non-special token",
            "layers": self.layer_ids(), "pad_token": self._pad_note, "weights_dtype": self.config.compute_dtype}

    def layer_ids(self) -> list[int]:
        """The model's hidden-state indices stored, in order (0 = embeddings)."""
        from transformers import AutoConfig

        model_config = models.from_source(AutoConfig, self.source, "the config of model", **self.load_options)
        return parse_selector(self.config.layers).indices(model_config.num_hidden_layers + 1)

    # -- per clip, in workers -------------------------------------------------------------------
    def setup_worker(self):
        if self._tokenizer is None:
            super().setup_worker()
            self._pad_note = self._give_pad_token(self._tokenizer)

    def _give_pad_token(self, tokenizer) -> str:
        """Set a pad token where the tokenizer has none (Llama, Baichuan); says which it pads with.
        The padding is masked and comes after the real tokens, so any real token does."""
        if tokenizer.pad_token is not None:
            return f"{tokenizer.pad_token!r} (the tokenizer's own)"
        token = tokenizer.eos_token or tokenizer.unk_token or tokenizer.bos_token
        if token is None:
            raise ValueError(f"{self.source}: its tokenizer has no pad, EOS, UNK or BOS token to pad with")
        tokenizer.pad_token = token
        return f"{token!r} (the tokenizer has none)"

    def prepare(self, clip, media):
        payload = super().prepare(clip, media)
        if not payload["input_ids"]:
            raise ClipError("empty transcript: the tokenizer gives no token to encode")
        return payload

    # -- per batch, in the main process ---------------------------------------------------------
    def setup(self):
        from transformers import AutoModel

        self.setup_worker()
        self._device = models.resolve_device(self.config.device)
        models.autocast(self._device, self.config.compute_dtype)  # refuses float16 on CPU before any work
        self._layer_ids = self.layer_ids()
        # an LLM's weights in the --dtype asked: a 13B model in float32 would need 52 GB
        self._model, _ = models.load_pretrained(self.source, AutoModel, weights_dtype=self.config.compute_dtype,
                                                **self.load_options)
        self._model.to(self._device)
        self._special = sorted(self._tokenizer.all_special_ids)

    def extract_batch(self, clips, payloads) -> list[Output]:
        mean, last, n = self.forward([p["input_ids"] for p in payloads])
        return [self._pooled(*row, p) for *row, p in zip(mean, last, n, payloads)]

    def forward(self, token_ids: list[list[int]]):
        """Right-padded batch -> pooled chosen layers (mean, last: float32 [B, L', D]; tokens [B])."""
        import torch

        batch = self._tokenizer.pad({"input_ids": token_ids}, return_tensors="pt").to(self._device)
        with torch.inference_mode(), models.autocast(self._device, self.config.compute_dtype):
            out = self._model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              output_hidden_states=True)
        hidden = torch.stack([out.hidden_states[i] for i in self._layer_ids], 1).float()  # [B, L', T, D]
        mask = batch["attention_mask"].bool()
        content = mask & ~torch.isin(batch["input_ids"], torch.tensor(self._special, device=self._device))
        content = torch.where(content.any(1, keepdim=True), content, mask)  # only special tokens: pool those
        weights = content.float()[:, None, :, None]
        mean = (hidden * weights).sum(2) / weights.sum(2)
        positions = torch.arange(mask.shape[1], device=self._device)
        last_position = torch.where(content, positions, -1).amax(1)
        last = hidden[torch.arange(len(token_ids), device=self._device), :, last_position]
        return mean.cpu().numpy(), last.cpu().numpy(), mask.sum(1).cpu().numpy()

    def _pooled(self, mean, last, n, payload) -> Output:
        dtype = np.dtype(self.config.store_dtype)
        arrays = {"mean": mean.astype(dtype), "last": last.astype(dtype), "n_tokens": np.int32(n),
                  "truncated": np.uint8(payload["n_full"] > n)}
        flags = ["empty transcript"] * payload["empty"]
        if payload["n_full"] > n:
            flags.append(f"transcript truncated to {n} of {payload['n_full']} tokens")
        return Output(arrays=arrays, flag="; ".join(flags))


def llm_encoder(argument: str, options: dict[str, str]) -> LLMFeatures:
    """chosen hidden layers (default the last four) of a decoder-only LLM: token mean and last token"""
    return LLMFeatures(_config(LLMConfig, options, f"llm:{argument}"), source=argument)


KINDS["llm"] = llm_encoder

PRESETS = {
    "llama-2-13b": {"source": "meta-llama/Llama-2-13b-hf", "dims": "4 x 5120 per clip (of 41)",
                    "description": "Llama 2 13B base (as MERBench), last four layers (layers=all: 41)"},
    "qwen2.5-7b": {"source": "Qwen/Qwen2.5-7B", "dims": "4 x 3584 per clip (of 29)",
                   "description": "Qwen2.5 7B base (Chinese and English), last four layers (layers=all: 29)"},
}
register_presets(LLMFeatures, PRESETS, globals())
