"""Stage 1: decode each clip once and cache acoustic, lexical and visual features in HDF5.

    python -m extract --list
    python -m extract --dataset demo --features is09,is10,egemaps,mfcc,e2el-spectrogram
"""
import importlib
from pathlib import Path

from .base import KINDS, REGISTRY, BatchExtractor, ClipError, Extractor, Output, build, register
from .media import Media, MediaError, decode

# modules that register extractors when imported
EXTRACTOR_MODULES = ("acoustic", "speech_models", "visual", "lexical")

__all__ = ["Extractor", "BatchExtractor", "Output", "ClipError", "REGISTRY", "KINDS", "build", "register",
           "decode", "Media", "MediaError", "load_all_extractors", "fer2013_predict"]


def load_all_extractors():
    here = Path(__file__).parent
    for name in EXTRACTOR_MODULES:
        if (here / f"{name}.py").exists():  # families land one by one
            importlib.import_module(f"{__name__}.{name}")


load_all_extractors()

from .fer2013 import fer2013_predict  # noqa: E402  (public: embed your own face crops)
