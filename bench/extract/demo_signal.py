"""How much emotion each modality of the demo corpus carries, and what fusing them gives.

Logistic regression on cached features (run `make demo` first), weighted F1 with stratified
5-fold CV over the labelled train + test1 clips, averaged over 3 fold seeds. A check of the demo's
design (each modality learnable, none alone enough), not a model of this project's fusion stage.
Then what the pretrained FER2013 CNN itself sees: its class probabilities (the cached
`face-fer2013` `probs`, mean over each clip's dlib-aligned faces) averaged per demo emotion.

    python bench/extract/demo_signal.py [--cache data/cache]
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
from extract.visual import LABELS
from manifests import MER_CLASSES, load_manifest

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
    probs = open_feature("demo", "face-fer2013", cache).array("probs", ids=ids)
    click.echo("\nFER2013 CNN, mean class probability per demo emotion (rows: clips of that emotion)\n")
    click.echo(fer_table(probs, y))
    margins = [f"{e} {own_class_margin(probs, y, e):+.2f}" for e in ("happy", "sad", "angry", "surprise")]
    click.echo(f"\nown-class margin (P on its clips minus the highest other row): {', '.join(margins)}")


def own_class_margin(probs: np.ndarray, labels: np.ndarray, emotion: str) -> float:
    """Mean P(emotion) on the emotion's clips minus its highest mean on another emotion's clips."""
    column = probs[:, LABELS.index(emotion)]
    others = [column[labels == e].mean() for e in MER_CLASSES if e != emotion and (labels == e).any()]
    return float(column[labels == emotion].mean() - max(others))


def fer_table(probs: np.ndarray, labels: np.ndarray) -> str:
    """Markdown table: rows the demo emotions, columns the FER2013 classes, cells the mean of
    `probs` (float [n, 7], FER2013 order) over the clips of that emotion (`labels` [n])."""
    lines = ["| demo emotion | clips | " + " | ".join(LABELS) + " |", "| --- | --- |" + " --- |" * len(LABELS)]
    for emotion in MER_CLASSES:
        rows = probs[labels == emotion]
        cells = " | ".join(f"{v:.2f}" for v in rows.mean(0)) if len(rows) else " | ".join("-" * len(LABELS))
        lines.append(f"| {emotion} | {len(rows)} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
