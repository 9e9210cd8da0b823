"""Run folders lose nothing: --out replaces only a run folder, a copy of a cache or another clip
table never takes another's run, a full disk (a real tmpfs) leaves no half-written folder."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cache import open_clips, open_feature, write_clips
from cache.commit import machine
from fuse import folders, training
from manifests import Clip, Manifest

from .conftest import synthetic_corpus, train_cli, write_cache

QUICK = ["--features", "A=acoustic;V=visual", "--epochs", "2", "--folds", "2", "--hidden", "16", "--quiet"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    manifest, arrays = synthetic_corpus(n_train=40, n_test=8, n_unlabelled=4)
    return write_cache(tmp_path_factory.mktemp("folders") / "cache", "synth", manifest, arrays)


def train(cache, *args):
    return train_cli("--cache", cache, *QUICK, *args)


def tree(folder: Path) -> dict:
    """Every file under `folder` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_on_a_folder_that_is_not_a_run_is_refused_and_kept(cache, tmp_path, no_plots):
    thesis = tmp_path / "thesis"
    (thesis / "figures").mkdir(parents=True)
    (thesis / "chapter1.tex").write_text("\\chapter{Results}\n")
    (thesis / "figures" / "f1.pdf").write_bytes(b"%PDF-1.4 ...")
    before = tree(thesis)
    result = train(cache, "--out", thesis)
    assert result.exit_code == 2, result.output
    assert f"--out {thesis}: not a folder fuse wrote, and not empty; nothing in it is replaced" in result.output
    assert tree(thesis) == before and not list(tmp_path.glob(".*"))

    features = sorted((cache / "synth").iterdir())   # the cache's own folder: 12 feature files lost before
    result = train(cache, "--out", cache / "synth")
    assert result.exit_code == 2 and "not a folder fuse wrote" in result.output, result.output
    assert sorted((cache / "synth").iterdir()) == features
    assert open_feature("synth", "acoustic", cache).array().shape == (52, 16)


def test_out_replaces_a_run_folder_and_says_so_but_never_a_foreign_file_in_it(cache, tmp_path, no_plots):
    run = tmp_path / "run"
    run.mkdir()                                         # an empty folder is taken as it is
    first = train(cache, "--out", run, "--seeds", "1")
    assert first.exit_code == 0 and "replaced" not in first.output, first.output
    assert json.loads((run / folders.MARKER).read_text())["kind"] == "run"
    (run / "predict-other").mkdir()                     # what fuse.predict made from it
    (run / "predict-other" / "metrics.json").write_text("{}")
    again = train(cache, "--out", run, "--seeds", "2")
    assert again.exit_code == 0, again.output
    assert "(it replaced the earlier run in that folder, with what was made from it (predict-other))" in again.output
    assert len(json.loads((run / "metrics.json").read_text())["cv"]["combined"]["per_seed"]) == 2
    assert not (run / "predict-other").exists() and not list(tmp_path.glob(".run.*"))

    (run / "notes.txt").write_text("seed 1 looked odd")   # the user's own file inside the run folder
    before = tree(run)
    result = train(cache, "--out", run)
    assert result.exit_code == 2, result.output
    assert "this run folder also holds notes.txt, which fuse did not write" in result.output
    assert tree(run) == before


def test_a_run_folder_written_before_markers_is_still_replaced(cache, tmp_path, no_plots):
    run = tmp_path / "old-run"
    assert train(cache, "--out", run).exit_code == 0
    (run / folders.MARKER).unlink()                     # as a run of an earlier release
    assert folders.kind_of(run) == "run"
    assert train(cache, "--out", run).exit_code == 0 and (run / folders.MARKER).is_file()


def test_pseudo_labels_inside_the_folder_being_replaced_are_refused(cache, tmp_path, no_plots):
    run = tmp_path / "run"
    assert train(cache, "--out", run).exit_code == 0
    pseudo = run / "semi-synth-test3.csv"
    pseudo.write_text("id,split,label,score\nclip0050,test3,happy,0.9\n")
    result = train(cache, "--out", run, "--pseudo", pseudo)
    assert result.exit_code == 2, result.output
    assert "lies in --out" in result.output and pseudo.is_file()


def test_a_copy_of_the_cache_and_another_clip_table_get_their_own_runs(cache, tmp_path, no_plots):
    work = tmp_path / "data"
    original = work / "cache"
    shutil.copytree(cache, original)
    copy = work / "cache-copy"
    shutil.copytree(original, copy)
    first = train(original)
    assert first.exit_code == 0, first.output
    folder = Path(first.output.split("run folder: ")[1].split()[0])
    assert folder.parent == work / "runs" / "synth"    # beside the cache, not ./data/runs
    kept = tree(folder)
    second = train(copy)
    assert second.exit_code == 0, second.output
    folder2 = Path(second.output.split("run folder: ")[1].split()[0])
    assert folder2.parent == folder.parent and folder2 != folder and tree(folder) == kept

    table = open_clips("synth", copy)   # one label changed in the copy's clip table: another run
    clips = [Clip(cid, split, label="sad" if cid == "clip0000" else ";".join(names) or None,
                  valence=None if np.isnan(v) else float(v))
             for cid, split, names, v in zip(table.ids, table.split_of(), table.label_names(), table.valence())]
    write_clips(Manifest("synth", clips, classes=table.classes), "synth", copy)
    third = train(copy)
    assert third.exit_code == 0, third.output
    folder3 = Path(third.output.split("run folder: ")[1].split()[0])
    assert folder3 not in (folder, folder2) and tree(folder) == kept


def test_a_dead_process_leftovers_are_tidied_and_a_half_swapped_run_put_back(tmp_path):
    runs, here = tmp_path / "runs", machine()
    dead = _dead_pid()
    (runs / f".attention-A-1.fuse-tmp-{dead}@{here}" / "weights").mkdir(parents=True)   # killed while writing
    (runs / f".attention-A-2.fuse-old-{dead}@{here}").mkdir()                           # killed mid-swap
    (runs / f".attention-A-2.fuse-old-{dead}@{here}" / "metrics.json").write_text("{}")
    kept = [runs / f".attention-A-3.fuse-tmp-{os.getpid()}@{here}",     # a live writer's
            runs / f".attention-A-4.fuse-tmp-{dead}@another-node",      # another machine's (shared runs folder)
            runs / f".thesis.old-{dead}"]                                # not ours at all
    for path in kept:
        path.mkdir()
    folders.remove_stale(runs)
    assert sorted(p.name for p in runs.iterdir()) == sorted(["attention-A-2", *(p.name for p in kept)])
    assert (runs / "attention-A-2" / "metrics.json").is_file()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture(params=[8, 64], ids=lambda kb: f"{kb}KB-free")
def full_disk(tmp_path, request):
    """A real filesystem with a few KB free (the run fails at another file): a 1 MB tmpfs, filled
    (needs root, as CI has)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs (needs root)")
    try:
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        (mount / "filler").write_bytes(b"\0" * (free - (request.param << 10)))
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_ends_with_one_line_and_leaves_no_half_written_run(cache, full_disk, no_plots):
    out = full_disk / "run"
    result = train(cache, "--out", out, "--seeds", "2")
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"no space left on device: {out}; nothing half-written")
    assert "Traceback" not in result.output and "enforce fail" not in result.output
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_predict_and_semi_replace_only_what_they_wrote(cache, tmp_path, no_plots):
    from click.testing import CliRunner

    from fuse.predict import main as predict_main
    from fuse.semi import main as semi_main

    run = tmp_path / "run"
    assert train(cache, "--out", run).exit_code == 0

    def predict(*args):
        return CliRunner().invoke(predict_main, ["--run", run, "--dataset", "synth", "--cache", cache, *map(str, args)])

    def semi(*args):
        return CliRunner().invoke(semi_main, ["--run", run, "--dataset", "synth", "--unlabelled", "test3",
                                              "--cache", cache, *map(str, args)])

    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "metrics.json").write_text('{"my": "own"}')
    refused = predict("--out", thesis)
    assert refused.exit_code == 2 and "not a folder fuse wrote" in refused.output, refused.output
    assert (thesis / "metrics.json").read_text() == '{"my": "own"}'
    for _ in range(2):   # its own folder, then replaced
        result = predict("--out", tmp_path / "scored")
        assert result.exit_code == 0, result.output
    assert folders.kind_of(tmp_path / "scored") == "predict" and not list(tmp_path.glob(".scored*"))

    mine = tmp_path / "selected.csv"
    mine.write_text("name,discrete,valence\nclip1,happy,2\n")   # a submission file, not pseudo-labels
    refused = semi("--out", mine)
    assert refused.exit_code == 2 and "is not a pseudo-label CSV of fuse.semi" in refused.output, refused.output
    assert mine.read_text() == "name,discrete,valence\nclip1,happy,2\n"
    for _ in range(2):
        result = semi("--out", tmp_path / "pseudo.csv")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "pseudo.csv").read_text().startswith("id,split,label,score\n")


def _write_reports(folder: str, tag: str, rounds: int, start):
    start.wait()   # both writers at once
    for i in range(rounds):
        with folders.written(Path(folder), "sweep") as tmp:
            (tmp / "leaderboard.csv").write_text(f"{tag},{i}\n" * 50)


def test_processes_swapping_in_the_same_folder_at_once_leave_one_whole(tmp_path):
    """The workers of a sweep array all write its report when they end."""
    import multiprocessing

    folder = tmp_path / "sweep-report"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    writers = [context.Process(target=_write_reports, args=(str(folder), tag, 300, start)) for tag in "ab"]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
    assert [w.exitcode for w in writers] == [0, 0]
    lines = set((folder / "leaderboard.csv").read_text().splitlines())
    assert len(lines) == 1 and folders.kind_of(folder) == "sweep"   # one writer's report, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep-report"]
