"""The sequence models' training steps and forward passes read nothing back from the device: each
step's sequence lengths come from the host (fuse.training.loop keeps the clips' lengths and the
epoch's rows there), and no small tensor is made from host data per forward. On a GPU each such
read (item(), int(t), an `if` on a tensor, nonzero, a bool mask, a tensor from a Python list)
waits for the device; on a CPU the same operations are refused here, so the test runs anywhere."""
import functools

import numpy as np
import pytest
import torch

from fuse.models import coattention, e2el, seq
from fuse.training import ensemble, loop

from tests.fuse.conftest import NoHostReads
from tests.fuse.training.test_memory import RUNS, _run, sequence_cache  # noqa: F401 (a fixture)


def without_host_reads(method):
    """`method`, run within NoHostReads."""
    @functools.wraps(method)
    def run(*args, **kwargs):
        with NoHostReads():
            return method(*args, **kwargs)
    return run


def lengths_checked(step_lengths, seen):
    """_Data.step_lengths, its lengths checked against the device inputs' own validity over the
    real rows (every >= 0): the last valid step of any of them, as trim measured it before."""
    @functools.wraps(step_lengths)
    def run(self, inputs, every):
        lengths = step_lengths(self, inputs, every)
        real = torch.as_tensor(every >= 0).unsqueeze(-1)
        for valid, item in self.companions.items():
            steps = (seq.validity(inputs[item], inputs[valid]) * real).flatten(0, 1).any(0).numpy()
            assert lengths[id(inputs[item])] == (np.flatnonzero(steps).max() + 1 if steps.any() else 1)
            seen.append(lengths[id(inputs[item])])
        return lengths
    return run


def trim_given_lengths(trim, trimmed):
    """trim, asserting that its caller gave the block's length (no step measured on the device)."""
    @functools.wraps(trim)
    def run(x, valid, multiple=1):
        assert id(x) in (seq.STEP_LENGTHS.get() or {}), "a sequence block without its length from the host"
        trimmed.append(x.shape[2])
        return trim(x, valid, multiple)
    return run


@pytest.mark.usefixtures("no_plots")
@pytest.mark.parametrize("name", ["e2el", "coattention", "crossbert"])
def test_sequence_models_train_and_predict_without_reading_the_device(name, sequence_cache, tmp_path, monkeypatch):
    """A run (training steps, validation passes, the test pass) with every forward, training step,
    gather and step length refused any read from the device: the same steps are kept as the
    device inputs' own validity says, every trimmed block got its length from the host."""
    model, features, config, options = RUNS[name]
    seen, trimmed = [], []
    monkeypatch.setattr(loop, "plan_groups",  # all members at once (no probe)
                        lambda problem, model, make, data, cfg, n: loop.Plan(10, False, data.eval_rows))
    for cls, method in ((ensemble.Ensemble, "loss"), (ensemble.Ensemble, "predict"), (ensemble.MemberAdam, "step"),
                        (loop._Data, "gather")):
        monkeypatch.setattr(cls, method, without_host_reads(getattr(cls, method)))
    monkeypatch.setattr(loop._Data, "step_lengths",
                        lengths_checked(without_host_reads(loop._Data.step_lengths), seen))
    for module in (e2el, coattention):
        monkeypatch.setattr(module, "trim", trim_given_lengths(seq.trim, trimmed))
    for channels in (1, 3):  # constants a process makes once per device may be made before
        e2el.normalise_pixels(torch.zeros(1, channels, 1, 1))
    run = _run(sequence_cache, "seq", tmp_path / name, model, features, config, options)
    assert (run / "metrics.json").exists()
    if name != "crossbert":  # crossbert keeps its 25 crops: no trim
        assert trimmed and seen


@pytest.mark.parametrize("block", [np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0.5]]),
                                   np.array([2.5, 0, -1, 5, 7, 1])])
def test_host_lengths_are_the_last_valid_steps_the_device_reads(block):
    """A mask (holes included, > 0 valid) or a count (fractions rounded up, at most T): the steps up
    to each clip's last valid one, as fuse.models.seq.validity reads the same block on the device."""
    T = 5
    device = seq.validity(torch.zeros(1, len(block), T), torch.as_tensor(block, dtype=torch.float32)[None])[0]
    expected = [int(np.flatnonzero(row).max()) + 1 if row.any() else 0 for row in device.numpy()]
    assert loop.valid_steps(block, T).tolist() == expected
    assert loop.longest(loop.valid_steps(block, T)) == max(max(expected), 1)
    assert loop.longest(np.zeros(0, np.int64)) == 1  # a batch of padding alone keeps one step
