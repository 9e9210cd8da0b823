"""E2E-L on cached sequences: padding changes nothing, members train as if alone, and the model
learns an item-level problem that a model on the clip's mean image cannot."""
import numpy as np
import pytest
import torch

from fuse.models import build, make_config
from fuse.models.e2el import normalise_pixels
from fuse.results.runs import run_training
from fuse.training.request import TrainRequest
from manifests.table import MER_CLASSES, Clip, Manifest

from tests.fuse.conftest import (NoHostReads, assert_members_train_as_if_alone, assert_padding_changes_nothing,
                                 write_cache)

TINY = dict(channels=(4, 4, 4, 8, 8, 8), width=8, layers=1, heads=2, feedforward=16, project=16)
# spectrogram pieces [P, 32, 16] + count; face crops [T, 16, 16, 3] + mask; a text vector [5]
SHAPES = [(6, 32, 16), (), (5, 16, 16, 3), (5,), (5,)]
MODALITIES = ["A", "A", "V", "V", "L"]


def _net(seed=0, dropout=0.0, shapes=SHAPES):
    torch.manual_seed(seed)
    return build("e2el", make_config("e2el", dropout=dropout, **TINY), shapes, MODALITIES, 4)


def _inputs(n_members=1, batch=3, pieces=6, crops=5, seed=1):
    """Random inputs with 1-4 real pieces and 1-3 real crops per clip; padding holds garbage."""
    g = torch.Generator().manual_seed(seed)
    count = torch.randint(1, 5, (n_members, batch), generator=g).float()
    mask = torch.zeros(n_members, batch, crops)
    for e in range(n_members):
        for b in range(batch):
            mask[e, b, :int(torch.randint(1, 4, (1,), generator=g))] = 1
    return [torch.randn(n_members, batch, pieces, 32, 16, generator=g), count,
            torch.rand(n_members, batch, crops, 16, 16, 3, generator=g) * 255, mask,
            torch.randn(n_members, batch, 5, generator=g)]


def _padded(inputs, extra=3, seed=2):
    """The same clips with other garbage in their padded pieces and crops, and `extra` more."""
    g = torch.Generator().manual_seed(seed)
    pieces, count, crops, mask, text = inputs
    padding = torch.arange(pieces.shape[2]) >= count.unsqueeze(-1)
    pieces = torch.where(padding[..., None, None], torch.randn(pieces.shape, generator=g) * 50, pieces)
    crops = torch.where((mask == 0)[..., None, None, None], torch.rand(crops.shape, generator=g) * 255, crops)
    more_pieces = torch.randn(*pieces.shape[:2], extra, *pieces.shape[3:], generator=g) * 50
    more_crops = torch.rand(*crops.shape[:2], extra, *crops.shape[3:], generator=g) * 255
    return [torch.cat([pieces, more_pieces], 2), count, torch.cat([crops, more_crops], 2),
            torch.cat([mask, torch.zeros(*mask.shape[:2], extra)], 2), text]


@pytest.mark.parametrize("training", [False, True])
def test_padded_items_change_nothing(training):
    inputs = _inputs()
    longer = [(6 + 3, 32, 16), (), (5 + 3, 16, 16, 3), (5 + 3,), (5,)]
    short = _net(shapes=SHAPES)
    logits = assert_padding_changes_nothing(short, _net(shapes=longer), inputs, _padded(inputs), training, warmup=30)
    # and the real items do matter: changing one real crop changes the output
    changed = [x.clone() for x in inputs]
    changed[2][0, 0, 0] = 255 - changed[2][0, 0, 0]
    assert not torch.allclose(short(changed)[0][0, 0], logits[0, 0], atol=1e-4)


def test_each_member_gets_the_gradient_it_would_get_alone():
    """Member 1 has two clips fewer: its batch is filled up with rows of weight 0 (as the training
    loop does), which must count in nothing, batch statistics included."""
    inputs = _inputs(n_members=2, batch=4)
    labels, valence = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]), torch.randn(2, 4)
    weight = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]])
    ens = assert_members_train_as_if_alone(_net, [3, 7], inputs, labels, valence, weight)
    # the batch norms kept per-member running statistics from their own items
    bn = dict(ens.net.named_buffers())["branches.1.cnn.stem_bn.running_mean"]
    assert not torch.allclose(bn[0], bn[1])


def test_one_member_takes_48_pixel_crops_as_cached():
    """One member (E = 1: a run scored clip by clip, bench/fuse/samsemo_parity.py) on crops [T, 48, 48, 3]
    as face-crops caches them: the CNN's output keeps the crops' channels-last strides there."""
    torch.manual_seed(0)
    net = build("e2el", make_config("e2el", **TINY), [(4, 48, 48, 3), (4,)], ["V", "V"], 4)
    crops = torch.rand(1, 2, 4, 48, 48, 3) * 255
    logits, valence = net([crops, torch.ones(1, 2, 4)])
    assert logits.shape == (1, 2, 4) and torch.isfinite(logits).all()


@pytest.mark.parametrize("channels, mean, std", [(3, (159.0, 111.0, 102.0), (37.0, 33.0, 32.0)), (1, (124.0,), (34.0,))])
def test_pixels_are_normalised_without_a_tensor_made_from_host_data_per_forward(channels, mean, std):
    """SAMSEMO's pixel mean and standard deviation (gray: their means), kept on the device after the
    first call: made per forward from a Python list, each would be a copy to the GPU that waits."""
    pixels = torch.rand(2, 4, channels, 6, 5) * 255
    normalise_pixels(pixels)  # the first call on this device makes them
    with NoHostReads():
        normalised = normalise_pixels(pixels)
    expected = (pixels - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
    assert torch.equal(normalised, expected)


def test_a_feature_the_network_has_no_branch_for_is_refused():
    with pytest.raises(ValueError, match="cannot be the mask or count"):
        build("e2el", make_config("e2el", **TINY), [(5, 16, 16, 3), (4,)], ["V", "V"], 4)
    with pytest.raises(ValueError, match="2 vector features"):
        build("e2el", make_config("e2el", **TINY), [(5,), (7,)], ["L", "L"], 4)
    with pytest.raises(ValueError, match="too small"):
        build("e2el", make_config("e2el", **TINY), [(5, 8, 8, 3)], ["V"], 4)


PLUS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
CROSS = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], bool)   # as many bright pixels as PLUS


def shapes_corpus(n_train=80, n_test=20, items=5, size=16, seed=0):
    """Each clip: 2-5 noisy images with one small bright shape at a random place; the class is the
    shape (a plus: neutral, a cross: angry). The clip's mean image holds as much brightness either
    way, spread over random places, so only a model that looks at the items can tell."""
    rng = np.random.default_rng(seed)
    clips, crops, masks, means = [], {}, {}, {}
    for i in range(n_train + n_test):
        cid, y = f"clip{i:04d}", i % 2
        n = int(rng.integers(2, items + 1))
        images = rng.normal(120, 12, size=(items, size, size, 3))
        for t in range(n):
            r, c = rng.integers(0, size - 3, size=2)
            images[t, r:r + 3, c:c + 3][(CROSS if y else PLUS)] = 250
        images[n:] = rng.uniform(0, 255, size=images[n:].shape)  # padding: garbage
        clips.append(Clip(cid, "train" if i < n_train else "test1", label=MER_CLASSES[y],
                          valence=float(1 - 2 * y + rng.normal(scale=0.2))))
        crops[cid] = images.astype(np.float32)
        masks[cid] = (np.arange(items) < n).astype(np.float32)
        means[cid] = images[:n].mean(0).ravel().astype(np.float32)
    return Manifest("shapes", clips), {"crops": crops, "crops-mask": masks, "crops-mean": means}


@pytest.fixture(scope="module")
def shapes_cache(tmp_path_factory):
    manifest, arrays = shapes_corpus()
    return write_cache(tmp_path_factory.mktemp("shapes") / "cache", "shapes", manifest, arrays)


def _train(cache, out, model, features, config=None, **options):
    request = TrainRequest.from_options(model=model, dataset="shapes", features=features, cache_dir=str(cache),
                                        out=str(out), quiet=True, **options)
    if config:  # a network smaller than the command line makes (the CNN's width is all it sets)
        request.configs = [make_config(model, **config)]
    return run_training(request).metrics


@pytest.mark.usefixtures("no_plots")
def test_e2el_learns_what_a_model_on_the_mean_image_cannot(shapes_cache, tmp_path):
    # what it can learn in 12 epochs: without SAMSEMO's early stopping (patience 3, its default)
    e2el = _train(shapes_cache, tmp_path / "e2el", "e2el", {"V": ["crops", "crops-mask"]}, TINY, epochs=12, lr=3e-3,
                  patience=0)
    pooled = _train(shapes_cache, tmp_path / "mlp", "mlp", {"V": ["crops-mean"]}, epochs=25)
    assert e2el["cv"]["weighted_f1"]["mean"] > 0.9, e2el["cv"]
    assert e2el["test1"]["weighted_f1"]["mean"] > 0.9, e2el["test1"]
    assert pooled["cv"]["weighted_f1"]["mean"] < 0.7, pooled["cv"]
    config = e2el["config"]
    assert config["train"]["batch_size"] == 16 and config["train"]["weight_decay"] == 1e-6  # SAMSEMO's


def test_samsemo_reads_multilingual_berts_cls_by_default():
    """SAMSEMO's prep_text.py: the CLS vector of bert-base-multilingual-uncased's last layer, never the
    Chinese-first preference list of other datasets, whatever else is cached."""
    from fuse.models import MODELS
    from fuse.inputs.specs import resolve

    cached = ["chinese-macbert-large", "text-minilm", "bert-base-multilingual-uncased", "e2el-spectrogram",
              "face-crops"]
    e2el = resolve("samsemo", ["A", "L", "V"], {}, cached, MODELS["e2el"].inputs)
    assert e2el == [("A", "e2el-spectrogram#pieces"), ("A", "e2el-spectrogram#n_pieces"),
                    ("L", "bert-base-multilingual-uncased#first@-1"), ("V", "face-crops#crops"),
                    ("V", "face-crops#mask")]
    assert resolve("samsemo", ["L"], {}, cached) == [("L", "bert-base-multilingual-uncased#first@-1")]
    assert resolve("other", ["L"], {}, cached) == [("L", "chinese-macbert-large@-4:")]
