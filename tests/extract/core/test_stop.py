"""An extractor that fails on every clip is stopped, loudly, with nothing cached for it."""
from dataclasses import dataclass

import numpy as np
import pytest
from click.testing import CliRunner

from cache import open_feature
from extract.__main__ import main
from extract.core import base
from extract.core.recorder import STOP_AFTER
from tests.conftest import write_table
from tests.media import write_clip

N_CLIPS = STOP_AFTER + 4


@dataclass(frozen=True)
class PeakConfig:
    storage: str = "bfloat16"  # numpy has no bfloat16: every clip raises the same TypeError
    no_clip: str = ""          # ids of clips this extractor refuses as bad clips (ClipError), '+'-separated
    batch_seconds: float = 1.0


class Peak(base.Extractor):
    """Peak amplitude per clip, stored in `storage`: with the default, an extractor bug."""

    name, dims, description, Config = "test-peak", "1", "test only", PeakConfig
    calls = []

    def extract(self, clip, media):
        Peak.calls.append(clip.id)
        if clip.id in self.config.no_clip.split("+"):
            raise base.ClipError("this clip holds nothing to measure")
        peak = np.abs(media.audio).max(keepdims=True)
        return base.Output(arrays={"peak": peak.astype(self.config.storage)})


class BatchPeak(Peak, base.BatchExtractor):
    """The same bug in a batched extractor's model step (extract_batch), as item 2's was."""

    name = "test-batch-peak"

    def extract_batch(self, clips, payloads):
        return [self.extract(clip, type("Media", (), {"audio": audio})) for clip, audio in zip(clips, payloads)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("stop")
    rows = []
    for i in range(N_CLIPS):
        write_clip(root / f"c{i:02d}.wav", np.full(4000, 0.01 * (i + 1), np.float32))
        rows.append(dict(id=f"c{i:02d}", path=f"c{i:02d}.wav", split="train"))
    return write_table(root / "clips.csv", rows)


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    for cls in (Peak, BatchPeak):
        monkeypatch.setitem(base.REGISTRY, cls.name, cls)
    Peak.calls.clear()


def run(corpus, cache, features, *settings, workers=1):
    args = ["--dataset", "p", "--clips", str(corpus), "--features", features, "--cache", str(cache), "--quiet",
            "--workers", str(workers)]
    for s in settings:
        args += ["--set", s]
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("feature, workers", [(Peak.name, 1), (BatchPeak.name, 1), (Peak.name, 2)])
def test_a_feature_failing_on_its_first_clips_with_one_error_is_stopped(corpus, tmp_path, feature, workers):
    result = run(corpus, tmp_path, f"{feature},mfcc", workers=workers)
    assert result.exit_code == 1, result.output
    error = "TypeError: data type 'bfloat16' not understood"
    assert f"{feature} STOPPED: its first {STOP_AFTER} clips failed with the same error" in result.output
    assert error in result.output and result.output.count("Traceback (most recent call last)") == 1
    assert 'in extract\n    return base.Output(arrays={"peak": peak.astype(self.config.storage)})' in result.output
    assert f"{feature:<18} -> " in result.output and f"STOPPED on {error}" in result.output
    assert "FAILED" not in result.output  # no clip is blamed
    log = (tmp_path / "p" / "extract.log").read_text()
    assert f"ERROR {feature} STOPPED" in log and "Traceback (most recent call last)" in log
    # nothing cached for it, so fixing it and running again extracts every clip
    assert not (tmp_path / "p" / f"{feature}.h5").exists() and not (tmp_path / "p" / f"{feature}.parts").exists()
    if workers == 1:  # (workers count in their own processes)
        assert sorted(set(Peak.calls)) == [f"c{i:02d}" for i in range(STOP_AFTER)]  # no work after the stop
    assert open_feature("p", "mfcc", tmp_path).status == ["ok"] * N_CLIPS  # the other feature went on
    fixed = run(corpus, tmp_path, f"{feature},mfcc", f"{feature}.storage=float32")
    assert fixed.exit_code == 0 and f"extracted {N_CLIPS} clips" in fixed.output, fixed.output
    peaks = open_feature("p", feature, tmp_path).array()[:, 0]
    np.testing.assert_allclose(peaks, 0.01 * np.arange(1, N_CLIPS + 1), atol=1e-4)


def test_failures_before_the_first_success_are_kept_when_the_feature_works(corpus, tmp_path):
    """Bad clips (ClipError) never stop a feature, however many come first."""
    bad = [f"c{i:02d}" for i in range(STOP_AFTER + 1)]
    result = run(corpus, tmp_path, Peak.name, f"{Peak.name}.storage=float32", f"{Peak.name}.no_clip={'+'.join(bad)}")
    assert result.exit_code == 1 and "STOPPED" not in result.output, result.output
    feat = open_feature("p", Peak.name, tmp_path)
    assert feat.failures() == {cid: "test-peak failed: ClipError: this clip holds nothing to measure" for cid in bad}
    assert feat.status[len(bad):] == ["ok"] * (N_CLIPS - len(bad))


def test_a_few_same_failures_below_the_limit_are_recorded_as_failures(corpus, tmp_path):
    few = CliRunner().invoke(main, ["--dataset", "few", "--clips", str(corpus), "--features", Peak.name,
                                    "--limit", str(STOP_AFTER - 1), "--cache", str(tmp_path), "--quiet"])
    assert few.exit_code == 1 and "STOPPED" not in few.output, few.output
    failures = open_feature("few", Peak.name, tmp_path).failures()
    assert len(failures) == STOP_AFTER - 1 and "not understood" in failures["c00"]
