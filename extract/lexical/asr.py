"""Transcripts by automatic speech recognition, cached so text features never need ASR again.

    python -m extract --dataset mine --clips clips.csv --features asr:openai/whisper-large-v3 --set asr:openai/whisper-large-v3.language=zh
    python -m extract --dataset mine --clips clips.csv --features text-minilm --set text-minilm.transcripts=asr:openai/whisper-large-v3

`asr:<hub id or folder>` runs a HF speech recognition model: CTC models (wav2vec2 / HuBERT fine-tuned
with a CTC head) decode greedily; encoder-decoder models (Whisper) generate. It caches per clip
    transcript  str   ('' for a clip without speech: silent or shorter than 0.1 s, flagged)
with the model's identity in the provenance. Text extractors read it with `transcripts=<feature>`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cache import non_default_config

from ..core import models
from ..core.base import KINDS, MODEL_RUNTIME, BatchExtractor, ClipError, Output, _config, cache_name
from ..core.media import SAMPLE_RATE, SILENCE_PEAK

MIN_SPEECH_SAMPLES = SAMPLE_RATE // 10  # below 0.1 s there is no word to recognise
WHISPER_SECONDS = 30                    # Whisper's input window: longer clips are cut (flagged)


@dataclass(frozen=True)
class AsrConfig:
    language: str = ""             # Whisper: language code ("zh", "en"); '' lets Whisper detect it
    max_new_tokens: int = 200      # Whisper: longest transcript generated
    device: str = "auto"
    compute_dtype: str = "float32"  # --dtype: float32, float16 (GPU) or bfloat16 (autocast)
    batch_seconds: float = 60.0    # audio per forward pass, summed over the batch

    def __post_init__(self):
        if self.compute_dtype not in models.DTYPES:
            raise ValueError(f"compute_dtype {self.compute_dtype!r}: choose one of {models.DTYPES}")


class SpeechRecognition(BatchExtractor):
    """Transcript of each clip by a HF automatic-speech-recognition model (CTC or Whisper)."""

    name, version, dims = "asr", "1", "transcript (str)"
    description = "transcripts by a HF speech recognition model (hub id or folder)"
    Config = AsrConfig
    runtime_options = MODEL_RUNTIME
    primary = "transcript"

    def __init__(self, config=None, source: str = ""):
        super().__init__(config)
        self.source = source
        self._model = self._processor = None

    def identity(self) -> dict:
        return super().identity() | {"model": models.model_identity(self.source)}

    def provenance(self) -> dict:
        return super().provenance() | {"model": models.model_identity(self.source), "weights_dtype": models.WEIGHTS_DTYPE,
                                       "decoding": "greedy CTC, or Whisper generate (greedy)"}

    def setup(self):
        from transformers import AutoConfig, AutoModelForCTC, AutoModelForSpeechSeq2Seq, AutoProcessor

        self._device = models.resolve_device(self.config.device)
        models.autocast(self._device, self.config.compute_dtype)  # refuses float16 on CPU before any work
        seq2seq = models.from_source(AutoConfig, self.source, "the config of model").is_encoder_decoder
        whisper_only = {k for k in ("language", "max_new_tokens") if k in non_default_config(self.config)}
        if whisper_only and not seq2seq:  # an option that cannot take effect is refused, not ignored
            raise ValueError(f"{', '.join(sorted(whisper_only))}: Whisper-style models only, "
                             f"and {self.source} is a CTC model")
        model_cls = AutoModelForSpeechSeq2Seq if seq2seq else AutoModelForCTC
        self._model, self._processor = models.load_pretrained(self.source, model_cls, AutoProcessor)
        self._model.to(self._device)

    def extract_batch(self, clips, payloads) -> list[Output]:
        """16 kHz mono float32 audio per clip -> Output(arrays={"transcript": 0-d str array})."""
        speech = [i for i, audio in enumerate(payloads) if has_speech(audio)]
        texts = [""] * len(payloads)
        for i, text in zip(speech, self.transcribe([payloads[i] for i in speech])):
            texts[i] = text.strip()
        return [self._output(text, audio) for text, audio in zip(texts, payloads)]

    def _output(self, text: str, audio: np.ndarray) -> Output:
        flags = [] if text else ["empty transcript (no speech)" if not has_speech(audio) else "empty transcript"]
        if self._model.config.is_encoder_decoder and len(audio) > WHISPER_SECONDS * SAMPLE_RATE:
            flags.append(f"only the first {WHISPER_SECONDS} s transcribed")
        return Output(arrays={"transcript": np.array(text, dtype=object)}, flag="; ".join(flags))

    def transcribe(self, audios: list[np.ndarray]) -> list[str]:
        if not audios:
            return []
        if self._model.config.is_encoder_decoder:
            return self._generate(audios)
        if getattr(self._model.config, "feat_extract_norm", "layer") == "group":
            # group norm normalises over the padding too: one clip per pass stays exact
            return [text for audio in audios for text in self._ctc([audio])]
        return self._ctc(audios)

    def _ctc(self, audios: list[np.ndarray]) -> list[str]:
        import torch

        batch = self._processor(audios, sampling_rate=SAMPLE_RATE, padding=True, return_attention_mask=True,
                                return_tensors="pt").to(self._device)
        with torch.inference_mode(), models.autocast(self._device, self.config.compute_dtype):
            logits = self._model(batch["input_values"], attention_mask=batch["attention_mask"]).logits
        frames = self._model._get_feat_extract_output_lengths(batch["attention_mask"].sum(-1))
        best = logits.argmax(-1).cpu()
        return [self._processor.decode(best[i, :int(n)], skip_special_tokens=True) for i, n in enumerate(frames)]

    def _generate(self, audios: list[np.ndarray]) -> list[str]:
        import torch

        batch = self._processor(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt").to(self._device)
        options = {"language": self.config.language, "task": "transcribe"} if self.config.language else {}
        with torch.inference_mode(), models.autocast(self._device, self.config.compute_dtype):
            ids = self._model.generate(batch["input_features"], max_new_tokens=self.config.max_new_tokens,
                                       **options)
        return self._processor.batch_decode(ids, skip_special_tokens=True)


def has_speech(audio: np.ndarray) -> bool:
    """False for audio too short or too quiet to hold a word (as extract.core.media calls it silent)."""
    return len(audio) >= MIN_SPEECH_SAMPLES and float(np.max(np.abs(audio), initial=0.0)) >= SILENCE_PEAK


def speech_recognition(argument: str, options: dict[str, str]) -> SpeechRecognition:
    """transcripts by a HF speech recognition model (Whisper, wav2vec2-CTC), cached as str per clip"""
    return SpeechRecognition(_config(AsrConfig, options, f"asr:{argument}"), source=argument)


KINDS["asr"] = speech_recognition


class TranscriptSource:
    """Transcripts for clips the manifest gives none, from a cached ASR feature of the same dataset."""

    def __init__(self, feature: str = ""):
        self.feature = feature
        self.texts: dict[str, str] | None = None
        self.failed: dict[str, str] = {}
        self.fingerprint: str | None = None

    def load(self, dataset: str, root):
        if not self.feature:
            return
        from cache import open_feature

        try:  # `asr:<folder>` was cached under the folder's name, as the CLI names it
            reader = open_feature(dataset, cache_name(self.feature), root)
        except FileNotFoundError as err:
            raise ValueError(f"transcripts={self.feature}: {err}; transcribe first with "
                             f"`python -m extract --dataset {dataset} --features {self.feature}`") from None
        with reader:
            if "transcript" not in reader.keys:
                raise ValueError(f"transcripts={self.feature}: that cached feature holds no transcripts")
            ok = set(reader.ok_ids())
            self.texts = {cid: text for cid, text in zip(reader.ids, reader.array("transcript")) if cid in ok}
            self.failed, self.fingerprint = reader.failures(), reader.attrs["fingerprint"]

    def of(self, clip_id: str) -> str:
        """The cached transcript of a clip; ClipError (the clip's failure reason) when there is none."""
        if not self.feature:
            raise ClipError("no transcript in the manifest (give one, or transcribe with "
                             "asr:<model> and set the text feature's option transcripts=asr:<model>)")
        if self.texts is None:
            raise RuntimeError(f"transcripts={self.feature} not loaded: call attach_cache(dataset, root)")
        if clip_id in self.failed:
            raise ClipError(f"no transcript: {self.feature} failed on this clip ({self.failed[clip_id]})")
        if clip_id not in self.texts:
            raise ClipError(f"no transcript: clip not in the cached {self.feature}")
        return self.texts[clip_id]

    def identity(self) -> dict:
        return {"transcripts_fingerprint": self.fingerprint} if self.fingerprint else {}

    def provenance(self) -> dict:
        return {"manifest": "clips with a transcript in the manifest use it",
                "asr": {"feature": self.feature, "fingerprint": self.fingerprint} if self.feature else None}
