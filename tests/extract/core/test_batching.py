"""The batched path of the runner: length-sorted batches within a budget, failures isolated."""
from dataclasses import dataclass

import numpy as np
import pytest
from click.testing import CliRunner

from cache import open_feature
from extract.__main__ import main
from extract.core import base
from tests.conftest import write_table
from tests.media import write_clip


@dataclass(frozen=True)
class RmsConfig:
    batch_seconds: float = 3.6


class BatchRms(base.BatchExtractor):
    """Per-clip RMS and length, computed batch-wise on zero-padded audio (as a model would)."""

    name, dims, description, Config = "test-batch-rms", "2", "test only", RmsConfig
    batches: list = []

    def extract_batch(self, clips, payloads):
        if any(c.id == "poison" for c in clips):
            raise RuntimeError("poisoned clip")
        BatchRms.batches.append([c.id for c in clips])
        padded = np.zeros((len(payloads), max(len(p) for p in payloads)), np.float32)
        for row, p in enumerate(payloads):
            padded[row, :len(p)] = p
        lengths = np.array([len(p) for p in payloads])
        rms = np.sqrt((padded ** 2).sum(1) / lengths)
        return [base.Output(arrays={"rms": np.array([r, n], np.float32)}) for r, n in zip(rms, lengths)]


def test_batches_respect_the_budget_and_isolate_a_failing_clip(tmp_path, speech_16k, monkeypatch):
    monkeypatch.setitem(base.REGISTRY, BatchRms.name, BatchRms)
    rows, expected = [], {}
    for i, seconds in enumerate([0.5, 2.0, 1.0, 0.7, 1.5, 0.4]):
        cid = "poison" if i == 3 else f"clip{i}"
        audio = speech_16k[: int(seconds * 16000)] * (0.2 + 0.1 * i)
        write_clip(tmp_path / f"{cid}.wav", audio)
        expected[cid] = np.sqrt(np.mean(audio.astype(np.float64) ** 2))
        rows.append(dict(id=cid, path=f"{cid}.wav", split="train"))
    table = write_table(tmp_path / "clips.csv", rows)
    BatchRms.batches.clear()
    result = CliRunner().invoke(main, ["--dataset", "b", "--clips", str(table), "--features", BatchRms.name,
                                       "--cache", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    feat = open_feature("b", BatchRms.name, tmp_path / "cache")
    assert feat.failures() == {"poison": "test-batch-rms failed: RuntimeError: poisoned clip"}
    for cid in feat.ok_ids():
        rms, n = feat.array(ids=[cid])[0]
        assert abs(rms - expected[cid]) < 2e-3  # 16-bit PCM quantisation
    assert sum(len(b) for b in BatchRms.batches) == 5 and max(len(b) for b in BatchRms.batches) > 1
    for batch in BatchRms.batches:
        seconds = feat.array(ids=batch)[:, 1] / 16000
        assert len(batch) == 1 or seconds.sum() <= 3.6  # within the batch budget


@pytest.mark.parametrize("workers", [1, 2])
def test_decoding_runs_ahead_of_a_slow_model_by_a_bounded_window(tmp_path, speech_16k, workers):
    import time

    from extract.acoustic.spectral import LogMel
    from extract.core.runner import _results
    from manifests import load_manifest

    rows = []
    for i in range(24):
        write_clip(tmp_path / f"c{i:02d}.wav", speech_16k[:8000])
        rows.append(dict(id=f"c{i:02d}", path=f"c{i:02d}.wav", split="train"))
    manifest = load_manifest("w", clips=write_table(tmp_path / "clips.csv", rows))
    extractors = {"logmel": LogMel(), "rms": BatchRms()}  # a batched feature: read-ahead is on
    pulled, lead = [0], []

    def jobs():
        for clip in manifest:
            pulled[0] += 1
            yield clip, ["logmel", "rms"]

    consumed = 0
    for clip_id, results, _ in _results(jobs(), extractors, workers, window=3):
        consumed += 1
        lead.append(pulled[0] - consumed)
        assert results["logmel"][0] == "ok"
        time.sleep(0.03)  # the model is the bottleneck
    assert consumed == 24
    assert max(lead) <= 3 + 1  # the window, plus the job being handed over
    assert max(lead) >= 2      # and decoding did run ahead
