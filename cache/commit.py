"""Committing files on a folder that several machines share (local disk, NFS, Lustre, GPFS).

Every file the cache writes (a part, a feature file) follows one protocol, which needs no lock:

1. It is written under a temporary name beside its final name, `.<name>.tmp-<pid>@<machine>`,
   where machine is the host name (plus the PID namespace inside a container).
2. It is fsynced, renamed to its final name (atomic on every POSIX filesystem, NFS included) and
   its folder is fsynced: a committed file survives a crash or a power cut, and a file under a
   final name is always complete.
3. A temporary is removed by its writer when the write fails, or later by a process of the same
   machine once its pid is gone. A temporary of another machine is never removed: its pid cannot
   be looked up here (on a SLURM array its owner may be writing it right now).

Merging parts into the feature file is the one step that replaces or deletes committed files. It
runs under a lease (`filelock.SoftFileLease`): a marker file created with O_EXCL that names host
and pid, refreshed by a heartbeat thread of its holder. A waiting merger takes the lease over when
its holder is a dead process of the same machine (at once), or when the marker has not changed for
LEASE_SECONDS by the waiter's own clock (a holder on another machine that died). fcntl/flock locks
are not used: on some network filesystems they are local to one node, or not implemented.

Readers take no lock: `read_snapshot` reads every committed file and starts over when a merge
replaced or deleted one meanwhile (a merge renames the new feature file before deleting parts, so
the next snapshot holds every clip).
"""
from __future__ import annotations

import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path

LEASE_SECONDS = 120.0  # above NFS attribute caching (60 s at most by default): no false expiry
POLL_SECONDS = 0.2
SNAPSHOT_ATTEMPTS = 50
_TMP = re.compile(r"\.tmp-(\d+)@(.+)$")
_INITIAL_PID_NAMESPACE = 0xEFFFFFFC  # Linux's PROC_PID_INIT_INO: no container


def machine() -> str:
    """This machine as file names record it: the host name, plus the PID namespace when this
    process runs in a container (two containers may share a host name, never a PID namespace)."""
    host = re.sub(r"[^A-Za-z0-9.-]+", "_", socket.gethostname()) or "host"
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return host
    return host if namespace == _INITIAL_PID_NAMESPACE else f"{host}_pidns{namespace}"


def owner() -> str:
    """`<pid>@<machine>`: who writes a temporary or a part."""
    return f"{os.getpid()}@{machine()}"


def temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{owner()}")


def fsync_dir(folder: Path):
    """Make the folder's entries (a rename, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: Path, before_commit=None):
    """Yield a temporary path to write `path` through; on success fsync it, call
    `before_commit()` (which may raise to abandon), rename it and fsync the folder. On any error
    the temporary is removed and the error raised: nothing is left behind, nothing is replaced."""
    tmp = temporary(path)
    try:
        yield tmp
        _fsync_file(tmp)
        if before_commit is not None:
            before_commit()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def alive(pid: int) -> bool:
    """Whether process `pid` of this machine is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_temporaries(folder: Path, pattern: str = ".*.tmp-*") -> list[Path]:
    """Remove temporaries in `folder` left by dead processes of this machine; returns them.
    Another machine's are kept whatever their age: only that machine can tell if they are live."""
    removed, here = [], machine()
    for tmp in folder.glob(pattern):
        found = _TMP.search(tmp.name)
        if found and found[2] == here and not alive(int(found[1])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextmanager
def merge_lease(lock_path: Path):
    """Hold the merge lease of one feature (see the module docstring); yields a function that
    raises if the lease was lost meanwhile (its holder stalled past LEASE_SECONDS)."""
    from filelock import SoftFileLease

    lease = SoftFileLease(lock_path, lease_duration=LEASE_SECONDS)
    with lease.acquire(poll_interval=POLL_SECONDS):
        def still_held():
            if lease.compromise is not None:
                raise RuntimeError(f"lost the merge lease {lock_path} ({lease.compromise}): "
                                   "another process may be merging; nothing was replaced")
        yield still_held


def _identity(path: Path):
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def read_snapshot(list_files, read) -> list:
    """[read(path) for path in list_files()], as one consistent snapshot of committed files.

    A merge on this or another machine may replace or delete a listed file while it is read
    (FileNotFoundError here, ESTALE over NFS): then the listing is taken again. An error on files
    that did not change is raised (a damaged file)."""
    for attempt in range(SNAPSHOT_ATTEMPTS):
        files = list_files()
        before = [_identity(p) for p in files]
        try:
            return [read(path) for path in files]
        except OSError:
            after = [_identity(p) for p in files]
            changed = None in before or after != before or list_files() != files
            if not changed or attempt + 1 == SNAPSHOT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")
