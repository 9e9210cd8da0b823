"""Members trained in groups within a memory budget (fuse.training.memory, fuse.training.loop): the same run folder,
bit for bit, as all members at once; the budget parsed, defaulted from the machine, refused when
not one member fits; each member's dropout masks its own."""
import json

import numpy as np
import pytest
import torch

from cache import FeatureWriter, write_clips
from fuse.training import loop, memory
from fuse.models import make_config
from fuse.models.blocks import Dropout
from fuse.results.runs import run_training
from fuse.training.request import TrainRequest
from manifests.table import MER_CLASSES, Clip, Manifest

from tests.fuse.conftest import synthetic_corpus, train_cli, write_cache


def sequence_corpus(n_train=40, n_test=8, seed=0):
    """Clips of three classes, each a ragged sequence (3-10 steps) of gray 16x16 crops with their
    mask and of 8-bin frames with their count, plus a 5-d vector: the class shows in all three.
    The crop sequences' lengths differ between members' batches, so groups of members see other
    longest clips than all members do."""
    rng = np.random.default_rng(seed)
    clips, arrays = [], {}
    for i in range(n_train + n_test):
        cid, y, T = f"clip{i:03d}", i % 3, int(rng.integers(3, 11))
        crops = np.clip(90 * y + rng.normal(0, 40, (T, 16, 16)), 0, 255).astype(np.uint8)
        frames = (y + rng.normal(0, 1, (T, 8))).astype(np.float32)
        clips.append(Clip(cid, "train" if i < n_train else "test1", label=MER_CLASSES[y],
                          valence=float(y - 1 + rng.normal(scale=0.3))))
        arrays[cid] = {"crops": crops, "mask": np.ones(T, np.uint8), "frames": frames,
                       "vector": (y + rng.normal(0, 1, 5)).astype(np.float32)}
    return Manifest("seq", clips), arrays


@pytest.fixture(scope="module")
def sequence_cache(tmp_path_factory):
    """`seq` (ragged crops, mask, frames) and `vec` of the sequence corpus, through the cache writer."""
    root = tmp_path_factory.mktemp("seq") / "cache"
    manifest, arrays = sequence_corpus()
    write_clips(manifest, root=root)
    prov = {"extractor": "seq", "version": "1", "config": {}, "manifest_fingerprint": manifest.fingerprint()}
    seq = FeatureWriter(root, "seq", "seq", "fp-seq", prov, primary="n")
    vec = FeatureWriter(root, "seq", "vec", "fp-vec", {**prov, "extractor": "vec"}, primary="x")
    padded = FeatureWriter(root, "seq", "padded", "fp-padded", {**prov, "extractor": "padded"}, primary="crops")
    for cid, a in arrays.items():
        seq.put(cid, {"n": np.int32(len(a["mask"]))}, {k: a[k] for k in ("crops", "mask", "frames")})
        vec.put(cid, {"x": a["vector"]})
        T = len(a["mask"])  # the crops zero-padded to 10, as e2el's face crops are cached
        padded.put(cid, {"crops": np.pad(a["crops"], ((0, 10 - T), (0, 0), (0, 0))),
                         "mask": np.pad(a["mask"], (0, 10 - T))})
    seq.merge(), vec.merge(), padded.merge()
    return root


@pytest.fixture(scope="module")
def pooled_caches(tmp_path_factory):
    """The synthetic corpus (single- and multi-label) as cached `acoustic` and `visual` vectors."""
    base = tmp_path_factory.mktemp("pooled")
    return {multi: write_cache(base / str(multi), "synth", *synthetic_corpus(n_train=40, n_test=8, multi_label=multi))
            for multi in (False, True)}


CROPS, FRAMES = ["seq#crops", "seq#mask"], ["seq#frames", "seq#frames.length"]
# (model, features, config, options): small networks, two epochs, two seeds (10 members)
RUNS = {
    "attention": ("attention", {"A": ["acoustic"], "V": ["visual"]}, {"hidden": (16, 8)}, {}),
    "attention multi-label": ("attention", {"A": ["acoustic"], "V": ["visual"]}, {"hidden": (16, 8)}, {}),
    "afg jdev": ("afg", {"A": ["acoustic"], "V": ["visual"]}, {"hidden": (8,), "decoder": "jdev"}, {}),
    "e2el": ("e2el", {"V": ["padded#crops", "padded#mask"], "L": ["vec"]},
             {"channels": (4, 4, 4, 8, 8, 8), "width": 8, "layers": 1, "heads": 2, "feedforward": 16, "project": 16},
             {"batch_size": 8}),
    "coattention": ("coattention", {"A": FRAMES, "V": CROPS, "L": ["vec"]},
                    {"width": 8, "heads": 2, "feedforward": 16, "channels": (4, 4), "hidden": (8,), "projection": 8},
                    {"batch_size": 8}),
    "crossbert": ("crossbert", {"A": ["vec"], "V": CROPS}, {"width": 8, "channels": (4,), "hidden": (8,)},
                  {"batch_size": 8}),
}


def planned(size: int, recompute: bool = False):
    """A stand-in for loop.plan_groups: groups of `size`, the model's evaluation passes."""
    return lambda problem, model, make, data, cfg, n: loop.Plan(size, recompute, data.eval_rows)


def _run(cache, dataset, out, model, features, config, options):
    request = TrainRequest.from_options(model=model, dataset=dataset, features=features, cache_dir=str(cache),
                                        out=str(out), quiet=True, seeds=2, epochs=2, **options)
    request.configs = [make_config(model, **config)]
    run_training(request)
    return out


def _same_run_folders(a, b):
    """metrics.json but its seconds, every prediction, score and fold weight: byte for byte."""
    first, second = (json.loads((f / "metrics.json").read_text()) for f in (a, b))
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.suffix in (".csv", ".npz", ".pt"))
    assert any(f.suffix == ".pt" for f in files) and any(f.suffix == ".csv" for f in files)
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.usefixtures("no_plots")
@pytest.mark.parametrize("name", list(RUNS))
def test_members_trained_in_groups_give_the_run_of_all_members_at_once(name, sequence_cache, pooled_caches,
                                                                       tmp_path, monkeypatch):
    """10 members at once, then in groups of 3 (the last member alone beside a copy of itself) and
    of 4: the same run folder. Groups must draw every member's batches, dropout masks and sequence
    steps (the batch's longest clip over all members) as the run of all does."""
    model, features, config, options = RUNS[name]
    cache, dataset = (sequence_cache, "seq") if "vec" in str(features) else (pooled_caches["multi-label" in name], "synth")
    runs = {}
    for size in (10, 3, 4):
        monkeypatch.setattr(loop, "plan_groups", planned(size))
        runs[size] = _run(cache, dataset, tmp_path / str(size), model, features, config, options)
    _same_run_folders(runs[10], runs[3])
    _same_run_folders(runs[10], runs[4])


@pytest.mark.usefixtures("no_plots")
def test_recomputed_activations_give_the_run_of_activations_kept(sequence_cache, tmp_path, monkeypatch):
    """e2el's CNN recomputed in the backward pass (each conv + batch norm + ReLU keeping only its
    input), all members at once and in groups of 3: the run folder of activations kept, byte for
    byte. The recompute must draw each member's dropout masks again and leave the batch-norm
    running statistics (saved with the weights) as one forward pass leaves them; the groups'
    weights, kept on disk until all have trained, must come back whole and in order."""
    model, features, config, options = RUNS["e2el"]
    config = {**config, "dropout": 0.3}
    spilled, real = [], loop._Spilled
    monkeypatch.setattr(loop, "_Spilled", lambda states: spilled.append(len(states)) or real(states))
    runs = {}
    for size, recompute in ((10, False), (10, True), (3, True)):
        monkeypatch.setattr(loop, "plan_groups", planned(size, recompute))
        runs[size, recompute] = _run(sequence_cache, "seq", tmp_path / f"{size}-{recompute}", model, features,
                                     config, options)
    _same_run_folders(runs[10, False], runs[10, True])
    _same_run_folders(runs[10, False], runs[3, True])
    assert spilled == [3, 3, 3, 1]  # groups of 3, recomputing: each group's weights wait on disk


def test_member_groups_pair_a_lone_member_with_a_copy_of_itself():
    assert loop.member_groups(10, 3) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 9]]
    assert loop.member_groups(4, 4) == [[0, 1, 2, 3]]
    assert loop.member_groups(3, 1) == [[0], [1], [2]]  # one member is all that fits: alone


@pytest.mark.parametrize("member_dim, shape", [(0, (3, 5, 7)), (1, (4, 3 * 2, 5, 5))])
def test_each_member_draws_its_own_dropout_masks_whichever_members_run_beside_it(member_dim, shape):
    """Members 0-2 at once, then member 1 alone: the same mask for member 1 (its own generator)."""
    def masks(members):
        drop = Dropout(0.5, member_dim=member_dim).train()
        drop.generators = [torch.Generator().manual_seed(100 + e) for e in members]
        size = list(shape)
        size[member_dim] = shape[member_dim] // 3 * len(members)
        return drop(torch.ones(size)) > 0

    every, alone = masks([0, 1, 2]), masks([1])
    per_member = shape[member_dim] // 3
    member1 = every.narrow(member_dim, per_member, per_member)
    assert torch.equal(member1, alone)
    assert not torch.equal(member1, every.narrow(member_dim, 0, per_member))  # members differ
    assert 0.3 < alone.float().mean() < 0.7


@pytest.mark.parametrize("text, expected", [("6G", 6 << 30), ("512M", 512 << 20), ("8GiB", 8 << 30),
                                            ("1.5g", int(1.5 * (1 << 30))), ("2 GB", 2 << 30), ("4096", 4096)])
def test_max_memory_sizes(text, expected):
    assert memory.parse_size(text) == expected


@pytest.mark.parametrize("text", ["6X", "-1G", "G", "0"])
def test_max_memory_refuses_what_is_no_size(text):
    with pytest.raises(ValueError, match="expected a size"):
        memory.parse_size(text)


def test_the_group_is_as_large_as_the_budget_holds():
    cost = memory.MemberCost(fixed=100, training=900, evaluation=300, weights=10)   # 1000 per member
    held, reserved = 5000, 15 * 10
    assert memory.group_size(cost, 15, held + reserved + 3999, held, reserved, "e2el") == 3
    assert memory.group_size(cost, 15, held + reserved + 1000, held, reserved, "e2el") == 1
    assert memory.group_size(cost, 15, 10 ** 12, held, reserved, "e2el") == 15
    with pytest.raises(memory.MemoryBudgetError, match=r"one e2el member needs ~1M"):
        memory.group_size(memory.MemberCost(0, 1 << 20, 0, 0), 15, held + reserved + 999, held, reserved, "e2el")
    with pytest.raises(memory.MemoryBudgetError, match=r"--max-memory 5M \(what this machine has\): one e2el"):
        memory.group_size(memory.MemberCost(0, 1 << 20, 0, 0), 15, 5 << 20, 5 << 20, 0, "e2el", given=False)


def test_the_default_budget_is_what_the_machine_has():
    held = memory.process_memory(torch.device("cpu"))
    budget = memory.machine_budget(torch.device("cpu"))
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024
    assert 0 < held < budget <= held + total


def test_a_member_that_does_not_fit_is_refused_before_training(pooled_caches, tmp_path):
    out = tmp_path / "run"
    result = train_cli("--cache", pooled_caches[False], "--features", "A=acoustic;V=visual", "--quiet",
                       "--max-memory", "1M", "--out", out)
    assert result.exit_code == 2, result.output
    assert "--max-memory 1M: one attention member needs" in result.output
    assert "give at least --max-memory" in result.output
    assert not out.exists()
    result = train_cli("--cache", pooled_caches[False], "--features", "A=acoustic", "--max-memory", "6X")
    assert result.exit_code == 2 and "'6X': expected a size like 6G" in result.output


def test_the_budget_is_no_part_of_the_run_id(pooled_caches, tmp_path):
    from fuse.inputs.specs import SpecError
    from fuse.sweeps.plan import trial_run_id
    from fuse.sweeps.trials import Trial, parse_grid

    cache = pooled_caches[False]
    plain = Trial((("A", "acoustic"),), "attention", ())
    budgeted = Trial((("A", "acoustic"),), "attention", (("max_memory", "6G"),))
    assert trial_run_id(plain, "synth", cache, 1, tmp_path) == trial_run_id(budgeted, "synth", cache, 1, tmp_path)
    assert TrainRequest.from_options(max_memory="6G").train.max_memory == 6 << 30
    assert parse_grid("lr=1e-3,1e-4;max_memory=6G")["max_memory"] == ["6G"]   # fuse.sweep --grid
    with pytest.raises(SpecError, match="max_memory='6X': expected a size"):
        parse_grid("max_memory=6X")


def test_saved_members_predict_the_same_in_groups(pooled_caches):
    """A run's fold models scored one group at a time (the test pass of a grouped run, fuse.predict
    on a budget) give what they give all at once, bit for bit."""
    from fuse.training.ensemble import load_member
    from fuse.models import build
    from fuse.training.request import prepare

    model, features, config, _ = RUNS["attention"]
    request = TrainRequest.from_options(model=model, dataset="synth", features=features, seeds=2, epochs=2,
                                        cache_dir=str(pooled_caches[False]), quiet=True)
    _, problem, _ = prepare(request)
    net_config = make_config(model, **config)
    fit = loop.fit(problem, model, net_config, request.train, progress=False)
    test = problem.index("test1")
    blocks = [b[test] for b in problem.blocks]

    def member(e):
        return load_member(build(model, net_config, problem.shapes, problem.modalities, len(problem.classes)),
                           fit.states[e])

    together = loop.predict(fit._ensemble, fit._best_params, fit.norms, blocks, False)
    loaded = loop.load_ensemble(problem.shapes, problem.modalities, len(problem.classes), False, model, net_config,
                                fit.states)
    assert isinstance(loaded, loop.Ensemble) and loaded.n == 10  # all fit this machine at once
    for ens in (loaded, loop.MemberGroups(member, 10, 3, torch.device("cpu"))):
        for a, b in zip(together, loop.predict(ens, None, fit.norms, blocks, False)):
            assert a.shape[:2] == (10, len(test)) and np.array_equal(a, b)


def test_members_that_stop_early_in_groups_stop_as_they_do_all_at_once(pooled_caches, monkeypatch):
    """--patience within groups: each group trains until its own members stopped; every member's
    history, best epoch and out-of-fold outputs are those of the run of all, and the history is as
    long as the longest group's (the run of all trains until its last member stopped)."""
    from fuse.inputs.problem import load_problem

    problem = load_problem("synth", [("A", "acoustic")], root=pooled_caches[False])
    cfg = loop.TrainConfig(folds=3, seeds=(0, 1), epochs=40, lr=3e-2, patience=1)
    fits = {}
    for size in (6, 2):
        monkeypatch.setattr(loop, "plan_groups", planned(size))
        fits[size] = loop.fit(problem, "mlp", make_config("mlp", hidden=(16,)), cfg, progress=False)
    every, grouped = fits[6], fits[2]
    stops = (~np.isnan(every.history)).sum(-1).ravel()
    assert len(set(stops)) > 1 and stops.max() < 40  # members stop at different epochs, all before the end
    np.testing.assert_array_equal(grouped.history, every.history)  # NaN after each stop, same length
    np.testing.assert_array_equal(grouped.best_epoch, every.best_epoch)
    np.testing.assert_array_equal(grouped.oof_probs, every.oof_probs)
    for a, b in zip(grouped.states, every.states):
        assert all(torch.equal(a[k], b[k]) for k in a)


class Planned(Exception):
    """Raised by a stand-in for loop._train_groups: the plan, before any training."""


def _plan(cache, monkeypatch, **options):
    """fuse.training.loop's plan for the small e2el of RUNS (10 members) and its cost per member,
    the process's own memory taken as 0 (so that the budgets below mean the same on any machine)."""
    from fuse.training.request import prepare

    model, features, config, run_options = RUNS["e2el"]
    request = TrainRequest.from_options(model=model, dataset="seq", features=features, cache_dir=str(cache),
                                        quiet=True, seeds=2, epochs=1, **run_options, **options)
    _, problem, _ = prepare(request)
    costs, real = [], loop.member_cost
    monkeypatch.setattr(loop, "process_memory", lambda device: 0)
    monkeypatch.setattr(loop, "member_cost", lambda *a, **k: costs.append(real(*a, **k)) or costs[-1])

    def stop(make, seeds, size, data, cfg, problem, bar, lrs=None, recompute=False):
        raise Planned(size, recompute)

    monkeypatch.setattr(loop, "_train_groups", stop)
    with pytest.raises(Planned) as planned_:
        loop.fit(problem, model, make_config(model, **config), request.train, progress=False)
    return planned_.value.args, costs[0]


def test_recomputing_is_chosen_when_one_member_does_not_fit_otherwise(sequence_cache, monkeypatch):
    (size, recompute), cost = _plan(sequence_cache, monkeypatch)
    assert (size, recompute) == (10, False)  # what this machine has holds all, activations kept
    assert cost.recomputed is not None and cost.recomputed < cost.training / 2
    reserved = 10 * cost.weights
    between = reserved + (cost.total + cost.recomputing().total) // 2
    fits = (between - reserved) // cost.recomputing().total
    assert 1 <= fits < 10
    assert _plan(sequence_cache, monkeypatch, max_memory=between)[0] == (fits, True)
    assert _plan(sequence_cache, monkeypatch, max_memory=between, recompute="on")[0] == (fits, True)
    three = reserved + 3 * cost.recomputing().total
    assert _plan(sequence_cache, monkeypatch, max_memory=three, recompute="on")[0] == (3, True)
    with pytest.raises(memory.MemoryBudgetError, match=r"one e2el member needs ~[0-9.]+[MG] \(activations"):
        _plan(sequence_cache, monkeypatch, max_memory=between, recompute="off")
    with pytest.raises(memory.MemoryBudgetError, match="member needs ~[0-9.]+[MG], its activations recomputed,"):
        _plan(sequence_cache, monkeypatch, max_memory=reserved + cost.recomputing().total // 2)


def test_models_without_a_cnn_have_nothing_to_recompute(pooled_caches):
    from fuse.inputs.problem import load_problem

    problem = load_problem("synth", [("A", "acoustic"), ("V", "visual")], root=pooled_caches[False])
    probe = loop.Ensemble(lambda e: loop._member_net(problem, "attention", make_config("attention"), e), 2,
                          torch.device("cpu"))
    cost = memory.member_cost(probe, problem.shapes, {}, len(problem.classes), False, 64, 32)
    assert cost.recomputed is None and cost.training > 0


def test_evaluation_passes_are_the_models_own_on_a_cpu_and_fill_a_gpus_memory():
    """On a CPU the model's figure whatever the budget (products round by their shapes: a run's
    numbers must not depend on the memory it had); on a GPU as many clips as the group's share
    holds beside its fixed bytes, never fewer than the model's figure nor more than every clip."""
    cost = memory.MemberCost(fixed=1000, training=5000, evaluation=8 * 100 + 50, weights=10, eval_per_clip=100)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert memory.evaluation_rows(cost, 3, 10 ** 9, cpu, 8, 700) == 8
    assert memory.evaluation_rows(cost, 3, 10 ** 9, gpu, 8, 700) == 700
    assert memory.evaluation_rows(cost, 3, 3 * (1000 + 50 + 100 * 40), gpu, 8, 700) == 40
    assert memory.evaluation_rows(cost, 3, 3 * 1000, gpu, 8, 700) == 8
    assert memory.evaluation_rows(cost, 3, 10 ** 9, gpu, 8, 5) == 5


def test_the_probe_leaves_no_graph_behind():
    """The probe's forward pass is never run backward: its graph (the saved activations, ~3 GB of
    one MER-sized e2el probe) must be freed with its output, not kept alive by what the probe saw."""
    import gc
    import weakref

    x = torch.randn(1000, requires_grad=True)
    outputs = []

    def run():
        y = torch.relu(x * 2)   # relu keeps its own output for the backward pass
        outputs.append(weakref.ref(y))
        return y.sum()

    assert memory.saved_bytes(run).total >= 4000
    gc.collect()
    assert outputs[0]() is None
