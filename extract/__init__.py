"""Stage 1: decode each clip once and cache acoustic, lexical and visual features in HDF5.

    python -m extract --list
    python -m extract --dataset demo --features is09,is10,egemaps,mfcc,e2el-spectrogram

    core/      Extractor base and registry, decoding, model loading, the run over clips
    acoustic/  openSMILE functionals, librosa MFCC / log-mel / E2E-L spectrogram pieces
    speech/    every hidden layer of a HF speech encoder (`ssl:`) or Whisper encoder (`whisper:`)
    lexical/   ASR transcripts (`asr:`), every hidden layer of a HF text encoder (`text:`), LLM layers (`llm:`)
    visual/    dlib face track -> face crops, dlib and FER2013 embeddings, HF vision encoders (`vision:`),
               clip-level video encoders (`video:`)
    stand_ins  the tiny random-initialised stand-in models (`python -m extract.stand_ins`)
"""
from .core.base import KINDS, REGISTRY, BatchExtractor, ClipError, Extractor, Output, build, register
from .core.media import Media, MediaError, decode

# importing each family registers its extractors
from . import acoustic, lexical, speech, visual  # noqa: F401
from .visual import fer2013_predict  # public: embed your own face crops

__all__ = ["Extractor", "BatchExtractor", "Output", "ClipError", "REGISTRY", "KINDS", "build", "register",
           "decode", "Media", "MediaError", "fer2013_predict"]
