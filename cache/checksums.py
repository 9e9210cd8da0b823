"""Checksums on everything the cache writes: a changed byte is found and named, never trusted.

* Numbers (arrays, sequence values and offsets, status, valence) are stored in chunks with HDF5's
  fletcher32 filter: reading a chunk whose bytes changed fails. A per-layer array [N, L, D] is
  chunked one layer at a time, so reading 3 of its 25 layers reads 12% of its bytes.
* Variable-length strings (ids, reasons, sources, splits, labels, transcripts) and the file's
  string attributes (provenance, fingerprint, ...) live in HDF5's global heap, which has no
  checksum: each string dataset carries the SHA-256 of its values (attribute `sha256`), the file
  the SHA-256 of its attributes (`attrs_sha256`), both fixed-length, so inside the object headers.
* The rest is HDF5's own metadata (superblock, object headers, groups, chunk indexes): written with
  libver v110 (cache.hdf5.LIBVER), it carries HDF5's checksums, attributes included.

A file written before checksums were stored has no `attrs_sha256`: it is read as it is, and
`cache verify` says it has none.
"""
from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np

from .hdf5 import DamagedFile

CHUNK_BYTES = 256 << 10  # bytes of one chunk at most: well inside HDF5's chunk cache
BLOCK_BYTES = 16 << 20   # bytes merged or verified at a time (cache.merge, cache.verify)
DIGEST, ATTRS_DIGEST = "sha256", "attrs_sha256"
STR = h5py.string_dtype()


def chunk_rows(shape: tuple, itemsize: int, by_layer: bool) -> int:
    """Rows of one chunk: a power of two (so are the merge's blocks: both boundaries meet), with
    at most CHUNK_BYTES per chunk and BLOCK_BYTES of whole rows, and small enough that the last
    chunk, stored whole, pads the array by at most 1/16 of its rows (read bytes stay the bytes asked)."""
    inner = shape[1:]
    layer = (1,) + tuple(inner[1:]) if by_layer and len(inner) >= 2 else inner
    per_chunk_row = max(1, int(np.prod(layer, dtype=np.int64)) * itemsize)
    per_row = max(1, int(np.prod(inner, dtype=np.int64)) * itemsize)
    n, rows = shape[0], power_of_two(min(CHUNK_BYTES // per_chunk_row, BLOCK_BYTES // per_row))
    while rows > 1 and -n % rows > n // 16:
        rows //= 2
    return min(rows, n)


def power_of_two(n: int) -> int:
    """The largest power of two <= n (1 for n < 1)."""
    return 1 << (max(1, int(n)).bit_length() - 1)


def create_numbers(group: h5py.Group, name: str, data=None, shape=None, dtype=None,
                   by_layer: bool = True) -> h5py.Dataset:
    """A numeric dataset in fletcher32-checksummed chunks (see chunk_rows; `by_layer`: a
    [N, L, ...] array one layer per chunk). An empty one has no chunk, and nothing to check."""
    if data is not None:
        data = np.asarray(data)
        shape, dtype = data.shape, data.dtype
    dtype = np.dtype(dtype)
    if not shape or 0 in shape:
        return group.create_dataset(name, shape, dtype, data=data)
    rows = chunk_rows(shape, dtype.itemsize, by_layer)
    inner = (1,) + tuple(shape[2:]) if by_layer and len(shape) >= 3 else tuple(shape[1:])
    return group.create_dataset(name, shape, dtype, data=data, chunks=(rows,) + inner, fletcher32=True)


class StringsDigest:
    """SHA-256 of string values, fed in row order (a whole column, or block after block)."""

    def __init__(self):
        self._hash = hashlib.sha256()

    def update(self, values) -> "StringsDigest":
        for value in np.asarray(values, dtype=object).ravel():
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            self._hash.update(len(data).to_bytes(8, "little") + data)  # length first: no two lists alike
        return self

    def seal(self, dset: h5py.Dataset):
        dset.attrs[DIGEST] = np.bytes_(self._hash.hexdigest())


def create_strings(group: h5py.Group, name: str, values) -> h5py.Dataset:
    """A UTF-8 string dataset with the SHA-256 of its values."""
    values = np.asarray(values, dtype=object)
    dset = group.create_dataset(name, data=values, dtype=STR)
    StringsDigest().update(values).seal(dset)
    return dset


def read_strings(f: h5py.File, name: str) -> np.ndarray:
    """The str values of string dataset `name`, checked against their SHA-256 when the file has one
    (DamagedFile otherwise; the caller names h5py's own errors: cache.hdf5.named)."""
    dset = f[name]
    values = dset.asstr()[()]
    stored = dset.attrs.get(DIGEST)
    if stored is not None:
        stored = stored.decode() if isinstance(stored, bytes) else str(stored)
        if StringsDigest().update(values)._hash.hexdigest() != stored:
            raise DamagedFile(f.filename, f"the strings of /{name.lstrip('/')} do not match their checksum")
    return values


def seal_attrs(f: h5py.File):
    """Store the SHA-256 of the file's attributes (call after the last one is set)."""
    f.attrs[ATTRS_DIGEST] = np.bytes_(_attrs_digest(f))


def read_attrs(f: h5py.File) -> dict:
    """The file's attributes, checked against their SHA-256 when it has one (DamagedFile otherwise)."""
    attrs = dict(f.attrs)
    stored = attrs.pop(ATTRS_DIGEST, None)
    if stored is not None and (stored.decode() if isinstance(stored, bytes) else str(stored)) != _attrs_digest(f):
        raise DamagedFile(f.filename, "its attributes (provenance, fingerprint, ...) do not match their checksum")
    return attrs


def has_checksums(f: h5py.File) -> bool:
    return ATTRS_DIGEST in f.attrs


def _attrs_digest(f: h5py.File) -> str:
    plain = {name: _plain(value) for name, value in f.attrs.items() if name != ATTRS_DIGEST}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def unchecked(f: h5py.File) -> list[str]:
    """Datasets of a checksummed file that hold values without a checksum (none should)."""
    missing = []

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset) or obj.size == 0:
            return
        if h5py.check_string_dtype(obj.dtype) is not None:
            if DIGEST not in obj.attrs:
                missing.append(name)
        elif not obj.fletcher32:
            missing.append(name)
    f.visititems(visit)
    return missing
