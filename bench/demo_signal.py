"""How much emotion each modality of the demo corpus carries, and what fusing them gives.

Logistic regression on cached features (run `make demo` first), weighted F1 with stratified
5-fold CV over the labelled train + test1 clips, averaged over 3 fold seeds. A check of the demo's
design (each modality learnable, none alone enough), not a model of this project's fusion stage.

    python bench/demo_signal.py [--cache data/cache]
"""
from __future__ import annotations

import click
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cache import open_feature
from manifests import load_manifest

MODALITIES = {"A: egemaps": ("egemaps", None), "T: text-minilm (last layer)": ("text-minilm", -1),
              "V: face-fer2013": ("face-fer2013", None)}


def weighted_f1(x: np.ndarray, y: np.ndarray, seeds=(0, 1, 2)) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    scores = [f1_score(y, cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=s)),
                       average="weighted") for s in seeds]
    return float(np.mean(scores))


@click.command()
@click.option("--cache", default=None, help="Cache root (default ./data/cache).")
@click.option("--root", default="data/demo", show_default=True)
def main(cache, root):
    manifest = load_manifest("demo", root=root)
    ids = [c.id for c in manifest if c.label and c.split in ("train", "test1")]
    y = np.array([manifest[i].label for i in ids])
    blocks = {}
    for name, (feature, layer) in MODALITIES.items():
        x = open_feature("demo", feature, cache).array(ids=ids).astype(np.float32)
        blocks[name] = (x[:, layer] if layer is not None else x).reshape(len(ids), -1)
    click.echo(f"{len(ids)} labelled clips, 6 classes, chance ~{1 / 6:.2f}\n\n| features | weighted F1 |\n| --- | --- |")
    for name, x in blocks.items():
        click.echo(f"| {name} | {weighted_f1(x, y):.3f} |")
    click.echo(f"| A + T + V, concatenated | {weighted_f1(np.hstack(list(blocks.values())), y):.3f} |")


if __name__ == "__main__":
    main()
