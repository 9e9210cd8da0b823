"""The modality of every extractor family stage 1 registers is known to stage 2's catalogue."""
import extract
from fuse.inputs.catalogue import FAMILIES, SEQUENCE_ONLY


def test_every_registered_extractor_and_kind_has_a_modality():
    missing = sorted((set(extract.REGISTRY) | set(extract.KINDS)) - set(FAMILIES))
    assert not missing, f"extractor families without a modality in fuse.inputs.catalogue.FAMILIES: {missing}"
    assert SEQUENCE_ONLY <= set(FAMILIES)
