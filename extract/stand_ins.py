"""Build the tiny random-initialised stand-in models: `python -m extract.stand_ins --out data/models`.

They load through the same code path as hub models (`from_pretrained` on a folder), so tests and
the demo run without a model hub. They are NOT pretrained: each folder holds a STAND_IN note, and
provenance of every feature they produce says so.
"""
from __future__ import annotations

from pathlib import Path

import click

from . import load_all_extractors
from .models import STAND_IN_NOTE, STAND_INS


def build_stand_ins(out, only=()) -> list[Path]:
    """Build every registered stand-in (or those in `only`) under `out`; returns their folders."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    load_all_extractors()
    unknown = set(only) - set(STAND_INS)
    if unknown:
        raise click.BadParameter(f"unknown stand-ins {sorted(unknown)}; known: {sorted(STAND_INS)}")
    folders = []
    for name, builder in sorted(STAND_INS.items()):
        if only and name not in only:
            continue
        folder = Path(out) / name
        if not (folder / "STAND_IN").exists():
            folder.mkdir(parents=True, exist_ok=True)
            builder(folder)
        folders.append(folder)
    return folders


@click.command()
@click.option("--out", default="data/models", show_default=True, type=click.Path(file_okay=False))
@click.option("--only", multiple=True, help="Build only these stand-ins.")
def main(out, only):
    """Build the tiny random-initialised stand-in models (for tests and the demo corpus)."""
    for folder in build_stand_ins(out, only):
        click.echo(f"{folder}: {STAND_IN_NOTE}")


if __name__ == "__main__":
    main()
