"""Per-dataset default features: MER 2023's and MER 2024's are the layers their official extractors
keep (docs/fusion.md, "Choosing features")."""
from fuse.specs import resolve

CACHED = ["hubert-large", "chinese-macbert-large", "face-fer2013", "is10", "egemaps"]


def test_mer_defaults_are_the_layers_the_official_extractors_keep():
    # MER2023-Baseline: extract_transformers_embedding.py keeps HuBERT's last hidden state
    # (layer_ids = [-1]); extract_text_embedding_LZ.py sums the text encoder's last four
    assert resolve("mer2023", ["A", "L", "V"], {}, CACHED) == [
        ("A", "hubert-large@-1"), ("L", "chinese-macbert-large@-4:"), ("V", "face-fer2013")]
    # MERTools' MER 2024 extract_audio_huggingface.py sums HuBERT's last four
    assert resolve("mer2024", ["A", "L"], {}, CACHED) == [("A", "hubert-large@-4:"), ("L", "chinese-macbert-large@-4:")]
    # a name given on the command line still wins
    assert resolve("mer2023", None, {"A": ["hubert-large@18,19,20"]}, CACHED) == [("A", "hubert-large@18,19,20")]
