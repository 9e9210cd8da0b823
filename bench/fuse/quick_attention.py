"""A quick re-implementation of the MER 2023 baseline's attention training, the plain way to make
its loop fast and the reference fuse.train is measured against beside the official script:
tensors kept in memory, the five fold models (and the three modality encoders) trained as one set
of batched matrix products, torch's fused Adam, the test pass once with each fold's best-epoch
weights. Written plainly: raw batched weights, torch's own dropout (nn.Dropout's), the official
loss (cross-entropy + valence MSE), model (raw attention scores), protocol (best epoch per fold by
weighted F1 - 0.25 x valence MSE on its validation fold; CV = the folds' mean) and no
standardization, as the official script. fp32, one seed.

    python bench/fuse/quick_attention.py ARRAYS.npz --epochs 100 --seed 0 --json OUT.json

ARRAYS.npz: features a, l, v [N, D] float32, label [N] int, valence [N], split [N] str
(train / test1 / test2). Prints and writes seconds (wall, this process from its start) and metrics.
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

import click  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn.metrics import f1_score, mean_squared_error  # noqa: E402

HIDDEN, DROPOUT, LR, L2, BATCH, FOLDS, CLASSES = (256, 128), 0.3, 1e-3, 1e-5, 32, 5, 6


def linear(E: int, n_in: int, n_out: int, generator) -> list[torch.Tensor]:
    """Weight [E, in, out] and bias [E, 1, out], initialised as nn.Linear."""
    bound = n_in ** -0.5
    return [(torch.rand(E, n_in, n_out, generator=generator) * 2 - 1).mul_(bound).requires_grad_(),
            (torch.rand(E, 1, n_out, generator=generator) * 2 - 1).mul_(bound).requires_grad_()]


def build(E: int, M: int, dim: int, generator) -> dict[str, list[torch.Tensor]]:
    """The M modality MLPs of every fold model as one batch of E x M, then the attention branch."""
    layers = {"mlp.0": linear(E * M, dim, HIDDEN[0], generator), "mlp.1": linear(E * M, *HIDDEN, generator)}
    layers["att.0"] = linear(E, HIDDEN[1] * M, HIDDEN[0], generator)
    layers["att.1"] = linear(E, *HIDDEN, generator)
    layers["fc_att"] = linear(E, HIDDEN[1], M, generator)
    layers["fc_out_1"] = linear(E, HIDDEN[1], CLASSES, generator)
    layers["fc_out_2"] = linear(E, HIDDEN[1], 1, generator)
    return layers


def forward(layers, inputs: list[torch.Tensor], train: bool):
    """inputs [E, B, D] per modality (one D) -> emotion logits [E, B, C], valence [E, B] (the
    official Attention.forward, batched over the fold models)."""
    def mlp(x, names):
        for name in names:
            w, b = layers[name]
            x = F.dropout(F.relu(torch.baddbmm(b, x, w)), DROPOUT, train)
        return x

    E, B, M = inputs[0].shape[0], inputs[0].shape[1], len(inputs)
    hidden = mlp(torch.stack(inputs, dim=1).view(E * M, B, -1), ("mlp.0", "mlp.1")).view(E, M, B, -1)
    concat = hidden.permute(0, 2, 1, 3).reshape(E, B, -1)  # [E, B, M x H]: audio, text, video
    scores = torch.baddbmm(layers["fc_att"][1], mlp(concat, ("att.0", "att.1")), layers["fc_att"][0])
    fused = (hidden.permute(0, 2, 3, 1) @ scores.unsqueeze(-1)).squeeze(-1)  # [E, B, H, M] @ [E, B, M, 1]
    logits = torch.baddbmm(layers["fc_out_1"][1], fused, layers["fc_out_1"][0])
    valence = torch.baddbmm(layers["fc_out_2"][1], fused, layers["fc_out_2"][0]).squeeze(-1)
    return logits, valence


def padded(rows: list[np.ndarray]) -> torch.Tensor:
    out = np.full((len(rows), max(map(len, rows))), -1)
    for e, r in enumerate(rows):
        out[e, :len(r)] = r
    return torch.as_tensor(out)


@torch.no_grad()
def predict(layers, x: list[torch.Tensor], rows: torch.Tensor):
    """Eval-mode probabilities [E, n, C] (numpy) and valence [E, n] on rows [E, n] (-1: padding)."""
    logits, valence = forward(layers, [t[rows.clamp(min=0)] for t in x], train=False)
    return logits.softmax(-1).numpy(), valence.numpy()


def train(arrays, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    split = arrays["split"].astype(str)
    tr = np.flatnonzero(split == "train")
    x = [torch.as_tensor(arrays[k]) for k in ("a", "l", "v")]
    label, valence = torch.as_tensor(arrays["label"]).long(), torch.as_tensor(arrays["valence"]).float()
    fold = rng.permutation(len(tr)) % FOLDS
    train_rows = padded([tr[fold != k] for k in range(FOLDS)])
    val_list = [tr[fold == k] for k in range(FOLDS)]
    val_rows = padded(val_list)
    layers = build(FOLDS, len(x), x[0].shape[1], generator)
    params = [p for pair in layers.values() for p in pair]
    optimizer = torch.optim.Adam(params, lr=LR, weight_decay=L2, fused=True)
    best = np.full(FOLDS, -np.inf)
    best_f1, best_mse = np.zeros(FOLDS), np.zeros(FOLDS)
    best_params = [p.detach().clone() for p in params]
    best_valence = [None] * FOLDS
    for epoch in range(epochs):
        keys = torch.rand(train_rows.shape, generator=generator).masked_fill(train_rows < 0, 2.0)
        order = train_rows.gather(1, keys.argsort(dim=1))
        for start in range(0, order.shape[1], BATCH):
            rows = order[:, start:start + BATCH]
            weight = (rows >= 0).float()
            rows = rows.clamp(min=0)
            logits, predicted = forward(layers, [t[rows] for t in x], train=True)
            ce = F.cross_entropy(logits.transpose(1, 2), label[rows], reduction="none")
            loss = ((ce + (predicted - valence[rows]) ** 2) * weight).sum(1) / weight.sum(1)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
        probs, predicted = predict(layers, x, val_rows)
        for k, rows in enumerate(val_list):
            f1 = f1_score(arrays["label"][rows], probs[k, :len(rows)].argmax(1), average="weighted")
            mse = mean_squared_error(arrays["valence"][rows], predicted[k, :len(rows)])
            if f1 - 0.25 * mse > best[k]:
                best[k], best_f1[k], best_mse[k] = f1 - 0.25 * mse, f1, mse
                best_valence[k] = predicted[k, :len(rows)]
                for kept, p in zip(best_params, params):  # [E, ...] or [E x M, ...], member-major
                    kept.view(FOLDS, -1)[k] = p.detach().view(FOLDS, -1)[k]
        print(f"epoch {epoch + 1}/{epochs}: validation {np.mean(best):.3f}", file=sys.stderr, flush=True)
    with torch.no_grad():
        for kept, p in zip(best_params, params):
            p.copy_(kept)
    _, predicted = predict(layers, x, val_rows)  # the restored weights give the best epochs' outputs
    if not all(np.allclose(predicted[k, :len(r)], best_valence[k], atol=1e-5) for k, r in enumerate(val_list)):
        raise RuntimeError("restored best-epoch weights do not reproduce their validation outputs")
    cv_f1, cv_mse = best_f1.mean(), best_mse.mean()
    out = {"cv": {"weighted_f1": cv_f1, "mse": cv_mse, "combined": cv_f1 - 0.25 * cv_mse}}
    for name in ("test1", "test2"):
        rows = np.flatnonzero(split == name)
        probs, predicted = predict(layers, x, torch.as_tensor(rows).expand(FOLDS, -1))
        f1 = f1_score(arrays["label"][rows], probs.mean(0).argmax(1), average="weighted")
        mse = mean_squared_error(arrays["valence"][rows], predicted.mean(0))
        out[name] = {"weighted_f1": f1, "mse": mse, "combined": f1 - 0.25 * mse}
    return {split: {k: {"mean": float(v), "std": 0.0} for k, v in m.items()} for split, m in out.items()}


@click.command()
@click.argument("arrays", type=click.Path(exists=True, dir_okay=False))
@click.option("--epochs", default=100, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", default=2, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write seconds and metrics here.")
def main(arrays, epochs, seed, threads, json_path):
    torch.set_num_threads(threads)
    with np.load(arrays) as data:
        metrics = train({k: data[k] for k in data.files}, epochs, seed)
    result = {**metrics, "seconds": time.perf_counter() - STARTED}
    click.echo(json.dumps(result))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
