"""Faults a user meets, tried on a copy of a finished `make demo`: what each gives, and what is lost.

Every row runs the real commands in subprocesses on real files: bytes overwritten and files cut
short behind HDF5's back, a real full filesystem (a small tmpfs, remounted larger for the rerun),
a real SIGINT to the command's process group (as a terminal's Ctrl-C), a real `kill -9`. "Lost"
compares, byte for byte, what must survive (the cache, the clip table, a user's folder, an earlier
run) and checks that no temporary is left and that a rerun finishes. Needs root (tmpfs).

    python bench/faults.py [--cache data/cache] [--corpus data/demo]    # after `make demo`

Prints a markdown table (docs/reliability.md holds the latest); exits 1 if a row is not as expected.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
import h5py

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # else bench/cache/ beside this script is found as a package named cache

from cache.commit import machine  # noqa: E402
TRAIN = ["fuse.train", "--dataset", "demo", "--cache", "data/cache", "--modalities", "A,L,V", "--epochs", "5",
         "--quiet"]


@dataclass
class Row:
    fault: str
    command: str
    exit: int
    says: str
    lost: str
    expected_exit: int

    def ok(self) -> bool:
        return self.exit == self.expected_exit and self.lost.startswith("none")


class Workspace:
    """A folder holding `data/cache` (a copy of the demo cache) where commands run."""

    def __init__(self, base: Path, cache: Path, corpus: Path):
        self.base, self.cache_source, self.corpus = base, cache, corpus.resolve()

    def fresh(self, name: str) -> Path:
        home = self.base / name
        shutil.copytree(self.cache_source, home / "data" / "cache", symlinks=True)
        return home

    def run(self, home: Path, args, timeout=600) -> tuple[int, str]:
        proc = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=home, env=_env(), capture_output=True,
                              text=True, timeout=timeout)
        return proc.returncode, proc.stdout + proc.stderr

    def start(self, home: Path, args, log: Path) -> subprocess.Popen:
        with open(log, "w") as out:
            return subprocess.Popen([sys.executable, "-m", *map(str, args)], cwd=home, env=_env(), stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def tree(folder: Path) -> str:
    """SHA-256 over every file under `folder` (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def line_with(text: str, phrase: str) -> str:
    return next((line.strip() for line in text.splitlines() if phrase in line), last_line(text))


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob(".*") if ".tmp-" in p.name or ".fuse-" in p.name)


def kept(checks: dict[str, bool], home: Path | None = None) -> str:
    """'none' when every check holds and no temporary is left under `home`, else what failed."""
    failed = [what for what, held in checks.items() if not held]
    left = temporaries(home) if home else []
    if left:
        failed.append(f"temporaries left: {', '.join(left[:3])}")
    return "none" if not failed else "LOST: " + "; ".join(failed)


# --- stage 2: what --out replaces, copies of a cache --------------------------------------------

def out_on_a_users_folder(ws: Workspace) -> list[Row]:
    home = ws.fresh("thesis")
    thesis = home / "thesis"
    (thesis / "figures").mkdir(parents=True)
    (thesis / "chapter1.tex").write_text("\\chapter{Results}\n")
    (thesis / "figures" / "f1.pdf").write_bytes(b"%PDF-1.4")
    before, cache = tree(thesis), tree(home / "data" / "cache")
    rows = []
    for fault, out in (("`--out` names a folder of the user's", "thesis"),
                       ("`--out` names the cache's own folder", "data/cache/demo")):
        code, text = ws.run(home, [*TRAIN, "--out", out])
        rows.append(Row(fault, f"fuse.train ... --out {out}", code, last_line(text),
                        kept({"thesis changed": tree(thesis) == before,
                              "cache changed": tree(home / "data" / "cache") == cache}, home), 2))
    return rows


def copy_of_the_cache(ws: Workspace) -> list[Row]:
    home = ws.fresh("copy")
    shutil.copytree(home / "data" / "cache", home / "data" / "cache-copy")
    code, text = ws.run(home, TRAIN)
    first = Path(line_with(text, "run folder:").split("run folder: ")[-1])
    before = tree(home / first)
    code2, text2 = ws.run(home, [*(a if a != "data/cache" else "data/cache-copy" for a in TRAIN)])
    second = Path(line_with(text2, "run folder:").split("run folder: ")[-1])
    says = f"two run folders: {first.name}, {second.name}"
    return [Row("the same fuse.train on a copy of the cache", "fuse.train --cache data/cache-copy ...", code2, says,
                kept({"first run replaced": second != first and tree(home / first) == before}, home), 0)]


# --- damaged files --------------------------------------------------------------------------------

def overwrite_middle(path: Path, size: int = 4096):
    """`size` bytes in the middle of the file replaced by other bytes (as a bad sector or a bad copy)."""
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        block = bytearray(f.read(size))
        f.seek(path.stat().st_size // 2)
        f.write(bytes(b ^ 0xA5 for b in block))


def flip_a_block(path: Path, key: str):
    """64 bytes inside the first stored block of array `key` changed (a bad sector in the data)."""
    with h5py.File(path, "r") as f:
        offset = f[key].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as f:
        f.seek(offset + 128)
        block = f.read(64)
        f.seek(offset + 128)
        f.write(bytes(b ^ 0xA5 for b in block))


def damaged_cache_files(ws: Workspace) -> list[Row]:
    rows = []
    home = ws.fresh("changed")
    demo = home / "data" / "cache" / "demo"
    overwrite_middle(demo / "egemaps.h5")
    flip_a_block(demo / "is10.h5", "arrays/functionals")
    for fault, modalities in (("4 KB overwritten in the middle of egemaps.h5", "A,L,V"),
                              ("64 bytes changed inside a block of is10.h5's array", "A")):
        args = [*TRAIN, "--features", "A=is10"] if "is10" in fault else TRAIN
        code, text = ws.run(home, [a if a != "A,L,V" else modalities for a in args])
        rows.append(Row(fault, "fuse.train ..." + (" --features A=is10" if "is10" in fault else ""), code,
                        last_line(text), kept({"a run was written": not (home / "data" / "runs").exists()}, home), 1))
    code, text = ws.run(home, ["cache", "verify", "--cache", "data/cache"])
    bad = [line.split()[-1] for line in text.splitlines() if line.startswith("BAD")]
    rows.append(Row("the same two files", "cache verify", code, f"BAD {', '.join(bad)}; " + last_line(text),
                    "none (named)", 1))

    home = ws.fresh("truncated")
    demo = home / "data" / "cache" / "demo"
    os.truncate(demo / "face-fer2013.h5", (demo / "face-fer2013.h5").stat().st_size // 2)
    code, text = ws.run(home, TRAIN)
    rows.append(Row("face-fer2013.h5 cut to half its size", "fuse.train ...", code, last_line(text),
                    kept({"a run was written": not (home / "data" / "runs").exists()}, home), 1))
    code, text = ws.run(home, ["cache", "ls", "--cache", "data/cache"])
    listed = sum(1 for line in text.splitlines() if line.startswith("demo ") and "DAMAGED" not in line)
    rows.append(Row("the same file", "cache ls", code, f"{listed} other features listed; "
                    + " ".join(line_with(text, "DAMAGED").split()), "none", 1))
    os.truncate(demo / "_clips.h5", (demo / "_clips.h5").stat().st_size // 2)
    code, text = ws.run(home, ["cache", "clips", "demo", "--cache", "data/cache"])
    rows.append(Row("_clips.h5 cut to half its size", "cache clips demo", code, last_line(text), "none (named)", 1))
    return rows


def damaged_run_folders(ws: Workspace) -> list[Row]:
    home = ws.fresh("runs")
    code, text = ws.run(home, TRAIN)
    run = home / line_with(text, "run folder:").split("run folder: ")[-1]
    rows = []
    for fault, damage, command in (
            ("a fold weight cut short", lambda r: os.truncate(next(r.glob("weights/*/*.pt")), 100), "fuse.predict"),
            ("model.json broken", lambda r: (r / "model.json").write_text('{"systems": ['), "fuse.semi"),
            ("weights/ removed", lambda r: shutil.rmtree(r / "weights"), "fuse.predict")):
        copy = run.with_name(run.name + "-" + command.split(".")[1] + str(len(rows)))
        shutil.copytree(run, copy)
        damage(copy)
        before = tree(copy)
        args = (["fuse.predict", "--run", copy, "--dataset", "demo", "--cache", "data/cache"] if command == "fuse.predict"
                else ["fuse.semi", "--run", copy, "--dataset", "demo", "--unlabelled", "test3", "--cache", "data/cache"])
        code, text = ws.run(home, args)
        rows.append(Row(f"run folder: {fault}", f"{command} --run RUN ...", code, last_line(text).replace(str(home) + "/", ""),
                        kept({"something written into the run": tree(copy) == before}, home), 2))
    return rows


def absurd_rows(ws: Workspace) -> list[Row]:
    home = ws.fresh("absurd")
    with h5py.File(home / "data" / "cache" / "demo" / "egemaps.h5", "r+") as f:  # through HDF5: checksums match
        f["arrays/functionals"][4, 17] = 3e38
    code, text = ws.run(home, TRAIN)
    return [Row("a row holding 3e38 (finite, absurd) in egemaps", "fuse.train ...", code, line_with(text, "warning:"),
                "none (trained, with the clips named)", 0)]


# --- bad input ------------------------------------------------------------------------------------

def bad_input(ws: Workspace) -> list[Row]:
    home = ws.fresh("input")
    cache = home / "data" / "cache"
    table = tree(cache)
    (home / "header_only.csv").write_text("id,path,split,label,valence,text\n")
    labels = (ws.corpus / "train-label.csv").read_text().splitlines()[1:7]
    rows_csv = ["id,path,split,label,valence,text"] + [
        f"{n},{ws.corpus / 'train' / (n + '.mp4')},train,{label},{valence}," for n, label, valence in
        (line.split(",") for line in labels)]
    (home / "six_clips.csv").write_text("\n".join(rows_csv) + "\n")
    test1 = (ws.corpus / "test1-label.csv").read_text().splitlines()[1].split(",")[0]
    (home / "pseudo.csv").write_text(f"id,label\n{test1},happy\n")
    extract = ["extract", "--dataset", "demo", "--cache", "data/cache", "--features", "egemaps"]
    sweep = ["fuse.sweep", "--dataset", "demo", "--cache", "data/cache", "--modalities", "A"]
    cases = [
        ("a clips CSV with a header and no row", "extract --clips header_only.csv",
         [*extract, "--clips", "header_only.csv"], 2),
        ("a clips CSV lacking 90 of the cached clips", "extract --clips six_clips.csv",
         [*extract, "--clips", "six_clips.csv"], 2),
        ("`--root` and `--clips` together", "extract --root CORPUS --clips six_clips.csv",
         [*extract, "--root", ws.corpus, "--clips", "six_clips.csv"], 2),
        ("an option out of its range", "extract --features mfcc --set mfcc.n_mfcc=-5",
         ["extract", "--dataset", "demo", "--root", ws.corpus, "--cache", "data/cache", "--features", "mfcc",
          "--set", "mfcc.n_mfcc=-5"], 2),
        ("a feature that is not cached", "cache info demo nosuchfeature",
         ["cache", "info", "demo", "nosuchfeature", "--cache", "data/cache"], 2),
        ("`--pseudo` naming a labelled test1 clip", "fuse.train ... --pseudo pseudo.csv",
         [*TRAIN, "--pseudo", "pseudo.csv"], 2),
        ("a `--storage` URL that cannot be opened", "fuse.sweep ... --storage postgresql://me:secret@127.0.0.1:1/sweeps",
         [*sweep, "--storage", "postgresql://me:secret@127.0.0.1:1/sweeps"], 2),
        ("a budget that is not positive", "fuse.sweep ... --budget -1h", [*sweep, "--budget", "-1h"], 2),
        ("more folds than the rarest class has clips", "fuse.train ... --folds 12", [*TRAIN, "--folds", "12"], 0),
    ]
    out = []
    for fault, shown, args, expected in cases:
        code, text = ws.run(home, args)
        says = line_with(text, "warning: --folds") if expected == 0 else last_line(text)
        out.append(Row(fault, shown, code, says.replace(str(home) + "/", "").replace(str(ws.corpus), "CORPUS"),
                       kept({"cache changed": expected == 0 or tree(cache) == table}, home), expected))
    return out


# --- a full disk, Ctrl-C, kill -9 -----------------------------------------------------------------

class Tmpfs:
    def __init__(self, mount: Path, size: str):
        self.mount, self.size = mount, size

    def __enter__(self):
        self.mount.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.mount)], check=True)
        return self

    def grow(self, size: str):
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.mount)], check=True)

    def __exit__(self, *exc):
        subprocess.run(["umount", str(self.mount)], check=True)


def full_disk(ws: Workspace) -> list[Row]:
    home = ws.base / "full"
    home.mkdir()
    rows = []
    with Tmpfs(home / "small", "640k") as disk:
        args = ["extract", "--dataset", "demo", "--root", ws.corpus, "--cache", "small", "--features", "is10,egemaps",
                "--quiet"]
        code, text = ws.run(home, args)
        left = temporaries(home / "small")
        disk.grow("16m")
        code2, text2 = ws.run(home, args)
        rows.append(Row("a full disk while extracting (a 640 KB tmpfs)", "extract --features is10,egemaps", code,
                        last_line(text).replace(str(home) + "/", ""),
                        kept({"temporaries left": not left, "rerun after freeing space finished": code2 == 0}), 1))
    work = ws.fresh("full-train")
    with Tmpfs(work / "small", "1m"):
        free = os.statvfs(work / "small").f_bavail * os.statvfs(work / "small").f_frsize
        (work / "small" / "filler").write_bytes(b"\0" * (free - (64 << 10)))
        code, text = ws.run(work, [*TRAIN, "--out", "small/run"])
        lost = kept({"something half-written": sorted(p.name for p in (work / "small").iterdir()) == ["filler"]})
        rows.append(Row("a full disk while writing the run folder", "fuse.train --out FULL/run", code, last_line(text),
                        lost, 1))
    return rows


def wait_until(condition, timeout: float, proc) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.2)
    return False


def interrupted(ws: Workspace) -> list[Row]:
    rows = []
    home = ws.base / "ctrl-c"
    home.mkdir()
    extract = ["extract", "--dataset", "demo", "--root", ws.corpus, "--cache", "cache", "--features",
               "mfcc", "--workers", "2", "--flush-every", "8"]
    for kind, sig in (("Ctrl-C", signal.SIGINT), ("kill -9", signal.SIGKILL)):
        shutil.rmtree(home / "cache", ignore_errors=True)
        proc = ws.start(home, extract, home / "extract.log")
        wait_until(lambda: any((home / "cache" / "demo").glob("*.parts/*.h5")), 300, proc)
        os.killpg(proc.pid, sig)
        proc.wait()
        parts = len(list((home / "cache" / "demo").glob("*.parts/*.h5")))
        left = temporaries(home / "cache") if kind == "Ctrl-C" else []   # a killed process's: the rerun's to tidy
        code, text = ws.run(home, extract)
        resumed = re.search(r"(\d+) already cached", text)
        says = (last_line((home / "extract.log").read_text()) if kind == "Ctrl-C" else
                f"(killed: no message) {parts} committed part(s) kept; the rerun extracted the other clips")
        checks = {"temporaries left": not left and not temporaries(home / "cache"), "rerun finished": code == 0,
                  "rerun extracted every clip again": bool(resumed) and int(resumed[1]) > 0}
        rows.append(Row(f"{kind} during extraction (2 workers)", "extract --features mfcc --workers 2",
                        proc.returncode if proc.returncode >= 0 else 128 - proc.returncode, says, kept(checks),
                        130 if kind == "Ctrl-C" else 137))
    work = ws.fresh("ctrl-c-fuse")
    for what, args, ready in (
            ("fuse.train", [*TRAIN[:-3], "--epochs", "100000"], lambda log: "epoch" in log.read_text()),
            # one feature per modality: the 7 trials of A, L, V (a sweep's default is every cached one)
            ("fuse.sweep --workers 2", ["fuse.sweep", "--dataset", "demo", "--cache", "data/cache", "--features",
                                        "A=egemaps;L=text-minilm@-1;V=face-fer2013", "--grid", "epochs=300",
                                        "--workers", "2", "--top-k", "0"],
             lambda log: len(list((work / "data" / "runs" / "demo").glob("*/metrics.json"))) >= 1)):
        log = work / f"{what.split()[0]}.log"
        proc = ws.start(work, args, log)
        wait_until(lambda: ready(log), 300, proc)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait()
        text = log.read_text()
        checks = {"a traceback printed": "Traceback" not in text}
        if what.startswith("fuse.sweep"):
            code, rerun = ws.run(work, args[:-4] + ["--workers", "1", "--top-k", "0"])
            checks["rerun finished"] = code == 0
        rows.append(Row(f"Ctrl-C during {what.split()[0].split('.')[1]}", what, proc.returncode, last_line(text),
                        kept(checks, work), 130))
    return rows


SCENARIOS = [out_on_a_users_folder, copy_of_the_cache, damaged_cache_files, damaged_run_folders, absurd_rows,
             bad_input, full_disk, interrupted]


@click.command()
@click.option("--cache", "cache_dir", default="data/cache", show_default=True, type=click.Path(exists=True),
              help="A cache holding the demo (make demo).")
@click.option("--corpus", default="data/demo", show_default=True, type=click.Path(exists=True),
              help="The demo corpus (make demo-corpus).")
@click.option("--only", help="Run the scenarios whose function name contains this.")
def main(cache_dir, corpus, only):
    if os.geteuid() != 0:
        raise click.ClickException("needs root: it mounts small tmpfs filesystems")
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        ws = Workspace(Path(tmp), Path(cache_dir), Path(corpus))
        for scenario in SCENARIOS:
            if only and only not in scenario.__name__:
                continue
            rows += scenario(ws)
            print(f"{scenario.__name__}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    print("| fault | command | exit | what the user sees (last line) | lost |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        mark = "" if row.ok() else f" **(expected exit {row.expected_exit})**"
        says = re.sub(r"/\S*?/faults-[^/]+/[^/]+/", "", row.says).replace(f"@{machine()}", "@HOST").replace("|", "/")
        print(f"| {row.fault} | `{row.command}` | {row.exit}{mark} | {says} | {row.lost} |")
    bad = [r for r in rows if not r.ok()]
    print(f"\n{len(rows)} faults, {len(bad)} not as expected, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
