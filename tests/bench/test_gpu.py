"""bench/gpu.py in its CPU mode (tiny sizes): every section runs end to end, and a step that
cannot run on this device names why in its row instead of stopping the benchmark."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_cpu_mode_prints_every_section_and_names_what_cannot_run(tmp_path):
    out = tmp_path / "table.md"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cpu",
                           "--dtype", "float16,float32", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = out.read_text()
    assert table.strip() in proc.stdout
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    by_run = {(row.split(" | ")[0][2:], row.split(" | ")[1]): row for row in rows}
    assert len(rows) == 6, table
    assert "RANDOM-INITIALISED" in table
    # float16 autocast does not exist on a CPU: both models' rows say so, and float32 is measured
    float16 = [row for (section, run), row in by_run.items() if run.endswith("float16")]
    assert len(float16) == 2 and all("float16 autocast is not supported on CPU" in row for row in float16)
    float32 = [row for (section, run), row in by_run.items() if run.endswith("float32")]
    assert len(float32) == 2 and all("audio h/h" in row and "one clip at a time" in row for row in float32)
    fusion = next(row for (section, _), row in by_run.items() if section == "fusion")
    assert "5 folds x 3 seeds" in fusion and "CV combined" in fusion and "not comparable" in fusion
    e2el = next(row for (section, _), row in by_run.items() if section == "e2el")
    assert "s per epoch" in e2el and "not measured (no CUDA on --device cpu)" in e2el and "extrapolated" in e2el


def test_a_device_this_machine_lacks_is_refused_before_any_work(tmp_path):
    out = tmp_path / "table.md"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cuda:7", "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--device cuda:7" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_the_fault_bench_starts_from_its_own_folder():
    """bench/cache/ and bench/fuse/ beside a top-level bench script must not be found as the packages
    cache and fuse (they were: an ImportError before any work)."""
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "faults.py"), "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "Usage: faults.py" in proc.stdout, proc.stderr[-2000:]
