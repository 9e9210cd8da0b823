"""One clip's corruption, run in a worker process (a module of its own: spawned workers import it)."""
from __future__ import annotations

import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.media import MediaError
from .copy import corrupt_file, fit_length_noise, read_audio
from .degrade import babble


@lru_cache(maxsize=64)
def _audio(path: str) -> np.ndarray:
    return read_audio(Path(path))


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


def corrupt_clip(job) -> tuple[str, str | None]:
    """job: (clip id, [(source, destination)], Draw, noise files, babble voices, seed) -> (id,
    error or None). A clip that cannot be corrupted is reported; the others go on."""
    clip_id, pairs, d, noise_files, voices, seed = job

    def noise(n: int) -> np.ndarray:
        if noise_files:
            return fit_length_noise(_audio(noise_files[d.noise[0]]), n, d.offset)
        rng = np.random.default_rng([seed, zlib.crc32(clip_id.encode()), 1])
        return babble(_decodable(voices), n, rng)

    try:
        for src, dst in pairs:
            corrupt_file(Path(src), Path(dst), d, noise)
        return clip_id, None
    except Exception as err:  # noqa: BLE001  (any decoder or writer failure is the clip's)
        return clip_id, f"{type(err).__name__}: {err}"
