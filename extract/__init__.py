"""Stage 1: decode each clip once and cache acoustic, lexical and visual features in HDF5.

    python -m extract --list
    python -m extract --dataset demo --features is09,is10,egemaps,mfcc,e2el-spectrogram
"""
from . import acoustic  # noqa: F401  (registers the extractors)
from .base import KINDS, REGISTRY, Extractor, Output, build, register
from .media import Media, MediaError, decode

__all__ = ["Extractor", "Output", "REGISTRY", "KINDS", "build", "register", "decode", "Media", "MediaError"]
