"""The folders stage 2 writes (a run, a prediction, a sweep's reports): claimed before any work,
written beside under a temporary name, swapped in whole.

Each carries a marker, `fuse.json` ({"format", "kind", "written"}), so a folder is replaced only
when it provably is one of ours, of the same kind; a folder holding anything else is refused before
any work. Inside a run folder, fuse.predict's `predict-<dataset>/` and fuse.semi's `semi-*.csv`
(their defaults) are outputs of that run and go with it when it is replaced.

    claim(folder, "run")                     # before any work: Refused (exit 2) if not ours
    with written(folder, "run") as tmp:      # write into tmp; swapped in on success; removed on
        ...                                  # any error or Ctrl-C; a full disk: OSError(ENOSPC, folder)
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from cache.cli import NO_SPACE, Refused
from cache.commit import alive, machine, owner

MARKER = "fuse.json"
FORMAT = "mer-fuse-folder/1"
# what each kind of folder holds: names written by fuse, and prefixes of outputs derived from it
CONTENTS = {
    "run": ({MARKER, "config.json", "metrics.json", "model.json", "missing.csv", "predictions", "scores", "weights",
             "confusion.png", "curves.png"}, ("predict-", "semi-", "fusion")),
    "predict": ({MARKER, "metrics.json", "predictions", "scores"}, ()),
    "sweep": ({MARKER, "leaderboard.csv", "leaderboard.md", "table3.md", "pair_heatmap.png", "fusion_gain.png",
               "sweep.json", "fusion"}, ()),
}
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.fuse-(?P<what>tmp|old)-(?P<pid>\d+)@(?P<machine>.+)")


def kind_of(folder: Path) -> str | None:
    """The kind of fuse folder `folder` is ('run', 'predict', 'sweep'), None if it is none. A run
    written before markers existed is recognised by its model.json and metrics.json."""
    try:
        blob = json.loads((folder / MARKER).read_text())
        return blob.get("kind") if blob.get("format") == FORMAT else None
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError):
        return None
    try:
        model = json.loads((folder / "model.json").read_text())
    except (OSError, ValueError):
        return None
    return "run" if isinstance(model, dict) and "systems" in model and (folder / "metrics.json").is_file() else None


def claim(folder, kind: str, option: str = "--out") -> bool:
    """Check before any work that `folder` may receive a `kind` folder: it is absent, empty, or a
    `kind` folder of ours holding nothing foreign. Returns whether an old one will be replaced;
    refuses (exit 2) otherwise, naming what is in the way."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise Refused(f"{option} {folder}: is a file, not a folder")
    if not folder.is_dir() or not any(folder.iterdir()):
        return False
    found = kind_of(folder)
    if found != kind:
        what = f"a {found} folder" if found else "not a folder fuse wrote"
        raise Refused(f"{option} {folder}: {what}, and not empty; nothing in it is replaced. "
                      f"Give a new or empty folder, or a {kind} folder to replace")
    foreign = sorted(p.name for p in folder.iterdir() if not _ours(p.name, kind))
    if foreign:
        raise Refused(f"{option} {folder}: this {kind} folder also holds {', '.join(foreign[:5])}, which fuse did "
                      "not write; move them out first, or give another folder")
    return True


def derived_outputs(folder: Path, kind: str) -> list[str]:
    """Entries of an old `kind` folder made from it by other commands (they go when it is replaced)."""
    prefixes = CONTENTS[kind][1]
    return sorted(p.name for p in Path(folder).glob("*") if p.name.startswith(prefixes))


def _ours(name: str, kind: str) -> bool:
    names, prefixes = CONTENTS[kind]
    return name in names or name.startswith(prefixes)


@contextmanager
def written(folder, kind: str):
    """Yield a temporary folder beside `folder` to write into; on success mark it and swap it in
    (an old folder of the same kind is renamed aside, then removed last); on any error or Ctrl-C
    remove it and raise. A full disk is raised as OSError(ENOSPC) naming `folder`."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(folder.parent)
    tmp = _aside(folder, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a dead process that had our pid
    try:
        tmp.mkdir()
        yield tmp
        stamp = {"format": FORMAT, "kind": kind, "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        (tmp / MARKER).write_text(json.dumps(stamp) + "\n")
        _swap(tmp, folder, kind)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if _no_space(err):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder)) from err
        raise


def _swap(tmp: Path, folder: Path, kind: str):
    """`tmp` in under `folder`'s name, the old one renamed aside first and removed last. Another
    process may swap in the same folder at the same moment (the workers of a sweep array all write
    its report): then the folder that arrives first stands and ours goes."""
    old = _set_aside(folder, kind)
    try:
        tmp.rename(folder)
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _set_aside(folder: Path, kind: str, attempts: int = 5) -> Path | None:
    """Rename the folder there (checked again: it may have changed while we worked) aside; None
    when there is none. A folder that goes or comes while it is looked at (another writer's
    swap) is looked at again."""
    old = _aside(folder, "old")
    for attempt in range(attempts):
        try:
            claim(folder, kind)
            folder.rename(old)
            return old
        except FileNotFoundError:
            return None
        except Refused:  # not ours, or caught half-way through another writer's swap: look again
            if not folder.exists():
                return None
            if attempt + 1 == attempts:
                raise
    return None


def _no_space(err: BaseException) -> bool:
    """A write failed for want of space: ENOSPC or EDQUOT anywhere in the cause chain."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            return True
        err = err.__cause__ or err.__context__
    return False


def remove_stale(parent: Path):
    """What dead processes of this machine (a kill -9) left in `parent`: their temporaries are
    removed; an old folder renamed aside is put back if its replacement never arrived, else
    removed. Another machine's are left alone: only it can tell whether their writer lives."""
    here = machine()
    for path in Path(parent).glob(".*.fuse-*-*@*"):
        found = _LEFTOVER.fullmatch(path.name)
        if not found or found["machine"] != here or alive(int(found["pid"])) or not path.is_dir():
            continue
        final = path.with_name(found["name"])
        if found["what"] == "old" and not final.exists():
            path.rename(final)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _aside(folder: Path, what: str) -> Path:
    """`.<name>.fuse-<what>-<pid>@<machine>` beside `folder` (what: tmp or old)."""
    return folder.with_name(f".{folder.name}.fuse-{what}-{owner()}")
