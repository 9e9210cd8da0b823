"""One clip's corruption, run in a worker process (a module of its own: spawned workers import it)."""
from __future__ import annotations

import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.media import MediaError
from .copy import corrupt_file, read_audio
from .degrade import babble, noise_draw


@lru_cache(maxsize=64)
def _audio(path: str) -> np.ndarray:
    return read_audio(Path(path))


def _length(path: str) -> int:
    n = len(_audio(path))
    if not n:
        raise MediaError(f"noise file {path} holds no audio")
    return n


def _decodable(voices) -> list[np.ndarray]:
    """The babble voices that decode (another clip's broken file must not cost this clip)."""
    out = []
    for v in voices:
        try:
            out.append(_audio(v))
        except MediaError:
            continue
    if not out:
        raise MediaError(f"no babble voice decodes ({len(voices)} tried); give --noise-dir")
    return out


def noise_for(clip_id: str, seed: int, n: int, noise_files, voices) -> tuple[np.ndarray, tuple]:
    """The clip's noise of n samples and what it is made of: from `noise_files`, joined as
    main-corrupt.py joins them, ((file indices), start in the joined files); without noise files,
    babble of `voices` (audio paths), (). The same for the same clip, seed and n."""
    if noise_files:
        rng = np.random.default_rng([seed, zlib.crc32(clip_id.encode()), 2])
        picks, start = noise_draw(n, len(noise_files), lambda i: _length(noise_files[i]), rng)
        joined = np.concatenate([_audio(noise_files[i]) for i in picks])
        return joined[start:start + n], (tuple(picks), start)
    rng = np.random.default_rng([seed, zlib.crc32(clip_id.encode()), 1])
    return babble(_decodable(voices), n, rng), ()


def corrupt_clip(job) -> tuple[str, str | None, tuple]:
    """job: (clip id, [(source, destination)], Draw, noise files, babble voices, seed) -> (id,
    error or None, the noise of its first file: noise_for's description). A clip that cannot be
    corrupted is reported; the others go on."""
    clip_id, pairs, d, noise_files, voices, seed = job
    made = []

    def noise(n: int) -> np.ndarray:
        signal, what = noise_for(clip_id, seed, n, noise_files, voices)
        made.append(what)
        return signal

    try:
        for src, dst in pairs:
            corrupt_file(Path(src), Path(dst), d, noise)
        return clip_id, None, made[0] if made else ()
    except Exception as err:  # noqa: BLE001  (any decoder or writer failure is the clip's)
        return clip_id, f"{type(err).__name__}: {err}", ()
