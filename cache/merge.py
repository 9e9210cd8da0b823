"""Merging a feature's committed files into one, streamed in bounded blocks.

The files come in commit order (the feature file, then the parts); a clip found in several takes
its last. Only what is a few bytes per clip is read whole (ids, status, reason, source, sequence
offsets). Arrays and sequence values are copied at most checksums.BLOCK_BYTES at a time, from at most
MAX_OPEN open files: merging MER-SEMI's 73,982 clips of spectrogram pieces (19 GB) takes the
memory of merging 2,000 (docs/BENCHMARKS.md). What is read is checked against its checksums
(a damaged part raises DamagedFile, it is never merged into fresh checksums), and the merged file
carries its own (cache.checksums): each array is copied in blocks of whole chunks.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np

from . import checksums
from .checksums import StringsDigest, create_numbers, create_strings, power_of_two, seal_attrs
from .hdf5 import members, named
from .store import FAILED, FORMAT, read_sources, read_strings, same_input

MAX_OPEN = 16  # a long run commits thousands of parts; a block needs a few (one per shard)
STR_BYTES = 64  # a guess of one string's size, to size blocks


class MergePlan:
    """Where each clip of the merged feature comes from.

    ids: merged clip ids, sorted; status uint8 [N], reason and source: the winning rows' columns;
    attrs: each file's attributes, in commit order. Reading the plan reads no array.
    """

    def __init__(self, files):
        self.files = [Path(p) for p in files]
        self.attrs, self.forms, self.offsets, columns, winner = [], [], [], [], {}
        for i, path in enumerate(self.files):
            with named(path), h5py.File(path, "r") as f:
                columns.append((f["status"][()], read_strings(f, "reason"), read_sources(f)))
                self.attrs.append(checksums.read_attrs(f))
                self.forms.append(_forms(f))
                self.offsets.append({key: g["offsets"][()] for key, g in members(f, "ragged").items()})
                for row, cid in enumerate(read_strings(f, "ids")):
                    winner[cid] = (i, row)
                for (group, key), (_, _, is_str) in self.forms[-1].items():
                    if is_str:  # copied block by block below: checked whole here, once
                        checksums.read_strings(f, f"{group}/{key}")
        self.ids = sorted(winner)
        pairs = np.array([winner[cid] for cid in self.ids], np.int64).reshape(-1, 2)
        self.status = np.array([columns[i][0][r] for i, r in pairs], np.uint8)
        self.reason = [columns[i][1][r] for i, r in pairs]
        self.source = [columns[i][2][r] for i, r in pairs]
        # per file: output rows (increasing) and its rows that fill them; failed clips take the fill
        ok = np.flatnonzero(self.status != FAILED)
        by_file = ok[np.argsort(pairs[ok, 0], kind="stable")]
        bounds = np.searchsorted(pairs[by_file, 0], np.arange(len(self.files) + 1))
        self.rows = [(by_file[a:b], pairs[by_file[a:b], 1]) for a, b in zip(bounds[:-1], bounds[1:])]

    def layout(self) -> dict[tuple[str, str], tuple[tuple, np.dtype, bool]]:
        """{(group, key): (row shape, dtype, is_str)} for group 'arrays' or 'ragged' (the row
        shape of a sequence is that of one frame); a ValueError if files disagree on a shape."""
        out = {}
        for group_key in dict.fromkeys(k for forms in self.forms for k in forms):
            having = [forms[group_key] for forms in self.forms if group_key in forms]
            used = [forms[group_key] for forms, (dst, _) in zip(self.forms, self.rows)
                    if group_key in forms and len(dst)] or having
            shapes, kinds = sorted({form[0] for form in used}), {form[2] for form in used}
            if len(shapes) > 1:
                raise ValueError(f"array '{group_key[1]}' has different shapes across clips: {shapes[:3]}")
            if len(kinds) > 1:
                raise ValueError(f"array '{group_key[1]}' holds text in some parts, numbers in others")
            out[group_key] = used[0]
        return out

    def write(self, out: h5py.File, check, attrs: dict, sources: dict[str, str] | None = None):
        """Write the merged feature into `out` (cache.hdf5.create, whose `check` raises a failed
        write or a Ctrl-C between blocks). `sources`, the current input signatures, replace stored
        ones of the older format."""
        layout = self.layout()  # files that disagree on a shape: refused before any write
        create_strings(out, "ids", self.ids)
        create_numbers(out, "status", self.status)
        create_strings(out, "reason", self.reason)
        create_strings(out, "source", self._sources(sources))
        with _OpenFiles(self.files) as files:
            for (group, key), form in layout.items():
                if group == "arrays":
                    self._write_array(out, files, key, form, check)
                else:
                    self._write_sequences(out, files, key, form, check)
        for name, value in attrs.items():
            out.attrs[name] = value
        out.attrs["format"] = FORMAT
        seal_attrs(out)

    def _write_array(self, out, files, key, form, check):
        """Copy array `key` in blocks of at most checksums.BLOCK_BYTES, each a whole number of chunks (both
        are powers of two rows)."""
        n, (shape, dtype, is_str) = len(self.ids), form
        if is_str:
            target, digest = out.create_dataset(f"arrays/{key}", (n,) + shape, checksums.STR), StringsDigest()
        else:
            target, digest = create_numbers(out, f"arrays/{key}", shape=(n,) + shape, dtype=dtype), None
        step = power_of_two(checksums.BLOCK_BYTES // _row_bytes(form))
        for start in range(0, n, step):
            block = self._copy_rows(files, key, form, start, min(n, start + step))
            target[start:start + len(block)] = block
            if digest is not None:
                digest.update(block)
            check()
        if digest is not None:
            digest.seal(target)

    def _write_sequences(self, out, files, key, form, check):
        shape, dtype, _ = form
        offsets = self._ragged_offsets(key)
        create_numbers(out, f"ragged/{key}/offsets", offsets)
        values = create_numbers(out, f"ragged/{key}/values", shape=(int(offsets[-1]),) + shape, dtype=dtype,
                                by_layer=False)
        self._copy_sequences(files, key, form, (values, offsets), check)

    def _sources(self, current):
        if not current:
            return self.source
        return [now if stored and now and "mtime=" not in stored and same_input(stored, now) else stored
                for stored, now in zip(self.source, map(current.get, self.ids))]

    def _within(self, start, stop, group_key):
        """(file, output rows, its rows) of every file that fills rows [start, stop) of `group_key`."""
        for i, (dst, rows) in enumerate(self.rows):
            if len(dst) and dst[0] < stop and dst[-1] >= start and group_key in self.forms[i]:
                a, b = np.searchsorted(dst, [start, stop])
                if b > a:
                    yield i, dst[a:b], rows[a:b]

    def _copy_rows(self, files, key, form, start, stop) -> np.ndarray:
        """Rows [start, stop) of array `key`, gathered from the files that hold them."""
        shape, dtype, is_str = form
        fill = "" if is_str else (np.nan if np.dtype(dtype).kind in "fc" else 0)
        block = np.full((stop - start,) + shape, fill, dtype=object if is_str else dtype)
        for i, dst, rows in self._within(start, stop, ("arrays", key)):
            with named(self.files[i], f"/arrays/{key}"):
                dset = files[i][f"arrays/{key}"]
                block[dst - start] = _read_rows(dset.asstr() if is_str else dset, rows)
        return block

    def _ragged_offsets(self, key) -> np.ndarray:
        lengths = np.zeros(len(self.ids), np.int64)
        for i, (dst, rows) in enumerate(self.rows):
            if key in self.offsets[i] and len(dst):
                offsets = self.offsets[i][key]
                lengths[dst] = offsets[rows + 1] - offsets[rows]
        return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def _copy_sequences(self, files, key, form, target, check):
        """Every clip's values, written at most checksums.BLOCK_BYTES at a time."""
        (values_out, out_off), (shape, dtype, _) = target, form
        budget = max(1, checksums.BLOCK_BYTES // _row_bytes(form))  # frames per write
        r, stop = 0, len(self.ids)
        while r < stop:
            e = min(stop, max(r + 1, int(np.searchsorted(out_off, out_off[r] + budget, side="right")) - 1))
            base = out_off[r]
            block = np.empty((out_off[e] - base,) + shape, dtype)
            for i, dst, rows in self._within(r, e, ("ragged", key)):
                with named(self.files[i], f"/ragged/{key}/values"):
                    self._gather(files[i][f"ragged/{key}/values"], self.offsets[i][key], dst, rows, block,
                                 out_off, base)
            values_out[base:out_off[e]] = block
            check()
            r = e

    @staticmethod
    def _gather(values, offsets, dst, rows, block, out_off, base):
        """Frames of one file's `rows` into `block` at output rows `dst`: one read of their span
        when it is dense, else one read per clip."""
        lo, hi = offsets[rows.min()], offsets[rows.max() + 1]
        dense = hi - lo <= 2 * (offsets[rows + 1] - offsets[rows]).sum() + 1024
        span = values[lo:hi] if dense else None
        for d, s in zip(dst, rows):
            a, b = offsets[s], offsets[s + 1]
            block[out_off[d] - base:out_off[d + 1] - base] = span[a - lo:b - lo] if dense else values[a:b]


def _forms(f: h5py.File) -> dict:
    forms = {}
    for key, dset in members(f, "arrays").items():
        forms["arrays", key] = (dset.shape[1:], dset.dtype, h5py.check_string_dtype(dset.dtype) is not None)
    for key, group in members(f, "ragged").items():
        values = group["values"]
        forms["ragged", key] = (values.shape[1:], values.dtype, False)
    return forms


def _row_bytes(form) -> int:
    shape, dtype, is_str = form
    return max(1, int(np.prod(shape, dtype=np.int64)) * (STR_BYTES if is_str else np.dtype(dtype).itemsize))


def _read_rows(dset, rows: np.ndarray) -> np.ndarray:
    """dset[rows]: one read of their span when they are dense in it (parts: all rows are), else
    a point selection (h5py wants it in increasing order)."""
    lo, hi = int(rows.min()), int(rows.max()) + 1
    if hi - lo == len(rows) and rows[0] == lo:  # a run of rows, in order: read as is
        return dset[lo:hi]
    if hi - lo <= 2 * len(rows) + 8:
        return dset[lo:hi][rows - lo]
    order = np.argsort(rows)
    data = dset[rows[order]]
    out = np.empty_like(data)
    out[order] = data
    return out


class _OpenFiles:
    """h5py files opened on demand, at most MAX_OPEN at once, least recently used closed first."""

    def __init__(self, paths):
        self.paths, self.open = paths, OrderedDict()

    def __getitem__(self, i) -> h5py.File:
        if i not in self.open:
            if len(self.open) >= MAX_OPEN:
                self.open.popitem(last=False)[1].close()
            with named(self.paths[i]):
                self.open[i] = h5py.File(self.paths[i], "r")
        self.open.move_to_end(i)
        return self.open[i]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for f in self.open.values():
            f.close()
        self.open.clear()
