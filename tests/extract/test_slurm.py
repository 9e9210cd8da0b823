"""The SLURM array templates as a real array task runs them (the environment SLURM sets, two
tasks, one cache): the merged features are the one-process extraction's."""
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest

from cache import open_feature
from extract.__main__ import parse_shard
from tests.conftest import write_table
from tests.media import write_clip

REPO = Path(__file__).resolve().parents[2]
IDS = [f"clip{i}" for i in range(8)]


@pytest.mark.parametrize("task, first, count, shard", [(0, 0, 2, (1, 2)), (1, 0, 2, (2, 2)), (8, 1, 8, (8, 8))])
def test_shard_auto_is_the_tasks_place_in_the_array(task, first, count, shard):
    environ = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": str(first),
               "SLURM_ARRAY_TASK_COUNT": str(count)}
    assert parse_shard("auto", environ) == shard


@pytest.mark.parametrize("environ, phrase", [
    ({}, "'auto' outside a SLURM array job: SLURM_ARRAY_TASK_ID is not set"),
    ({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, "a stepped or sparse"),
])
def test_shard_auto_outside_an_array_or_on_a_sparse_one_is_refused(environ, phrase):
    with pytest.raises(click.BadParameter, match=phrase):
        parse_shard("auto", environ)


@pytest.fixture
def corpus(tmp_path, speech_16k):
    rows = []
    for i, cid in enumerate(IDS):
        write_clip(tmp_path / f"{cid}.wav", speech_16k[: 6000 + 1000 * i] * (0.3 + 0.05 * i))
        rows.append(dict(id=cid, path=f"{cid}.wav", split="train", label="happy" if i % 2 else "sad"))
    return write_table(tmp_path / "clips.csv", rows)


def test_two_array_tasks_of_the_extraction_template_give_the_one_process_result(corpus, tmp_path):
    base = {**os.environ, "SLURM_SUBMIT_DIR": str(REPO), "PYTHON": sys.executable, "DATASET": "arr",
            "DATA": str(corpus), "FEATURES": "mfcc,egemaps", "CACHE": str(tmp_path / "cache"),
            "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_CPUS_PER_TASK": "1",
            "EXTRACT_OPTIONS": "--quiet --flush-every 2"}
    tasks = [subprocess.Popen(["bash", str(REPO / "slurm" / "extract.sbatch")], env={**base, "SLURM_ARRAY_TASK_ID": str(t)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for t in (0, 1)]
    outputs = [task.communicate(timeout=300)[0] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs
    assert any("shard 1/2" in out for out in outputs) and any("shard 2/2" in out for out in outputs)
    alone = subprocess.run([sys.executable, "-m", "extract", "--dataset", "arr", "--clips", corpus, "--features",
                            "mfcc,egemaps", "--cache", tmp_path / "alone", "--quiet"], capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr
    for feature, key in (("mfcc", "stats"), ("egemaps", None)):
        merged, single = open_feature("arr", feature, tmp_path / "cache"), open_feature("arr", feature, tmp_path / "alone")
        assert merged.ids == single.ids == IDS and not merged.failures()
        np.testing.assert_array_equal(merged.array(key), single.array(key))
    assert not (tmp_path / "cache" / "arr" / "mfcc.parts").exists()   # the last task merged every part
