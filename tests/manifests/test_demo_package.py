"""The demo synthesizer is a package of its own: its CLI, and loading a corpus without it."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # run from the checkout so that its own packages are imported


def run_python(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_loading_a_demo_corpus_needs_no_synthesizer(tmp_path):
    # a written corpus is read by the mer2023 loader alone: no dlib, espeak-ng or generator code
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "sample_00000001.mp4").write_bytes(b"")
    (tmp_path / "train-label.csv").write_text("name,discrete,valence\nsample_00000001,sad,-2.5\n")
    code = ("import sys; from manifests import load_manifest; m = load_manifest('demo', root=sys.argv[1]); "
            "print(m.ids, m['sample_00000001'].label); "
            "print(sorted(n for n in sys.modules if n.startswith(('manifests.demo', 'dlib', 'espeakng'))))")
    done = run_python("-c", code, str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['sample_00000001'] sad", "[]"]


def test_cli_refuses_too_few_clips_before_writing(tmp_path):
    done = run_python("-m", "manifests.demo", "--out", str(tmp_path / "demo"), "--clips", "3")
    assert done.returncode == 2
    assert "--clips" in done.stderr and "3 is not in the range x>=4" in done.stderr
    assert not (tmp_path / "demo").exists()
