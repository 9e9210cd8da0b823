"""Stage 2 command line: train a fusion model on cached features, MER 2023 protocol.

    python -m fuse.train --modalities A,V
    python -m fuse.train --dataset mer2023 --features "A=hubert-large@18,19,20;V=face-fer2013" \
        --model afg --structure all --decoder jdev --seeds 3
"""
from __future__ import annotations

import sys

import click

from cache.cli import Refused, cache_options, corpus_options, damage_named, device_option, ends_cleanly
from .inputs.specs import SpecError, parse_features, parse_modalities
from .results.runs import run_training
from .training.memory import parse_size
from .training.request import TrainRequest


def _widths(text, option):
    try:
        widths = tuple(int(x) for x in text.split(",") if x.strip()) if text else None
    except ValueError:
        widths = ()
    if widths is not None and (not widths or min(widths) < 1):
        raise click.BadParameter(f"{text!r}: expected positive widths like 256,128", param_hint=option)
    return widths


def _size(ctx, param, text):
    """--max-memory '6G' -> bytes (None when not given)."""
    try:
        return parse_size(text) if text is not None else None
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@cache_options()
@click.option("--modalities", help="Any of A (acoustic), L or T (lexical), V (visual), e.g. A,V.")
@click.option("--features", "features_text", help='Per modality, e.g. "A=hubert-large@18,19,20+is10;V=face-fer2013".')
@click.option("--model", type=click.Choice(["attention", "mlp", "afg", "lgbm", "e2el", "crossbert",
                                            "crossbert-interaction", "coattention"]),
              default="attention", show_default=True, help="Sequence models (e2el, crossbert*, coattention): "
              "docs/sequence-models.md.")
@click.option("--decoder", type=click.Choice(["baseline", "jdev"]), help="Emotion/valence heads [baseline].")
@click.option("--loss", type=click.Choice(["sum", "uncertainty"]), help="Task weighting [afg: uncertainty, else sum].")
@click.option("--structure", type=click.Choice(["1", "2", "3", "all"]), help="AFG fusion structure [1].")
@click.option("--attention-scores", type=click.Choice(["softmax", "raw"]), help="attention: paper (softmax) or official code (raw).")
@click.option("--layer-weights", is_flag=True, default=None, help="Learn softmax weights over the layers of per-layer features.")
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True)
@click.option("--epochs", type=click.IntRange(1), help="Epochs per fold [100; e2el, coattention 50; crossbert 80].")
@click.option("--patience", type=click.IntRange(0), help="Early stopping: a fold's best epoch is chosen among the "
              "epochs before N epochs without a better validation score [0: never; e2el 3, as SAMSEMO's run.py].")
@click.option("--seeds", type=click.IntRange(1), default=1, show_default=True, help="Seeds 0..N-1, reported as mean +- std.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate [1e-3; lgbm 0.1; e2el 1e-4].")
@click.option("--weight-decay", type=click.FloatRange(min=0), help="Adam L2 weight decay [1e-5; e2el 1e-6; coattention 1e-3].")
@click.option("--hidden", help="Hidden layer widths [256,128; afg: the aligned width 128; coattention 128; crossbert: none].")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), help="Dropout rate [0.3; sequence models 0.1].")
@click.option("--batch-size", type=click.IntRange(1), help="Clips per batch [32; e2el 16; crossbert 24].")
@click.option("--channels", help="CNN channels: e2el stem then one VGG block each [64,64,64,128,256,512]; "
              "crossbert 3D convolutions [16]; coattention log-mel Conv-BN-ReLU blocks [16,32].")
@click.option("--width", type=click.IntRange(1), help="Sequence models: model width [e2el 64; crossbert, coattention 128].")
@click.option("--supcon-alpha", "alpha", type=click.FloatRange(min=0), help="coattention: SupCon weight alpha [0.1].")
@click.option("--supcon-temperature", "temperature", type=click.FloatRange(min=0, min_open=True),
              help="coattention: SupCon temperature tau [1.0].")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), help="Compute precision [fp32].")
@device_option()
@click.option("--max-memory", callback=_size, help="Memory the run may hold at its peak, e.g. 6G: seeds x folds train "
              "in groups that fit (the same numbers) [what the machine has: available RAM, or the GPU's memory].")
@click.option("--recompute", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Recompute the CNN's activations in the backward pass instead of keeping them (e2el): the same "
              "numbers in ~a quarter of the memory, for ~2x the time on a CPU. auto: when one member does not fit "
              "--max-memory.")
@click.option("--deterministic", is_flag=True, help="Bit-reproducible GPU runs: torch's deterministic algorithms, "
              "fp32 products without TF32 (on by default on CUDA). CPU runs are reproducible without it.")
@click.option("--threads", type=click.IntRange(1), help="CPU threads (default: 1 for small models, else all).")
@click.option("--standardize/--no-standardize", default=True, show_default=True,
              help="Standardize features with training-fold statistics.")
@click.option("--test-splits", help="Splits to predict (default: every split but train).")
@click.option("--augment", help="Cached dataset of augmented copies (extract.augment): added to the training folds "
              "of their origin clips only.")
@click.option("--pseudo", type=click.Path(dir_okay=False), help="Pseudo-label CSV (fuse.semi): its clips join every "
              "fold's training rows, never validation.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: runs/<dataset>/<run id> beside "
              "the cache folder). An existing folder is replaced only if it is a run folder.")
@corpus_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@ends_cleanly("no run folder was written (an earlier one at --out is kept as it was)")
@damage_named
def main(**options):
    """Train a fusion model with 5-fold CV on the training split, predict the test splits."""
    try:
        request = TrainRequest.from_options(
            modalities=parse_modalities(options["modalities"]) if options["modalities"] else None,
            features=parse_features(options["features_text"]) if options["features_text"] else {},
            hidden=_widths(options["hidden"], "--hidden"), channels=_widths(options["channels"], "--channels"),
            **{k: v for k, v in options.items() if k not in ("modalities", "features_text", "hidden", "channels")})
    except (SpecError, ValueError) as err:
        raise Refused(str(err)) from None
    if request.features == {} and request.modalities is None:
        raise Refused("name the modalities to fuse: --modalities A,V (or --features)")
    result = run_training(request)
    click.echo(result.table())
    click.echo(f"run folder: {result.folder}")
    if result.replaced is not None:
        made = f", with what was made from it ({', '.join(result.replaced)})" if result.replaced else ""
        click.echo(f"(it replaced the earlier run in that folder{made})")


if __name__ == "__main__":
    sys.exit(main())
