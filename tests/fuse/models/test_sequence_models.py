"""Cross-BERT, its interaction variant and VCEMO's co-attention on frame-level sequences: cached
ragged sequences are cut and padded to the model's length, padding changes nothing, members train
as if alone (SupCon included), and each model learns an order problem that a model on the clip's
mean cannot."""
import numpy as np
import pytest
import torch

from cache import FeatureWriter, write_clips
from fuse.models import build, make_config
from fuse.models.coattention import supcon
from fuse.models.crossbert import STRIDE, WINDOW, WindowEncoder
from fuse.models.seq import step_lengths, trim
from fuse.inputs.problem import load_problem
from fuse.results.runs import run_training
from fuse.training.request import TrainRequest
from manifests.table import MER_CLASSES, Clip, Manifest

from tests.fuse.conftest import NoHostReads, assert_members_train_as_if_alone, assert_padding_changes_nothing

TINY = {"crossbert": dict(width=8, channels=(4,), attention_dropout=0.0),   # no hidden layer: the default
        "crossbert-interaction": dict(width=8, channels=(4,), hidden=(8,)),
        "coattention": dict(width=8, heads=2, feedforward=16, channels=(4, 4), hidden=(8,), projection=8)}
# per modality: log-mel frames [T, 8] + count; token vectors [K, 6] + mask, a sentence vector [1, 6];
# gray crops [T, 16, 16] + mask; audio statistics [5]
CO_SHAPES, CO_MODALITIES = [(20, 8), (), (7, 6), (7,), (1, 6), (12, 16, 16), (12,)], ["A", "A", "L", "L", "L", "V", "V"]
CB_SHAPES, CB_MODALITIES = [(5,), (7, 6), (7,), (12, 16, 16), (12,)], ["A", "L", "L", "V", "V"]


def _shapes(model, extra=0):
    shapes, modalities = (CO_SHAPES, CO_MODALITIES) if model == "coattention" else (CB_SHAPES, CB_MODALITIES)
    grow = lambda s: (s[0] + extra, *s[1:]) if s and s[0] in (20, 7, 12) and s != (1, 6) else s  # noqa: E731
    return [grow(s) for s in shapes], modalities


def _net(model, seed=0, extra=0):
    torch.manual_seed(seed)
    shapes, modalities = _shapes(model, extra)
    return build(model, make_config(model, dropout=0.0, **TINY[model]), shapes, modalities, 4)


def _inputs(model, n_members=1, batch=3, seed=1):
    """Random inputs; each clip has some real frames, tokens and crops, its padding holds garbage."""
    g = torch.Generator().manual_seed(seed)
    E, B = n_members, batch

    def mask(T, low):
        m = torch.zeros(E, B, T)
        for e in range(E):
            for b in range(B):
                m[e, b, :int(torch.randint(low, T + 1, (1,), generator=g))] = 1
        return m

    tokens, crops = torch.randn(E, B, 7, 6, generator=g), torch.rand(E, B, 12, 16, 16, generator=g) * 255
    token_mask, crop_mask = mask(7, 1), mask(12, 1)
    if model == "coattention":
        count = torch.randint(3, 21, (E, B), generator=g).float()
        frames = torch.randn(E, B, 20, 8, generator=g) * 10 - 40
        return [frames, count, tokens, token_mask, torch.randn(E, B, 1, 6, generator=g), crops, crop_mask]
    return [torch.randn(E, B, 5, generator=g), tokens, token_mask, crops, crop_mask]


def _padded(model, inputs, extra=4, seed=2):
    """The same clips with other garbage in their padding, and `extra` more padded steps."""
    g = torch.Generator().manual_seed(seed)
    out = [x.clone() for x in inputs]
    shapes, _ = _shapes(model)
    for i, shape in enumerate(shapes):
        if len(shape) < 2 or shape == (1, 6):
            continue
        x, v = out[i], out[i + 1]
        real = (torch.arange(x.shape[2]) < v.unsqueeze(-1)) if v.dim() == 2 else v > 0
        noise = torch.rand(x.shape, generator=g) * 255
        x = torch.where(real.view(*real.shape, *[1] * (x.dim() - 3)), x, noise)
        out[i] = torch.cat([x, torch.rand(*x.shape[:2], extra, *x.shape[3:], generator=g) * 255], 2)
        if v.dim() == 3:
            out[i + 1] = torch.cat([v, torch.zeros(*v.shape[:2], extra)], 2)
    return out


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("model", ["crossbert", "crossbert-interaction", "coattention"])
def test_padded_steps_change_nothing(model, training):
    inputs = _inputs(model)
    short = _net(model)
    logits = assert_padding_changes_nothing(short, _net(model, extra=4), inputs, _padded(model, inputs), training,
                                            atol=1e-4)
    # the real steps do matter: changing the crops (or frames) of the first clip changes its output
    changed = [x.clone() for x in inputs]
    item = 0 if model == "coattention" else 3
    changed[item][0, 0] = changed[item][0, 0].flip(0) * 0.5 + 7
    assert (short(changed)[0][0, 0] - logits[0, 0]).abs().max() > 1e-6  # (small at initialisation)


def test_each_coattention_member_gets_the_gradient_it_would_get_alone():
    """Member 1 has two clips fewer: its batch is filled up with rows of weight 0, which must count
    in nothing: batch statistics, SupCon's anchors, positives and negatives."""
    inputs = _inputs("coattention", n_members=2, batch=5)
    labels, valence = torch.tensor([[0, 1, 0, 1, 2], [3, 3, 1, 3, 1]]), torch.randn(2, 5)
    weight = torch.tensor([[1.0, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert_members_train_as_if_alone(lambda seed: _net("coattention", seed), [3, 7], inputs, labels, valence, weight)


def test_supcon_matches_its_formula():
    """Khosla et al.'s L_out written out clip by clip, for single- and multi-label targets."""
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(1, 6, 4, generator=g), dim=-1)
    labels = torch.tensor([[0, 1, 0, 2, 1, 0]])
    real = torch.tensor([[True, True, True, True, True, False]])
    multi = torch.tensor([[[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]]], dtype=torch.float32)
    for target, same in ((labels, lambda i, j: labels[0, i] == labels[0, j]),
                         (multi, lambda i, j: bool((multi[0, i] * multi[0, j]).sum() > 0))):
        total, anchors = 0.0, 0
        for i in range(5):
            others = [a for a in range(5) if a != i]
            positives = [p for p in others if same(i, p)]
            if not positives:
                continue
            denominator = torch.logsumexp(torch.stack([z[0, i] @ z[0, a] / 0.5 for a in others]), 0)
            total += -sum(z[0, i] @ z[0, p] / 0.5 - denominator for p in positives) / len(positives)
            anchors += 1
        torch.testing.assert_close(supcon(z, target, real, 0.5), torch.stack([total / anchors]))


def cm_bert_logits(net, audio, tokens, mask):
    """CM-BERT's fusion (thuiar/Cross-Modal-BERT BertFinetun, as 3-Modal Cross-BERT's
    model/finetune.py runs it) written out clip by clip from the network's weights: the text
    projected without bias and divided by the square root of its norm, ReLU of each modality's
    X X^T, weighted sum, padded keys masked, softmax, A H + H, dense, layer norm, [CLS]."""
    p = {k: v[0] for k, v in net.state_dict().items()}   # member 0
    w_a, w_t = p["weights"]                                          # modalities in order A, L
    out = []
    for b in range(tokens.shape[1]):
        n = int(mask[0, b].sum())
        H = tokens[0, b]                                              # [K, D], padding included
        X_t = H @ p["branches.1.project.weight"]
        X_t = X_t / X_t[:n].norm().sqrt()
        a = audio[0, b] @ p["branches.0.project.weight"]
        X_a = X_t * torch.sigmoid(a @ p["gates.0.weight"] + p["gates.0.bias"])
        W = w_t * torch.relu(X_t @ X_t.T) + w_a * torch.relu(X_a @ X_a.T)
        W[:, n:] = float("-inf")
        Y = torch.softmax(W, -1) @ H + H
        Y = Y @ p["dense.weight"] + p["dense.bias"]
        Y = torch.nn.functional.layer_norm(Y, Y.shape[-1:], p["norm.weight"], p["norm.bias"])
        out.append(Y[0] @ p["decoder.emotion.weight"] + p["decoder.emotion.bias"])
    return torch.stack(out)


def test_crossbert_fuses_as_cm_bert():
    torch.manual_seed(0)
    net = build("crossbert", make_config("crossbert", width=5, dropout=0.0, attention_dropout=0.0),
                [(4,), (7, 6), (7,)], ["A", "L", "L"], 3).eval()
    with torch.no_grad():   # away from their starting values, so that each piece shows
        net.weights.copy_(torch.tensor([[0.7, 1.6]]))
        net.norm.weight.normal_(1, 0.3), net.norm.bias.normal_(0, 0.3)
    g = torch.Generator().manual_seed(1)
    audio, tokens = torch.randn(1, 4, 4, generator=g), torch.randn(1, 4, 7, 6, generator=g)
    mask = torch.tensor([[[1.0] * k + [0.0] * (7 - k) for k in (7, 3, 5, 2)]])
    logits, _ = net([audio, tokens, mask])
    torch.testing.assert_close(logits[0], cm_bert_logits(net, audio, tokens, mask), atol=1e-5, rtol=1e-4)
    # a clip's output does not depend on the other clips of its batch (CM-BERT's text norm is the batch's)
    alone, _ = net([audio[:, 1:2], tokens[:, 1:2], mask[:, 1:2]])
    torch.testing.assert_close(alone[0, 0], logits[0, 1], atol=1e-6, rtol=1e-5)


def test_a_block_keeps_the_steps_its_length_says_and_without_one_every_step():
    """trim keeps the length the training loop read on the host (rounded up to a multiple), and
    without one every step: measuring the last valid one there would wait for the device."""
    x, valid = torch.randn(2, 3, 12, 4), torch.zeros(2, 3, 12)
    valid[0, 1, :5] = 1
    with NoHostReads():
        assert trim(x, valid)[0].shape[2] == 12
        with step_lengths({id(x): 5}):
            kept, kept_valid = trim(x, valid, multiple=4)
    assert kept.shape[2] == kept_valid.shape[2] == 8 and torch.equal(kept, x[:, :, :8])


@pytest.mark.parametrize("frames, last", [(12, [12, 9, 3, 0]), (25, [25, 24, 10, 15]), (7, [7, 2, 5, 0])])
def test_crossbert_windows_are_valid_without_a_tensor_made_from_host_data(frames, last):
    """A window of 10 frames (step 5) is real when it ends by the clip's last real frame (a clip
    shorter than a window: its one window), computed on the device: the windows' ends made there,
    not copied from a Python list every forward."""
    torch.manual_seed(0)
    encoder = WindowEncoder((16, 16), (4,), 8)
    valid = (torch.arange(frames) < torch.tensor(last).unsqueeze(-1)).float().view(1, 4, frames)
    crops = torch.rand(1, 4, frames, 16, 16) * 255
    encoder(crops, valid)  # the first call on this device makes the pixel constants (e2el.normalise_pixels)
    with NoHostReads():
        states, window_valid = encoder(crops, valid)
    ends = np.arange(WINDOW, max(frames, WINDOW) + 1, STRIDE)
    expected = [ends <= max(n, WINDOW) for n in last]
    assert states.shape == (1, 4, len(ends), 8)
    np.testing.assert_array_equal(window_valid[0].numpy(), np.array(expected, dtype=np.float32))


def test_features_a_network_has_no_branch_for_are_refused():
    with pytest.raises(ValueError, match="mixes features"):
        build("crossbert", make_config("crossbert"), [(5,), (7, 6), (7,)], ["L", "L", "L"], 4)
    with pytest.raises(ValueError, match="one lexical vector feature"):
        build("coattention", make_config("coattention"), [(5,), (6,)], ["L", "L"], 4)


def order_corpus(n_train=60, n_test=16, size=16, seed=0):
    """Each clip: a sequence whose first part is bright and second part dark (neutral) or the
    reverse (angry), 12-24 steps, as gray crops [T, 16, 16] with their mask and as 8-bin frames
    [T, 8]. The clip's mean over time is the same either way: only the order tells the class."""
    rng = np.random.default_rng(seed)
    clips, seqs = [], {}
    for i in range(n_train + n_test):
        cid, y = f"clip{i:04d}", i % 2
        T = 2 * int(rng.integers(6, 13))  # even: as many bright steps as dark ones
        level = np.where(np.arange(T) < T // 2, 1.0, -1.0) * (1 if y == 0 else -1)
        crops = np.clip(128 + 60 * level[:, None, None] + rng.normal(0, 20, (T, size, size)), 0, 255)
        frames = level[:, None] * np.linspace(1, 2, 8)[None] + rng.normal(0, 0.3, (T, 8))
        clips.append(Clip(cid, "train" if i < n_train else "test1", label=MER_CLASSES[y],
                          valence=float(1 - 2 * y + rng.normal(scale=0.2))))
        seqs[cid] = {"crops": crops.astype(np.uint8), "mask": np.ones(T, np.uint8),
                     "frames": frames.astype(np.float32), "mean": np.concatenate([crops.mean(0).ravel(), frames.mean(0)])}
    return Manifest("order", clips), seqs


@pytest.fixture(scope="module")
def order_cache(tmp_path_factory):
    """The order corpus written through the cache writer: `seq` (ragged crops, mask, frames) and
    `seq-mean` (the clip's mean)."""
    root = tmp_path_factory.mktemp("order") / "cache"
    manifest, seqs = order_corpus()
    write_clips(manifest, root=root)
    prov = {"extractor": "seq", "version": "1", "config": {}, "manifest_fingerprint": manifest.fingerprint()}
    seq = FeatureWriter(root, "order", "seq", "fp-seq", prov, primary="n")
    mean = FeatureWriter(root, "order", "seq-mean", "fp-mean", {**prov, "extractor": "seq-mean"}, primary="x")
    for cid, s in seqs.items():
        seq.put(cid, {"n": np.int32(len(s["mask"]))}, {k: s[k] for k in ("crops", "mask", "frames")})
        mean.put(cid, {"x": s["mean"].astype(np.float32)})
    seq.merge(), mean.merge()
    return root, seqs


def test_ragged_sequences_are_cut_or_padded_to_the_models_length(order_cache):
    root, seqs = order_cache
    problem = load_problem("order", [("A", "seq#frames"), ("A", "seq#frames.length"), ("V", "seq#crops")],
                           root=root, max_items=20)
    assert problem.shapes == [(20, 8), (), (20, 16, 16)]
    assert problem.blocks[2].dtype == np.uint8  # compact as cached
    for row, cid in enumerate(problem.ids):
        T = len(seqs[cid]["mask"])
        assert problem.blocks[1][row] == T  # the true length, also past the cut
        np.testing.assert_array_equal(problem.blocks[0][row, :min(T, 20)], seqs[cid]["frames"][:20])
        assert not problem.blocks[0][row, T:].any()
    with pytest.raises(ValueError, match="frame-level sequences"):
        load_problem("order", [("A", "seq#frames")], root=root)


def _train(cache, out, model, features, config=None, **options):
    request = TrainRequest.from_options(model=model, dataset="order", features=features, cache_dir=str(cache),
                                        out=str(out), quiet=True, **options)
    if config:
        request.configs = [make_config(model, **config)]
    return run_training(request).metrics


@pytest.mark.usefixtures("no_plots")
@pytest.mark.parametrize("model, features", [
    ("crossbert", {"V": ["seq#crops", "seq#mask"]}),
    ("crossbert-interaction", {"V": ["seq#crops", "seq#mask"]}),
    ("coattention", {"A": ["seq#frames", "seq#frames.length"]})])
def test_sequence_models_learn_the_order_a_model_on_the_mean_cannot(order_cache, tmp_path, model, features):
    root, _ = order_cache
    m = _train(root, tmp_path / model, model, features, TINY[model], epochs=15, lr=1e-2, batch_size=16)
    assert m["cv"]["weighted_f1"]["mean"] > 0.9, m["cv"]
    assert m["test1"]["weighted_f1"]["mean"] > 0.9, m["test1"]


@pytest.mark.usefixtures("no_plots")
def test_a_model_on_the_mean_stays_near_chance(order_cache, tmp_path):
    root, _ = order_cache
    pooled = _train(root, tmp_path / "mlp", "mlp", {"V": ["seq-mean"]}, epochs=25)
    assert pooled["cv"]["weighted_f1"]["mean"] < 0.7, pooled["cv"]


@pytest.mark.usefixtures("no_plots")
@pytest.mark.parametrize("model", ["crossbert", "coattention"])
def test_multi_label_with_pooled_vectors(tmp_path, model):
    """SAMSEMO-style targets (up to two classes per clip) on pooled acoustic and visual vectors (a
    one-step sequence in coattention): sigmoid outputs, per-class thresholds, one 0/1 column per class."""
    import json

    import pandas as pd

    from tests.fuse.conftest import synthetic_corpus, write_cache

    manifest, arrays = synthetic_corpus(multi_label=True)
    cache = write_cache(tmp_path / "cache", "synth", manifest, arrays)
    def train(lr, out):
        return run_training(TrainRequest.from_options(
            model=model, dataset="synth", cache_dir=str(cache), out=str(tmp_path / out), lr=lr, epochs=20,
            features={"A": ["acoustic"], "V": ["visual"]}, quiet=True, width=16, hidden=(16,))).metrics

    m, untrained = train(1e-2, "run"), train(1e-9, "untrained")   # thresholds alone exploit the priors
    assert m["cv"]["macro_f1"]["mean"] > untrained["cv"]["macro_f1"]["mean"] + 0.2, (m["cv"], untrained["cv"])
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["multi_label"] and len(meta["thresholds"]) == len(MER_CLASSES)
    frame = pd.read_csv(tmp_path / "run" / "predictions" / "test1.csv")
    assert list(frame.columns) == ["name", *MER_CLASSES, "valence"] and set(frame[list(MER_CLASSES)].stack()) <= {0, 1}
