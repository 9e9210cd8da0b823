"""Lexical features (importing this registers them).

    asr   transcripts by a HF speech recognition model (`asr:`), cached for the text features
    text  every hidden layer of a HF text encoder (`text:`, MiniLM and Chinese BERT presets)
    llm   chosen hidden layers of a decoder-only LLM (`llm:`, Llama and Qwen presets)
"""
from . import asr, llm, text  # noqa: F401
