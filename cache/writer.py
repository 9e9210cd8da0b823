"""Writing one cached feature: resumable, shardable, refusing a mismatched config.

Shards on several machines may write one feature in one shared folder at once: the protocol
(temporaries named by owner, fsync and rename, the merge lease, lock-free readers) is described in
`cache.commit`.
"""
from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py

from . import checksums
from .commit import atomic_write, fsync_dir, merge_lease, read_snapshot, remove_stale_temporaries
from .hdf5 import create, members, named
from .merge import MergePlan
from .store import (FAILED, FLAGGED, OK, ConfigMismatch, Records, feature_slug, part_name, provenance_of,
                    read_sources, read_strings, row_form, same_input, write_records)

DEFAULT_ROOT = Path("data/cache")
ENV_ROOT = "MER_CACHE_DIR"


def cache_root(root=None) -> Path:
    """The cache folder: `root` if given, else $MER_CACHE_DIR, else ./data/cache."""
    import os

    return Path(root or os.environ.get(ENV_ROOT) or DEFAULT_ROOT)


def feature_path(root, dataset: str, feature: str) -> Path:
    return cache_root(root) / dataset / f"{feature_slug(feature)}.h5"


class FeatureWriter:
    """Adds clips to the feature file `root/dataset/feature.h5` through committed parts.

    put() buffers clips; every `flush_every` clips or `flush_seconds` a part is committed
    atomically. `done_ids()` tells a resumed run what to skip; `merge()` folds the parts into the
    final file once every expected clip is there.
    """

    def __init__(self, root, dataset: str, feature: str, fingerprint: str, provenance: dict,
                 shard=(0, 1), flush_every: int = 32, flush_seconds: float = 30.0,
                 primary: str | None = None, sources: dict[str, str] | None = None):
        self.path = feature_path(root, dataset, feature)
        self.parts = self.path.with_suffix(".parts")
        self.lock = self.path.with_suffix(".merge.lock")
        self.feature, self.dataset, self.fingerprint = feature, dataset, fingerprint
        self.provenance, self.shard, self.primary = provenance, shard, primary
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self.sources = sources or {}  # clip id -> signature of its input now
        self._buffer = Records()
        self._forms = None  # (group, key) -> (row shape, kind) that every clip must match
        self._last_flush = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    # --- what is there already -------------------------------------------------------------
    def committed_files(self) -> list[Path]:
        """The final file (if any) then the parts in commit order."""
        # parts are listed first: a merge in between then leaves listed parts that are gone (the
        # snapshot is taken again), never a listing that misses the clips of both
        try:
            parts = sorted(p for p in self.parts.glob("*.h5") if not p.name.startswith("."))
        except FileNotFoundError:  # a merge removed the parts folder while it was listed: the final
            parts = []             # file, looked for next, holds them
        return ([self.path] if self.path.exists() else []) + parts

    def _read_committed(self, read) -> list:
        """[read(h5py file) for each committed file], one consistent snapshot (commit.read_snapshot)."""
        def open_and_read(path):
            with named(path), h5py.File(path, "r") as f:
                return read(f)
        return read_snapshot(self.committed_files, open_and_read)

    def check_config(self):
        """Raise ConfigMismatch if anything committed was made with another config."""
        def config_of(f):
            attrs = checksums.read_attrs(f)
            return attrs.get("fingerprint"), provenance_of(attrs).get("config")

        for theirs, old in self._read_committed(config_of):
            if theirs != self.fingerprint:
                raise ConfigMismatch(
                    f"feature '{self.feature}' of dataset '{self.dataset}' is already cached in "
                    f"{self.path} with another config ({json.dumps(old)}; now "
                    f"{json.dumps(self.provenance.get('config'))}). Re-run with --overwrite to "
                    f"replace it, or extract under another name (--features NEWNAME={self.feature}).")

    def done_ids(self, include_failed: bool = True) -> set[str]:
        """Clips cached (or committed in parts) from the input they have now."""
        def clips_of(f):
            return read_strings(f, "ids"), f["status"][()], read_sources(f)

        done = set()
        for ids, status, sources in self._read_committed(clips_of):  # in commit order: later entries win
            for cid, code, source in zip(ids, status, sources):
                if same_input(source, self.sources.get(cid)) and (include_failed or code != FAILED):
                    done.add(cid)
                else:
                    done.discard(cid)
        return done

    def remove(self):
        """Delete the cached feature (final file and parts): only on explicit --overwrite."""
        with merge_lease(self.lock):
            self.path.unlink(missing_ok=True)
            shutil.rmtree(self.parts, ignore_errors=True)

    # --- writing ---------------------------------------------------------------------------
    def put(self, clip_id: str, arrays: dict | None = None, ragged: dict | None = None,
            status: str = "ok", reason: str = "") -> tuple[str, str]:
        """Record one clip: its arrays (ok / flagged) or a failure with its reason.

        A clip whose arrays cannot be stored beside the others (another shape, a value HDF5 cannot
        hold) is recorded as failed, with why, instead of making the whole part fail. Returns the
        (status, reason) recorded."""
        code = {"ok": OK, "flagged": FLAGGED, "failed": FAILED}[status]
        misfit = None if code == FAILED else self._misfit(arrays or {}, ragged or {})
        if misfit:
            code, status, reason = FAILED, "failed", f"{self.feature}: {misfit}"
        if code == FAILED:
            arrays, ragged = None, None
        self._buffer.add(clip_id, arrays, ragged, code, reason, self.sources.get(clip_id, ""))
        due = time.monotonic() - self._last_flush > self.flush_seconds
        if len(self._buffer) >= self.flush_every or due:
            self.flush()
        return status, reason

    def _misfit(self, arrays: dict, ragged: dict) -> str | None:
        """Why one clip's arrays cannot join the feature's (None when they can)."""
        forms, new = self._established(), {}
        for group, items in (("arrays", arrays), ("ragged", ragged)):
            for key, value in items.items():
                what = f"{'array' if group == 'arrays' else 'sequence'} '{key}'"
                try:
                    shape, kind = row_form(value)
                except ValueError as err:
                    return f"{what}: {err}"
                if group == "ragged":
                    if not shape or kind != "numbers":
                        return f"{what} is not a [T, ...] array of numbers"
                    shape = shape[1:]  # frames per clip vary; a frame's shape may not
                expected = forms.get((group, key))
                if expected and expected[1] != kind:
                    return f"{what} holds {kind}, the other clips {expected[1]}"
                if expected and expected[0] != shape:
                    return f"{what} has shape {shape}, the other clips {expected[0]}"
                new[group, key] = (shape, kind)
        forms.update(new)
        return None

    def _established(self) -> dict:
        """Row shapes and kinds of the arrays committed so far (or put first by this writer)."""
        if self._forms is None:
            self._forms = {}
            for forms in self._read_committed(_forms_of):
                for key, form in forms.items():
                    self._forms.setdefault(key, form)
        return self._forms

    def flush(self):
        """Commit the buffered clips as a part. If that fails (a full disk, say), no temporary is
        left behind, the clips stay buffered for the next flush, and the error is raised."""
        if len(self._buffer):
            # the primary array is the extractor's first output, unless named
            self.primary = self.primary or next(iter(self._buffer.arrays), None)
            for attempt in range(3):
                self._make_parts_folder()
                try:
                    write_records(self.parts / part_name(self.shard), self._buffer, self._attrs(), self.primary)
                    break
                except FileNotFoundError:  # a merge removed the folder, empty, in between: make it again
                    if attempt == 2 or self.parts.is_dir():
                        raise
            self._buffer = Records()
        self._last_flush = time.monotonic()

    def _make_parts_folder(self):
        if not self.parts.is_dir():
            self.parts.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.parts.parent)  # a power cut must not lose the folder with its parts

    def _attrs(self) -> dict:
        return {"feature": self.feature, "dataset": self.dataset, "fingerprint": self.fingerprint,
                "provenance": json.dumps(self.provenance, default=str)}

    def merge(self, expected_ids=None) -> bool:
        """Fold the final file and all parts into a new final file, if they hold every expected
        clip; returns whether it merged. Safe against shards on any machine (the merge lease of
        cache.commit); streamed in bounded memory (cache.merge)."""
        self.flush()
        with merge_lease(self.lock) as still_held:
            files = self.committed_files()
            if not files or (files == [self.path]):
                return bool(files)
            plan = MergePlan(files)
            if expected_ids is not None and not set(expected_ids) <= set(plan.ids):
                return False
            self.primary = self.primary or next((a["primary"] for a in plan.attrs if a.get("primary")), None)
            created = next((c for c in (provenance_of(a).get("created") for a in plan.attrs) if c), None)
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.provenance.update(clips=len(plan.ids), created=created or now, updated=now)
            with atomic_write(self.path, before_commit=still_held) as tmp, create(tmp, self.path) as (out, check):
                plan.write(out, check, self._attrs() | {"primary": self.primary or ""}, self.sources)
            for path in files:  # only after the new final file holds them
                if path != self.path:
                    path.unlink(missing_ok=True)
            self._tidy()
        return True

    def _tidy(self):
        """Drop temporaries of dead writers of this machine, and the parts folder once empty."""
        remove_stale_temporaries(self.path.parent, f".{self.path.name}.tmp-*")
        if self.parts.is_dir():
            remove_stale_temporaries(self.parts)
            try:
                self.parts.rmdir()
            except OSError:
                pass  # another shard committed meanwhile, or writes a part now: it stays for the next merge


def _forms_of(f: h5py.File) -> dict:
    forms = {}
    for key, dset in members(f, "arrays").items():
        kind = "text" if h5py.check_string_dtype(dset.dtype) else "numbers"
        forms["arrays", key] = (dset.shape[1:], kind)
    for key, group in members(f, "ragged").items():
        forms["ragged", key] = (group["values"].shape[1:], "numbers")
    return forms
