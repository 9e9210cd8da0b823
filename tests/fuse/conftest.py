"""Small cached problems written through the real cache writer (HDF5 feature files + clip table)."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.utils._python_dispatch import TorchDispatchMode

from cache import FeatureWriter, write_clips
from manifests import MER_CLASSES, Clip, Manifest


def synthetic_corpus(n_train=90, n_test=24, n_unlabelled=6, seed=0, noise=0.6, multi_label=False):
    """Clips of the six MER classes, valence tied to the class; features that separate the classes.

    Features: `acoustic` [16], `visual` [8], `layers` per-layer [4, 12] (class signal in layers 1-2).
    Returns (manifest, {feature: {clip id: array}}).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(MER_CLASSES), 16)) * 2.0
    clips, arrays = [], {"acoustic": {}, "visual": {}, "layers": {}}
    splits = ["train"] * n_train + ["test1"] * n_test + ["test3"] * n_unlabelled
    for i, split in enumerate(splits):
        cid = f"clip{i:04d}"
        y = i % len(MER_CLASSES)
        second = (y + 1) % len(MER_CLASSES) if multi_label and i % 3 == 0 else None
        centre = centres[y] + (0.7 * centres[second] if second is not None else 0)
        labelled = split != "test3"
        label = MER_CLASSES[y] + (f";{MER_CLASSES[second]}" if second is not None else "")
        clips.append(Clip(cid, split, label=label if labelled else None,
                          valence=float(y - 2.5 + rng.normal(scale=0.3)) if labelled else None))
        arrays["acoustic"][cid] = (centre + rng.normal(scale=noise, size=16)).astype(np.float32)
        arrays["visual"][cid] = (centre[:8] * 0.5 + rng.normal(scale=noise, size=8)).astype(np.float32)
        layers = rng.normal(scale=noise, size=(4, 12))
        layers[1:3] += centre[:12]
        arrays["layers"][cid] = layers.astype(np.float32)
    return Manifest("synth", clips), arrays


def write_cache(root, dataset, manifest, arrays, failed=None, primary="x", configs=None, clips=True):
    """Write `arrays` as cached features of `dataset` and (`clips`) the clip table; `failed`:
    {feature: {id: reason}}; `configs`: {feature: extractor config recorded in its provenance} (default {})."""
    manifest = Manifest(dataset, manifest.clips, classes=manifest.classes)
    if clips:
        write_clips(manifest, root=root)
    for feature, values in arrays.items():
        prov = {"extractor": feature, "version": "1", "config": (configs or {}).get(feature, {}),
                "manifest_fingerprint": manifest.fingerprint()}
        writer = FeatureWriter(root, dataset, feature, f"fp-{feature}", prov, primary=primary)
        for cid, value in values.items():
            reason = (failed or {}).get(feature, {}).get(cid)
            if reason:
                writer.put(cid, status="failed", reason=reason)
            else:
                writer.put(cid, {primary: value})
        writer.merge()
    return root


@pytest.fixture
def synth_cache(tmp_path):
    manifest, arrays = synthetic_corpus()
    return write_cache(tmp_path / "cache", "synth", manifest, arrays,
                       failed={"visual": {"clip0007": "no face found"}})


@contextmanager
def torch_threads(n: int):
    """The test problems are tiny: on a shared 2-core machine a second intra-op thread mostly waits on
    the first (measured: one 15-epoch CV run 20 s with two threads, 4 s with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    with torch_threads(1):
        yield


@pytest.fixture
def lgbm_one_thread(monkeypatch):
    """LightGBM with one thread: with two on a loaded 2-core machine, the OpenMP barriers of each
    boosting round on ~70 clips cost more than the work (measured: 64 s against 4 s per CV run)."""
    from fuse.models.lgbm import LGBM

    params = LGBM._params
    monkeypatch.setattr(LGBM, "_params", lambda self, seed: {**params(self, seed), "n_jobs": 1})


@pytest.fixture
def no_plots(monkeypatch):
    """Runs whose plots no test looks at skip drawing them (about 2 s of a 4 s run here); the run
    folder test checks the real ones."""
    from fuse.results import plots

    monkeypatch.setattr(plots, "confusion_matrices", lambda path, *args, **kwargs: None)
    monkeypatch.setattr(plots, "training_curves", lambda path, *args, **kwargs: None)


# the run most tests read: attention on acoustic + visual, 2 seeds x 5 folds; visual failed for a
# training clip and a test1 clip (a reason with quotes and a comma, as a decoder's message has)
FAILED_VISUAL = {"clip0007": "no face found", "clip0101": 'cannot open "clip0101.mp4", moov atom not found'}
SYNTH_RUN_ARGS = ["--features", "A=acoustic;V=visual", "--epochs", "10", "--seeds", "2", "--quiet"]


def train_cli(*args):
    """`python -m fuse.train ARGS` in this process: the click result."""
    from fuse.train import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="session")
def synth_run(tmp_path_factory):
    """(cache root, run folder) of `fuse.train SYNTH_RUN_ARGS` on the synthetic corpus."""
    base = tmp_path_factory.mktemp("synth-run")
    manifest, arrays = synthetic_corpus()
    cache = write_cache(base / "cache", "synth", manifest, arrays, failed={"visual": FAILED_VISUAL})
    with torch_threads(1):
        result = train_cli("--cache", cache, "--out", base / "run", *SYNTH_RUN_ARGS)
    assert result.exit_code == 0, result.output
    return cache, base / "run"


# what stage 2 reads from the demo: the default pooled features and the sequence models' inputs
DEMO_FEATURES = "egemaps,text-minilm,face-fer2013,face-crops,e2el-spectrogram,mfcc,logmel,face-crops-crossbert"


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory):
    """The cache root of the demo corpus (96 clips: real synthesized speech, a real face)
    extracted by `python -m extract` with DEMO_FEATURES."""
    import subprocess
    import sys

    base = tmp_path_factory.mktemp("demo")
    for args in (["manifests.demo", "--out", base / "corpus", "--clips", 96],
                 ["extract", "--dataset", "demo", "--root", base / "corpus", "--features", DEMO_FEATURES,
                  "--set", "text-minilm.token_sequence=true", "--cache", base / "cache", "--workers", 2]):
        proc = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return base / "cache"


def assert_members_train_as_if_alone(make, seeds, inputs, labels, valence, weight) -> "Ensemble":
    """One loss step of an Ensemble of `make(seed)` members against each member alone on its real
    rows (weight > 0): every parameter's gradient must match. Returns the ensemble."""
    from fuse.training.ensemble import Ensemble

    ens = Ensemble(lambda e: make(seeds[e]), len(seeds), torch.device("cpu"))
    ens.loss(inputs, labels, valence, weight, weight).backward()
    for e, seed in enumerate(seeds):
        alone = Ensemble(lambda _: make(seed), 1, torch.device("cpu"))
        real = weight[e] > 0
        one = [x[e:e + 1, real] for x in inputs]
        alone.loss(one, labels[e:e + 1, real], valence[e:e + 1, real], weight[e:e + 1, real],
                   weight[e:e + 1, real]).backward()
        for name, p in alone.params.items():
            torch.testing.assert_close(ens.params[name].grad[e], p.grad[0], atol=1e-5, rtol=1e-4,
                                       msg=lambda m: f"{name}, member {e}: {m}")
    return ens


def assert_padding_changes_nothing(short, long, inputs, padded, training: bool, atol=1e-5, warmup=20):
    """`long` (built for longer sequences) given `padded` (the same clips, other garbage in their
    padding, more padded steps) outputs what `short` does on `inputs`, once `short`'s running
    statistics have seen the real steps and `long` holds its weights. Returns short's logits."""
    with torch.no_grad():  # running statistics of the real steps (eval mode reads them)
        for _ in range(warmup):
            short(inputs)
    long.load_state_dict(short.state_dict())
    short.train(training), long.train(training)
    logits, valence = short(inputs)
    logits2, valence2 = long(padded)
    torch.testing.assert_close(logits2, logits, atol=atol, rtol=1e-4)
    torch.testing.assert_close(valence2, valence, atol=atol, rtol=1e-4)
    return logits


aten = torch.ops.aten
# what waits for a GPU, by the operation torch dispatches
HOST_READS = {aten._local_scalar_dense.default: "reads a tensor's value on the host (item, int, bool, an if)",
              aten.nonzero.default: "counts non-zeros (an output sized by the data)",
              aten.masked_select.default: "selects by a mask (an output sized by the data)",
              aten.equal.default: "compares whole tensors on the host",
              aten.lift_fresh.default: "makes a tensor from host data (a copy to the device)"}


class NoHostReads(TorchDispatchMode):
    """Within: every operation that would wait for a GPU is refused (HOST_READS, indexing by a bool
    mask), on any device: what a forward pass or training step must not do (a CPU test shows it)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        bool_index = func is aten.index.Tensor and any(i is not None and i.dtype == torch.bool for i in args[1])
        if func in HOST_READS or bool_index:
            raise AssertionError(f"{func}: {HOST_READS.get(func, 'indexes by a bool mask')}, in a step")
        return func(*args, **(kwargs or {}))
