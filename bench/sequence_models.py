"""The sequence models on a cached dataset next to the MER baseline's attention on pooled features.

Each model trains as `python -m fuse.train --model M --modalities ...` would, with its defaults
(features, epochs, lr, batch), in one process after the other (nothing else should run): seconds,
seconds per epoch (training and validation of all folds, as one batched model; epochs as run,
early stopping included), CV and test
scores. `--epochs N` overrides every model's epochs (a quick look at the cost per epoch).

    python bench/sequence_models.py --cache data/cache [--dataset demo] [--modalities V,A,T]
        [--models attention,e2el,crossbert,crossbert-interaction,coattention] [--seeds 1] [--out DIR]
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

MODELS = ("attention", "crossbert", "crossbert-interaction", "coattention")


def run(cache: Path, dataset: str, model: str, modalities: str, seeds: int, epochs: int | None, out: Path) -> dict:
    from fuse.specs import parse_modalities
    from fuse.training import TrainRequest, run_training

    request = TrainRequest.from_options(model=model, dataset=dataset, cache_dir=str(cache), out=str(out),
                                        modalities=parse_modalities(modalities), seeds=seeds, quiet=True,
                                        **({"epochs": epochs} if epochs else {}))
    m = run_training(request).metrics
    n_epochs = epochs_run(m)
    row = {"model": model, "features": list(m["config"]["features"]), "epochs": n_epochs,
           "seconds": m["seconds"], "per_epoch": m["seconds"] / n_epochs}
    for split in ("cv", "test1"):
        for metric in ("weighted_f1", "combined"):
            row[f"{split}_{metric}"] = m[split][metric]["mean"] if split in m else None
    return row


def epochs_run(metrics: dict) -> int:
    """Epochs a run trained: all of them, or with early stopping (--patience, e2el's default) until
    its last fold member stopped, `patience` epochs after its best."""
    train = metrics["config"]["train"]
    patience = train.get("patience") or 0
    if not patience:
        return train["epochs"]
    return min(train["epochs"], int(max(max(seed) for seed in metrics["best_epoch"])) + patience + 1)


@click.command()
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=Path("data/cache"), show_default=True)
@click.option("--dataset", default="demo", show_default=True)
@click.option("--modalities", default="V,A,T", show_default=True)
@click.option("--models", default=",".join(MODELS), show_default=True)
@click.option("--seeds", type=click.IntRange(1), default=1, show_default=True)
@click.option("--epochs", type=click.IntRange(1), help="Override every model's epochs.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Keep the run folders here.")
def main(cache, dataset, modalities, models, seeds, epochs, out):
    out = out or Path(tempfile.mkdtemp(prefix="sequence-models-"))
    rows = []
    for model in [m.strip() for m in models.split(",") if m.strip()]:
        rows.append(run(cache, dataset, model, modalities, seeds, epochs, out / model))
        r = rows[-1]
        click.echo(f"| {r['model']} | {r['epochs']} | {r['seconds']:.1f} | {r['per_epoch']:.2f} | "
                   f"{r['cv_weighted_f1']:.3f} | {r['cv_combined']:.3f} | "
                   f"{r['test1_combined'] if r['test1_combined'] is None else round(r['test1_combined'], 3)} |")
    (out / "sequence_models.json").write_text(json.dumps(rows, indent=2))
    click.echo(f"runs and sequence_models.json in {out}")


if __name__ == "__main__":
    main()
