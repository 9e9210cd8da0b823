"""How the cache opens its HDF5 files, and the error a damaged one raises.

Reading: `open_read(path)` opens a file read-only; any error HDF5 raises on a file it cannot read
(truncated, a block or header whose checksum does not match, a broken string heap) becomes a
`DamagedFile` naming the file, the cause and what to do (`named(path)` around every read).

Writing: `create(tmp, path)`: HDF5 writes through a Python file object that keeps the first write
that fails (a full disk, a quota, an I/O error) instead of returning it to HDF5. HDF5 cannot close a
file after a failed write: it frees a dataset whose close failed and h5py closes it again, a
segfault (seen on a full disk during a merge). Here HDF5 sees every write succeed and closes the
file; the write error is raised after that, naming the file, and the temporary is removed by its
writer (commit.atomic_write).
"""
from __future__ import annotations

import io
import os
import re
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import h5py

LIBVER = ("v110", "v110")  # HDF5 >= 1.10 reads the files; its object headers and indexes carry checksums
CLIP_TABLE = "_clips.h5"


class DamagedFile(OSError):
    """A cache file that cannot be read back as written: truncated, or a checksum that fails."""

    def __init__(self, path, cause: str):
        self.path, self.cause = Path(path), cause
        super().__init__(f"damaged file {self.path}: {cause}. Run `python -m cache verify` to list "
                         f"every damaged file; {remedy(self.path)}")

    def __reduce__(self):  # raised in worker processes too: rebuilt from (path, cause)
        return type(self), (self.path, self.cause)


def remedy(path: Path) -> str:
    """What to do about a damaged file, by what it is."""
    if path.name == CLIP_TABLE:
        return (f"write the clip table again: `python -m cache clips {path.parent.name} --replace-clips "
                f"--layout L --root DIR` (or --clips FILE.csv)")
    if path.parent.suffix == ".parts":  # a committed part: only its clips are lost
        return (f"remove it (`rm {path}`): the same extraction run again extracts its clips again "
                f"(or extract the whole feature again with --overwrite)")
    return (f"extract the feature again: `python -m extract --dataset {path.parent.name} --features "
            f"{path.stem} --overwrite ...`")


@contextmanager
def named(path, what: str = ""):
    """Turn the errors h5py raises on a damaged file, while reading `what` of `path`, into DamagedFile."""
    try:
        yield
    except (DamagedFile, FileNotFoundError, PermissionError):
        raise
    except (OSError, RuntimeError, KeyError, UnicodeDecodeError) as err:
        if "unable to lock file" in str(err):  # a filesystem without locks, not damage (README: The cache)
            raise
        raise DamagedFile(path, _cause(err, what)) from err


_TRUNCATED = re.compile(r"truncated file: eof = (\d+).*stored_eof = (\d+)")


def _cause(err: Exception, what: str) -> str:
    text = str(err.args[0] if isinstance(err, KeyError) and err.args else err)
    found = _TRUNCATED.search(text)
    if found:
        return f"truncated: {found[1]} of its {found[2]} bytes are there"
    where = f" of {what}" if what else ""
    if "filter returned failure" in text:
        return f"a block{where} fails its checksum"
    if "file signature not found" in text:
        return "no HDF5 signature: its first bytes are damaged, or it is not an HDF5 file"
    if "checksum" in text:
        return f"HDF5's metadata{where} fails its checksum"
    if isinstance(err, UnicodeDecodeError):
        return f"a string{where} is not valid UTF-8"
    detail = re.search(r"\((.*)\)\s*$", text)  # HDF5's own words: "Can't read data (<why>)"
    return f"{what or 'it'} is unreadable ({detail[1] if detail else text})"


def members(f: h5py.File, group: str) -> dict:
    """{name: object} of group `group` ('arrays', 'ragged'), {} when the file has none. Not
    `f.get(group, {})`: it answers {} for a group whose header is damaged too."""
    return dict(f[group].items()) if group in f else {}


def open_read(path) -> h5py.File:
    """A file opened read-only without HDF5's 64 KiB sieve buffer (a read then fetches only the
    chunks selected, e.g. 3 of 25 layers); DamagedFile if it cannot be opened."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_sieve_buf_size(0)
    with named(path):
        return h5py.File(h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY, fapl=fapl))


class _Sink(io.FileIO):
    """A file HDF5 writes through: the first write that fails is kept in `error`, never raised to
    HDF5; later writes are dropped (the file is abandoned)."""

    error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):  # h5py's file-object driver takes a short write for a whole one
                    done += super().write(view[done:])
            except OSError as err:
                self.error = err
        return len(view)


@contextmanager
def create(tmp: Path, path: Path):
    """Yield (h5py file created at `tmp`, check): `check()` raises the first failed write so far,
    or a Ctrl-C that came meanwhile (a long writer calls it between blocks, to stop early). A
    failed write is raised after HDF5 closed the file, as OSError(errno, strerror, `path`)."""
    with _Sink(tmp, "w+") as sink, _InterruptsDeferred() as interrupts:
        def check():
            interrupts.deliver()
            if sink.error is not None:
                raise OSError(sink.error.errno, sink.error.strerror, str(path))

        with h5py.File(sink, "w", libver=LIBVER) as f:
            yield f, check
        check()  # what the close wrote (metadata, the last chunks) may have failed too


class _InterruptsDeferred:
    """Ctrl-C while HDF5 writes through a _Sink is held until `deliver()` (or the end): raised in
    the sink's write, it would be a failed write to HDF5. Main thread only (Python's signals)."""

    def __init__(self):
        self.previous, self.pending = None, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum, frame):
        self.pending = (signum, frame)

    def deliver(self):
        """Run the handler the signal was meant for (KeyboardInterrupt, or cache.cli's)."""
        pending, self.pending = self.pending, None
        if pending is None or self.previous is None:
            return
        if callable(self.previous):
            self.previous(*pending)  # raises, and may turn further Ctrl-C off: that stays
        elif self.previous == signal.SIG_DFL:
            self.__exit__()
            signal.raise_signal(signal.SIGINT)

    def __exit__(self, *exc):
        if self.previous is not None and signal.getsignal(signal.SIGINT) == self._hold:
            signal.signal(signal.SIGINT, self.previous)
        try:
            self.deliver()
        finally:
            self.previous = None
