"""The synthesizer of the built-in demo corpus (a synthetic corpus in the MER 2023 release layout).

    python -m manifests.demo --out data/demo --clips 96 [--seed 0] [--force]

corpus: the generator (`generate`); design: what each clip says and shows; faces, expressions:
the animated face; speech: espeak-ng synthesis (files are written by manifests.mediafile).
Reading a written corpus needs none of this: `load_manifest("demo", root=...)` (mer2023 layout).
"""
from .corpus import CLASSES, VERSION, generate

__all__ = ["CLASSES", "VERSION", "generate"]
