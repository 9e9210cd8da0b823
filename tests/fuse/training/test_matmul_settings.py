"""fp32 products in TF32 on CUDA unless --deterministic, which turns on torch's deterministic
algorithms; both restored after a run, neither part of the run id (CPU runs are reproducible)."""
import dataclasses
import json
import os

import pytest
import torch

from fuse.training.loop import matmul_settings
from fuse.training.request import TrainRequest, prepare, run_id
from tests.fuse.conftest import SYNTH_RUN_ARGS, train_cli


@pytest.mark.parametrize("device, deterministic, tf32", [("cuda", False, True), ("cuda", True, False),
                                                         ("cpu", False, False), ("cpu", True, False)])
def test_tf32_on_cuda_unless_deterministic_and_restored(monkeypatch, device, deterministic, tf32):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled())
    restore = matmul_settings(torch.device(device), deterministic)
    try:
        assert torch.backends.cuda.matmul.allow_tf32 is tf32 and torch.backends.cudnn.allow_tf32 is tf32
        assert torch.are_deterministic_algorithms_enabled() is deterministic
        assert (os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8") is deterministic
    finally:
        restore()
    assert (torch.backends.cuda.matmul.allow_tf32, torch.are_deterministic_algorithms_enabled()) == before


def test_deterministic_changes_neither_the_numbers_nor_the_run_id_on_cpu(synth_run, tmp_path):
    cache, run = synth_run
    result = train_cli("--cache", cache, "--out", tmp_path / "det", *SYNTH_RUN_ARGS, "--deterministic")
    assert result.exit_code == 0, result.output
    ours, theirs = (json.loads((r / "metrics.json").read_text()) for r in (tmp_path / "det", run))
    assert ours["cv"] == theirs["cv"] and ours["test1"] == theirs["test1"]
    assert not torch.are_deterministic_algorithms_enabled()
    request = TrainRequest.from_options(dataset="synth", cache_dir=str(cache), features={"A": ["acoustic"]})
    _, problem, splits = prepare(request)
    inputs = {"clips": "same"}
    assert run_id(request, problem, splits, inputs) == run_id(
        dataclasses.replace(request, train=dataclasses.replace(request.train, deterministic=True)), problem, splits, inputs)
