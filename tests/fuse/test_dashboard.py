"""A sweep that Optuna's own tools read: optuna-dashboard, started on localhost against a sweep's
study, serves one finished trial per run with its real choices as parameters and its CV combined
score as its value (a learning-rate group's runs included), and optuna.visualization plots them."""
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from tests.postgres import free_port

from .conftest import synthetic_corpus, write_cache
from .test_trials import sweep_cli

DASHBOARD = Path(sys.executable).with_name("optuna-dashboard")


def get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    base = tmp_path_factory.mktemp("dashboard")
    manifest, arrays = synthetic_corpus(n_train=40, n_test=8, n_unlabelled=2)
    cache = write_cache(base / "cache", "synth", manifest, arrays)
    result = sweep_cli("--cache", cache, "--dataset", "synth", "--features", "A=acoustic|layers@1,2;V=visual",
                       "--grid", "lr=1e-2,3e-2;epochs=3;folds=2;hidden=16x8", "--runs", base / "runs",
                       "--out", base / "out", "--top-k", "0", "--quiet")
    assert result.exit_code == 0, result.output
    return base / "runs"


def test_optuna_dashboard_shows_one_trial_per_run_with_its_choices(sweep):
    port = free_port()
    server = subprocess.Popen([str(DASHBOARD), f"sqlite:///{sweep / 'study.db'}", "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                (summary,) = get(port, "/api/studies")["study_summaries"]
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("optuna-dashboard did not answer")
        trials = [t for t in get(port, f"/api/studies/{summary['study_id']}")["trials"] if t["state"] == "Complete"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    runs = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")}
    assert len(runs) == 5 * 2 and len(trials) == len(runs)   # 5 feature sets x 2 rates, each once
    seen = set()
    for trial in trials:
        params = {p["name"]: p["param_external_value"] for p in trial["params"]}
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        metrics = runs[attrs["run"]]
        config = metrics["config"]
        assert params["model"] == "attention" and "L" not in params          # no lexical feature in this sweep
        assert {m: params[m] for m in "AV" if params[m] != "none"} == {m: spec for spec, m in config["features"].items()}
        assert float(params["lr"]) == config["train"]["lr"] and params["hidden"] == "16x8"
        assert trial["values"][0] == pytest.approx(metrics["cv"]["combined"]["mean"])
        assert float(attrs["cv_weighted_f1"]) == pytest.approx(metrics["cv"]["weighted_f1"]["mean"])
        seen.add(attrs["run"])
    assert seen == set(runs)


def test_optuna_visualization_reads_the_sweep(sweep):
    import warnings

    from optuna.visualization.matplotlib import plot_slice   # plotly's version needs plotly

    name, = optuna.study.get_all_study_names(f"sqlite:///{sweep / 'study.db'}")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{sweep / 'study.db'}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = plot_slice(study, params=["A", "lr"])
    points = sum(len(collection.get_offsets()) for ax in axes for collection in ax.collections)
    assert [ax.get_xlabel() for ax in axes] == ["A", "lr"] and points == 2 * 10   # every run, in each panel
