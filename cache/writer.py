"""Writing one cached feature: resumable, shardable, refusing a mismatched config."""
from __future__ import annotations

import json
from datetime import datetime, timezone
import shutil
import time
from pathlib import Path

from .store import (FAILED, FLAGGED, OK, ConfigMismatch, Records, feature_slug, file_lock,
                    part_name, provenance_of, read_records, read_sources, write_records)

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
        self.lock = self.path.with_suffix(".lock")
        self.feature, self.dataset, self.fingerprint = feature, dataset, fingerprint
        self.provenance, self.shard, self.primary = provenance, shard, primary
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self.sources = sources or {}  # clip id -> signature of its input now
        self._buffer = Records()
        self._last_flush = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    # --- what is there already -------------------------------------------------------------
    def committed_files(self) -> list[Path]:
        """The final file (if any) then the parts in commit order."""
        files = [self.path] if self.path.exists() else []
        if self.parts.is_dir():
            files += sorted(p for p in self.parts.glob("*.h5") if not p.name.startswith("."))
        return files

    def check_config(self):
        """Raise ConfigMismatch if anything committed was made with another config."""
        import h5py

        for path in self.committed_files():
            with h5py.File(path, "r") as f:
                theirs = f.attrs.get("fingerprint")
                if theirs != self.fingerprint:
                    old = provenance_of(dict(f.attrs)).get("config")
                    raise ConfigMismatch(
                        f"feature '{self.feature}' of dataset '{self.dataset}' is already cached in "
                        f"{self.path} with another config ({json.dumps(old)}; now "
                        f"{json.dumps(self.provenance.get('config'))}). Re-run with --overwrite to "
                        f"replace it, or extract under another name (--features NEWNAME={self.feature}).")

    def done_ids(self, include_failed: bool = True) -> set[str]:
        """Clips cached (or committed in parts) from the input they have now."""
        import h5py

        done = set()
        for path in self.committed_files():  # in commit order: later entries win
            with h5py.File(path, "r") as f:
                ids = [s.decode() if isinstance(s, bytes) else s for s in f["ids"][()]]
                status, sources = f["status"][()], read_sources(f)
            for cid, code, source in zip(ids, status, sources):
                same_input = not source or source == self.sources.get(cid, source)
                if same_input and (include_failed or code != FAILED):
                    done.add(cid)
                else:
                    done.discard(cid)
        return done

    def remove(self):
        """Delete the cached feature (final file and parts): only on explicit --overwrite."""
        with file_lock(self.lock):
            self.path.unlink(missing_ok=True)
            shutil.rmtree(self.parts, ignore_errors=True)

    # --- writing ---------------------------------------------------------------------------
    def put(self, clip_id: str, arrays: dict | None = None, ragged: dict | None = None,
            status: str = "ok", reason: str = ""):
        """Record one clip: its arrays (ok / flagged) or a failure with its reason."""
        code = {"ok": OK, "flagged": FLAGGED, "failed": FAILED}[status]
        if code == FAILED:
            arrays, ragged = None, None
        self._buffer.add(clip_id, arrays, ragged, code, reason, self.sources.get(clip_id, ""))
        due = time.monotonic() - self._last_flush > self.flush_seconds
        if len(self._buffer) >= self.flush_every or due:
            self.flush()

    def flush(self):
        if len(self._buffer):
            # the primary array is the extractor's first output, unless named
            self.primary = self.primary or next(iter(self._buffer.arrays), None)
            self.parts.mkdir(parents=True, exist_ok=True)
            write_records(self.parts / part_name(self.shard), self._buffer, self._attrs(), self.primary)
            self._buffer = Records()
        self._last_flush = time.monotonic()

    def _attrs(self) -> dict:
        return {"feature": self.feature, "dataset": self.dataset, "fingerprint": self.fingerprint,
                "provenance": json.dumps(self.provenance, default=str)}

    def merge(self, expected_ids=None) -> bool:
        """Fold the final file and all parts into a new final file, if they hold every expected
        clip; returns whether it merged. Safe against concurrent shards (file lock)."""
        self.flush()
        with file_lock(self.lock):
            files = self.committed_files()
            if not files or (files == [self.path]):
                return bool(files)
            merged, created = Records(), None
            for path in files:
                records, attrs = read_records(path)
                merged.update(records)
                self.primary = self.primary or attrs.get("primary") or None
                created = created or provenance_of(attrs).get("created")
            if expected_ids is not None and not set(expected_ids) <= set(merged.ids):
                return False
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.provenance.update(clips=len(merged), created=created or now, updated=now)
            write_records(self.path, merged, self._attrs(), self.primary)
            for path in files:
                if path != self.path:
                    path.unlink(missing_ok=True)
            _remove_stale_parts(self.parts)
        return True


def _remove_stale_parts(parts: Path):
    """Drop temporaries of killed writers, and the parts folder once it is empty."""
    for tmp in parts.glob(".*.tmp-*"):
        pid = int(tmp.name.rsplit("-", 1)[1])
        if not Path(f"/proc/{pid}").exists():
            tmp.unlink(missing_ok=True)
    try:
        parts.rmdir()
    except OSError:
        pass  # another shard committed meanwhile: its parts stay for the next merge

