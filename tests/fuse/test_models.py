"""Every fusion model and option learns the separable synthetic problem through the full CV protocol,
and the option takes effect in the saved fold models."""
import json

import numpy as np
import pytest
import torch

from fuse.training import TrainRequest, run_training

pytestmark = pytest.mark.usefixtures("no_plots")

AV = {"A": ["acoustic"], "V": ["visual"]}
# three acoustic units for AFG (two layers of a per-layer feature and a plain one) and one visual
AFG_UNITS = {"A": ["layers@1,2", "acoustic"], "V": ["visual"]}


def train(cache, out, model, features, epochs=15, **options):
    request = TrainRequest.from_options(model=model, features=features, cache_dir=str(cache), out=str(out),
                                        quiet=True, **({"epochs": epochs} if model != "lgbm" else {}), **options)
    return run_training(request).metrics


def fold_state(run, system, name="seed0-fold0"):
    return torch.load(run / "weights" / system / f"{name}.pt", weights_only=False)["state"]


def assert_learns(m):
    assert m["cv"]["weighted_f1"]["mean"] > 0.9, m["cv"]
    assert m["test1"]["weighted_f1"]["mean"] > 0.9, m["test1"]


@pytest.mark.parametrize("model, features, options, keys", [
    ("mlp", AV, {}, {"encoder.0.weight"}),
    ("attention", AV, {}, {"score.weight", "score_bias"}),
    ("attention", AV, {"attention_scores": "raw"}, {"score_mlp.0.weight", "score.bias"}),
    ("afg", AFG_UNITS, {"structure": "1"}, {"gathers.0.weight", "task_weights.log_delta"}),
    ("afg", AFG_UNITS, {"structure": "2"}, {"gathers.3.weight"}),   # one gathering per acoustic unit + 1
    ("afg", AFG_UNITS, {"structure": "3"}, {"gathers.1.weight"}),   # intra-, then inter-modal
    ("afg", AV, {"decoder": "jdev"}, {"decoder.joint.weight", "decoder.emotion_valence.weight"}),
], ids=["mlp", "attention-softmax", "attention-raw", "afg-1", "afg-2", "afg-3", "afg-jdev"])
def test_each_network_learns_the_separable_problem(synth_run, tmp_path, model, features, options, keys):
    cache, _ = synth_run
    assert_learns(train(cache, tmp_path, model, features, **options))
    state = fold_state(tmp_path, model)
    assert keys <= set(state), sorted(state)
    n_gathers = len({k.split(".")[1] for k in state if k.startswith("gathers.")})
    assert n_gathers == {"1": 1, "2": 4, "3": 2}.get(options.get("structure"), n_gathers)


def test_afg_defaults_are_ustcs_da_mat_alignment_and_joint_decoding():
    """USTC Fig. 2: each unit through its dimension-align matrix (linear, no bias: a combination of
    inputs gives the same combination of aligned states) to width 128; more --hidden widths put
    Linear-ReLU-Dropout layers before the matrix."""
    from fuse.models import build, make_config

    torch.manual_seed(0)
    net = build("afg", make_config("afg"), [(2, 8), (5,)], ["A", "V"], 6).eval()
    assert len(net.encoders) == 3   # two layers of the per-layer feature, one vector
    for aligner, d in zip(net.encoders, (8, 8, 5)):
        x, y = torch.randn(1, 4, d), torch.randn(1, 4, d)
        assert aligner(x).shape == (1, 4, 128)
        torch.testing.assert_close(aligner(2 * x - 3 * y), 2 * aligner(x) - 3 * aligner(y))
    deeper = build("afg", make_config("afg", hidden=(16, 4)), [(5,)], ["A"], 6).eval().encoders[0]
    x = torch.randn(1, 4, 5)
    assert deeper(x).shape == (1, 4, 4) and not torch.allclose(deeper(-x), -deeper(x))
    # decoded jointly (Eq. 5-8) with the uncertainty-weighted loss (Eq. 9), as the submitted systems
    assert net.decoder.kind == "jdev" and net.task_weights.log_delta is not None


def test_afg_all_structures_fused_at_decision_level(synth_run, tmp_path, monkeypatch):
    from fuse import systems as fuse_systems

    from .test_decision import nested_by_hand
    from .test_train import truth

    cache, _ = synth_run
    trained, real = [], fuse_systems._systems
    monkeypatch.setattr(fuse_systems, "_systems", lambda *a: trained.append(real(*a)) or trained[-1])
    m = train(cache, tmp_path, "afg", AV, epochs=10, structure="all")
    assert_learns(m)
    systems = m["systems"]
    assert set(systems) == {"structure1", "structure2", "structure3"}
    weights = np.array([s["weight"] for s in systems.values()])
    assert weights.sum() == pytest.approx(1) and (weights >= 0).all()
    np.testing.assert_allclose(weights * 10, np.round(weights * 10), atol=1e-9)  # the 0.1 grid
    # the test splits are fused with the weights chosen on every fold ...
    meta = json.loads((tmp_path / "model.json").read_text())
    assert [s["weight"] for s in meta["systems"]] == pytest.approx(weights.tolist())
    assert m["decision_fusion"]["weights"] == pytest.approx(trained[0][1].tolist())
    # ... and the CV figure is nested: each fold scored with the weights chosen on the other folds
    fits = [s.fit for s in trained[0][0]]
    cv = np.load(tmp_path / "scores" / "cv.npz")
    labels, valence = truth(cv["ids"])
    oofs, vals = [f.oof_probs for f in fits], [f.oof_valence for f in fits]
    assert m["cv"]["combined"]["per_seed"] == pytest.approx(nested_by_hand(oofs, vals, labels, valence, cv["folds"]))
    assert "nested over folds" in m["decision_fusion"]["cv"]
    for k in range(5):  # scores/cv.npz: the nested out-of-fold predictions that figure scores
        val, w = cv["folds"][0] == k, m["decision_fusion"]["fold_weights"][0][k]
        np.testing.assert_allclose(cv["probs"][0, val], sum(x * o[0, val] for x, o in zip(w, oofs)), atol=1e-6)
    assert {p.name for p in (tmp_path / "weights").iterdir()} == set(systems)


def test_layer_weights_learn_to_favour_the_layers_with_the_signal(synth_run, tmp_path):
    cache, _ = synth_run
    assert_learns(train(cache, tmp_path, "attention", {"A": ["layers@all"], "V": ["visual"]}, epochs=20,
                        layer_weights=True))
    for k in range(5):
        w = fold_state(tmp_path, "attention", f"seed0-fold{k}")["pools.0.weights"].softmax(0)
        assert len(w) == 4 and min(w[1], w[2]) > max(w[0], w[3]), w  # the class signal is in layers 1 and 2


def test_lgbm_learns_the_separable_problem(synth_run, tmp_path, lgbm_one_thread):
    cache, _ = synth_run
    m = train(cache, tmp_path, "lgbm", AV)
    assert_learns(m)
    names = sorted(p.name for p in (tmp_path / "weights" / "lgbm").iterdir())
    assert names == [f"seed0-fold{k}.lgbm.json" for k in range(5)]
    # boosting stopped early on the validation fold, before the 1000-round limit
    assert 0 < np.max(m["best_epoch"]) < 1000


def test_bf16_learns_and_differs_from_fp32(synth_run, tmp_path, monkeypatch):
    from fuse import bf16 as held

    monkeypatch.setattr(held, "MIN_HELD", 0)  # the Linear weights in bf16 with fp32 masters, as at MER sizes
    cache, _ = synth_run
    fp32 = train(cache, tmp_path / "fp32", "attention", AV, epochs=10)
    bf16 = train(cache, tmp_path / "bf16", "attention", AV, epochs=10, precision="bf16")
    assert_learns(bf16)
    assert bf16["config"]["train"]["precision"] == "bf16"
    assert all(v.dtype == torch.float32 for v in fold_state(tmp_path / "bf16", "attention").values())
    # the products really ran in bfloat16: the validation probabilities are not the fp32 ones
    cv32 = np.load(tmp_path / "fp32" / "scores" / "cv.npz")["probs"]
    cv16 = np.load(tmp_path / "bf16" / "scores" / "cv.npz")["probs"]
    assert np.abs(cv32 - cv16).max() > 1e-4


def test_bf16_on_a_cpu_without_bfloat16_arithmetic_is_warned_about():
    from fuse.loop import bf16_warning

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    zen3 = "flags\t\t: fpu sse2 avx avx2 fma avx512f"  # no avx512_bf16 / amx_bf16
    sapphire = zen3 + " avx512_bf16 amx_bf16 amx_tile"
    assert "no bfloat16 arithmetic" in bf16_warning(cpu, "bf16", zen3)
    assert bf16_warning(cpu, "bf16", sapphire) is None
    assert bf16_warning(cpu, "fp32", zen3) is None
    assert bf16_warning(cuda, "bf16", zen3) is None
