"""Nothing a user types loses data: an empty or shrunken corpus, a corpus named twice, an option
out of range, a full disk, Ctrl-C. Each ends with one clear line; the cache keeps what it had."""
import dataclasses
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from cache import DamagedFile, FeatureReader, open_clips, open_feature
from cache.__main__ import main as cache_main
from cache.verify import verify_file
from extract.__main__ import main
from extract.core import base
from tests.conftest import write_table
from tests.media import write_clip


def corpus(folder: Path, ids, seconds=0.5, speech=None, name="clips.csv", label="happy") -> Path:
    for cid in ids:
        if not (folder / f"{cid}.wav").exists():
            write_clip(folder / f"{cid}.wav", speech[: int(16000 * seconds)])
    return write_table(folder / name, [dict(id=cid, path=f"{cid}.wav", split="train", label=label) for cid in ids])


def extract(*args, cache):
    return CliRunner().invoke(main, [*args, "--cache", str(cache), "--quiet"])


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp-*"))


def test_an_empty_clips_csv_is_refused_before_any_work(tmp_path, speech_16k):
    cache = tmp_path / "cache"
    full = corpus(tmp_path, ["a", "b", "c"], speech=speech_16k)
    assert extract("--dataset", "d", "--clips", str(full), "--features", "mfcc", cache=cache).exit_code == 0
    before = {p: p.read_bytes() for p in (cache / "d").glob("*.h5")}
    header_only = tmp_path / "header_only.csv"
    header_only.write_text("id,path,split,label,valence,text\n")
    refused = extract("--dataset", "d", "--clips", str(header_only), "--features", "mfcc", cache=cache)
    assert refused.exit_code == 2, refused.output
    assert f"{header_only}: the corpus has no clips" in refused.output and "extracted" not in refused.output
    assert {p: p.read_bytes() for p in (cache / "d").glob("*.h5")} == before  # table and feature untouched
    assert open_clips("d", cache).ids == ["a", "b", "c"]


def test_a_corpus_that_drops_clips_replaces_the_table_only_when_asked(tmp_path, speech_16k):
    cache = tmp_path / "cache"
    args = ("--features", "mfcc")
    full = corpus(tmp_path, ["a", "b", "c", "d"], speech=speech_16k)
    assert extract("--dataset", "d", "--clips", str(full), *args, cache=cache).exit_code == 0
    fewer = corpus(tmp_path, ["a", "b"], speech=speech_16k, name="fewer.csv", label="sad")
    refused = extract("--dataset", "d", "--clips", str(fewer), *args, cache=cache)
    assert refused.exit_code == 2, refused.output
    assert "holds 2 clips this corpus lacks (c, d)" in refused.output and "--replace-clips" in refused.output
    assert "extracted" not in refused.output and open_clips("d", cache).ids == ["a", "b", "c", "d"]
    asked = extract("--dataset", "d", "--clips", str(fewer), *args, "--replace-clips", cache=cache)
    assert asked.exit_code == 0, asked.output
    assert "2 clips dropped, 2 clips with a new label, split or valence; it is replaced" in asked.output
    assert open_clips("d", cache).ids == ["a", "b"] and open_feature("d", "mfcc", cache).ids == ["a", "b", "c", "d"]
    more = corpus(tmp_path, ["a", "b", "e"], speech=speech_16k, name="more.csv", label="sad")
    added = extract("--dataset", "d", "--clips", str(more), *args, cache=cache)  # only adds: no flag needed
    assert added.exit_code == 0 and "clip table of d: 1 clips added; it is replaced" in added.output, added.output
    assert open_clips("d", cache).ids == ["a", "b", "e"]


def test_a_clips_table_and_a_corpus_folder_together_are_refused(tmp_path, speech_16k):
    cache = tmp_path / "cache"
    clips = corpus(tmp_path, ["a"], speech=speech_16k)
    both = ["--root", str(tmp_path), "--clips", str(clips)]
    message = f"--clips {clips} and --root {tmp_path} both name the corpus"
    runs = [extract("--dataset", "d", *both, "--features", "mfcc", cache=cache),
            CliRunner().invoke(cache_main, ["clips", "d", *both, "--cache", str(cache)]),
            CliRunner().invoke(cache_main, ["import-npy", str(tmp_path), "--dataset", "d", "--feature", "x",
                                            *both, "--cache", str(cache)])]
    for result in runs:
        assert result.exit_code == 2 and message in result.output, result.output
    assert not cache.exists()


def _numeric_options():
    """(feature, option, a value below its range) for every numeric option of every registered extractor."""
    cases = []
    for name, cls in sorted(base.REGISTRY.items()):
        for f in dataclasses.fields(cls.Config):
            default = f.default
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                continue
            low = f.metadata.get("at_least")
            if low == base.ANY:
                continue
            bad = (low - 1 if low is not None else 0) if isinstance(default, int) else (
                -0.5 if low is not None else 0.0)
            cases.append((name, f.name, type(default)(bad)))
    return cases


@pytest.mark.parametrize("feature, option, value", _numeric_options())
def test_every_numeric_option_out_of_range_is_refused_before_any_work(tmp_path, feature, option, value):
    result = extract("--dataset", "d", "--clips", str(tmp_path / "none.csv"), "--features", feature,
                     "--set", f"{feature}.{option}={value}", cache=tmp_path / "cache")
    assert result.exit_code == 2, result.output
    assert f"{feature}: option {option}={value} is out of range (allowed: " in result.output, result.output
    assert not (tmp_path / "cache").exists()


def test_the_rules_cover_every_registered_extractor_and_model_kind():
    assert len({case[0] for case in _numeric_options()}) >= 20  # the whole registry has numeric options
    for name in base.REGISTRY:
        base.build(name)  # every default is inside its range
    for kind in base.KINDS:
        with pytest.raises(ValueError, match=f"{kind}:some/model: option .* is out of range"):
            budget = "batch_tokens" if kind in ("text", "llm") else "batch_seconds"  # text kinds count tokens
            base.build(f"{kind}:some/model", {budget: "0"})


def test_mfcc_n_mfcc_negative_is_refused_as_the_issue_saw_it(tmp_path, speech_16k):
    clips = corpus(tmp_path, ["a"], speech=speech_16k)
    result = extract("--dataset", "d", "--clips", str(clips), "--features", "mfcc", "--set", "mfcc.n_mfcc=-5",
                     cache=tmp_path / "cache")
    assert result.exit_code == 2
    assert "mfcc: option n_mfcc=-5 is out of range (allowed: >= 1)" in result.output, result.output


def test_a_shard_says_what_it_leaves_for_the_others(tmp_path, speech_16k):
    clips = corpus(tmp_path, ["a", "b", "c", "d", "e", "f"], speech=speech_16k)
    result = extract("--dataset", "d", "--clips", str(clips), "--features", "mfcc", "--shard", "1/2",
                     cache=tmp_path / "cache")
    assert result.exit_code == 0, result.output
    assert "clips of the other shards are not cached yet; the last shard to finish merges them" in result.output
    assert "waiting" not in result.output


# --- a real full disk: a small tmpfs as the cache folder ---------------------------------------

@contextmanager
def tmpfs(folder: Path, size: str):
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a tmpfs, which this user cannot mount: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def resize(folder: Path, size: str):
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def run_extract(clips: Path, cache: Path, *args) -> subprocess.CompletedProcess:
    """`python -m extract` in its own process: a crash (a segfault) is an exit status here."""
    return subprocess.run([sys.executable, "-m", "extract", "--dataset", "d", "--clips", str(clips),
                           "--cache", str(cache), "--quiet", *args], capture_output=True, text=True, timeout=240)


def assert_ends_with_no_space(done: subprocess.CompletedProcess, cache: Path, final: str):
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"no space left on device: {cache}/d/{final}"), last
    assert last.endswith("; nothing half-written is left; free space and run the same command again")
    assert temporaries(cache) == []  # the temporary was removed; nothing half-written under a final name


def test_a_full_disk_during_the_merge_ends_cleanly_and_a_rerun_merges(tmp_path, speech_16k):
    clips = corpus(tmp_path, [f"c{i}" for i in range(8)], speech=speech_16k)  # 8 x 262 KB of pieces
    with tmpfs(tmp_path / "cache", "3m") as cache:  # the parts fit, the merged copy beside them does not
        done = run_extract(clips, cache, "--features", "e2el-spectrogram", "--flush-every", "4")
        assert_ends_with_no_space(done, cache, "e2el-spectrogram.h5")
        parts = sorted((cache / "d" / "e2el-spectrogram.parts").glob("*.h5"))
        assert len(parts) == 2 and all(verify_file(p).problems == [] for p in parts)  # both committed parts kept
        assert not (cache / "d" / "e2el-spectrogram.h5").exists()
        resize(cache, "8m")
        again = run_extract(clips, cache, "--features", "e2el-spectrogram")
        assert again.returncode == 0 and "8 already cached" in again.stdout and "(complete)" in again.stdout
        assert FeatureReader(cache / "d" / "e2el-spectrogram.h5").ids == [f"c{i}" for i in range(8)]


def test_a_full_disk_while_writing_parts_ends_cleanly_and_a_rerun_resumes(tmp_path, speech_16k):
    clips = corpus(tmp_path, [f"c{i}" for i in range(8)], speech=speech_16k)
    with tmpfs(tmp_path / "cache", "1m") as cache:  # room for one part of 2 clips (0.5 MB), not two
        done = run_extract(clips, cache, "--features", "e2el-spectrogram", "--flush-every", "2")
        assert_ends_with_no_space(done, cache, "e2el-spectrogram.parts/")
        committed = sorted((cache / "d" / "e2el-spectrogram.parts").glob("*.h5"))
        assert len(committed) == 1 and verify_file(committed[0]).problems == []
        resize(cache, "8m")
        again = run_extract(clips, cache, "--features", "e2el-spectrogram", "--flush-every", "2")
        assert again.returncode == 0 and "extracted 6 clips" in again.stdout and "2 already cached" in again.stdout


def test_a_full_disk_while_writing_the_clip_table_keeps_the_old_one(tmp_path, speech_16k):
    clips = corpus(tmp_path, [f"c{i:04d}" for i in range(3)], speech=speech_16k)
    big = write_table(tmp_path / "big.csv", [dict(id=f"c{i:04d}", path="c0000.wav", split="train")
                                             for i in range(3000)])  # adds clips: replaces without a flag
    with tmpfs(tmp_path / "cache", "256k") as cache:
        first = subprocess.run([sys.executable, "-m", "cache", "clips", "d", "--clips", str(clips), "--cache",
                                str(cache)], capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        (cache / "filler").write_bytes(b"\0" * (cache.stat().st_blksize * 8))
        free = os.statvfs(cache).f_bavail * os.statvfs(cache).f_frsize
        (cache / "filler2").write_bytes(b"\0" * (free - 8192))  # about 8 KB left: not room for 3000 clips
        done = subprocess.run([sys.executable, "-m", "cache", "clips", "d", "--clips", str(big), "--cache",
                               str(cache)], capture_output=True, text=True)
        assert done.returncode == 1 and "Traceback" not in done.stderr, (done.returncode, done.stderr)
        assert done.stderr.strip().splitlines()[-1] == f"no space left on device: {cache}/d/_clips.h5; nothing " \
            "half-written is left; free space and run the same command again"
        assert temporaries(cache) == [] and open_clips("d", cache).ids == ["c0000", "c0001", "c0002"]


# --- Ctrl-C ------------------------------------------------------------------------------------

def test_ctrl_c_with_workers_ends_with_one_line_and_a_rerun_completes(tmp_path, speech_16k):
    ids = [f"c{i:02d}" for i in range(16)]
    clips = corpus(tmp_path, ids, seconds=1, speech=speech_16k)
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "extract", "--dataset", "d", "--clips", str(clips), "--cache", str(cache),
               "--features", "egemaps", "--flush-every", "2", "--quiet"]
    proc = subprocess.Popen(command + ["--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # its own process group, as a terminal's job
    parts = cache / "d" / "egemaps.parts"
    try:
        while proc.poll() is None and not list(parts.glob("*.h5")):
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole group, workers included
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted: committed parts are kept; run the same command again to resume"
    assert len(err.strip().splitlines()) == 2, err  # the corpus summary, then that line
    assert temporaries(cache) == []
    kept = sorted(parts.glob("*.h5"))
    assert kept and all(verify_file(p).problems == [] for p in kept)
    again = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    assert "already cached" in again.stdout and " 0 already cached" not in again.stdout  # it resumed
    assert open_feature("d", "egemaps", cache).ids == ids


def test_damaged_parts_are_refused_before_any_work(tmp_path, speech_16k):
    clips = corpus(tmp_path, ["a", "b", "c"], speech=speech_16k)
    cache = tmp_path / "cache"
    assert extract("--dataset", "d", "--clips", str(clips), "--features", "mfcc", cache=cache).exit_code == 0
    path = cache / "d" / "mfcc.h5"
    path.write_bytes(path.read_bytes()[:2000])
    result = extract("--dataset", "d", "--clips", str(clips), "--features", "mfcc", cache=cache)
    assert result.exit_code == 2 and f"damaged file {path}: truncated" in result.output, result.output
    assert "--overwrite" in result.output
    with pytest.raises(DamagedFile):
        FeatureReader(path)
    fixed = extract("--dataset", "d", "--clips", str(clips), "--features", "mfcc", "--overwrite", cache=cache)
    assert fixed.exit_code == 0 and open_feature("d", "mfcc", cache).ids == ["a", "b", "c"]
