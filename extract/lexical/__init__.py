"""Lexical features (importing this registers them).

    asr   transcripts by a HF speech recognition model (`asr:`), cached for the text features
    text  every hidden layer of a HF text encoder (`text:`, MiniLM and Chinese BERT presets)
"""
from . import asr, text  # noqa: F401
