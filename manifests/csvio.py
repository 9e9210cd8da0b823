"""Tolerant CSV reading: a bad row costs that clip, never the whole table."""
from __future__ import annotations

import csv
import io
from pathlib import Path


def read_rows(path: Path, key: str) -> tuple[list[dict], dict[str, str]]:
    """Rows of a CSV as dicts, plus {row key value: reason} for rows that are not valid UTF-8.

    A file that is valid UTF-8 (with or without BOM) is parsed whole; otherwise line by line, and
    each undecodable line is reported under the key found in its first field.
    """
    raw = Path(path).read_bytes()
    try:
        return _parse(raw.decode("utf-8-sig")), {}
    except UnicodeDecodeError:
        pass
    lines = raw.splitlines()
    good, bad = [], {}
    for number, line in enumerate(lines, start=1):
        try:
            good.append(line.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as err:
            clip_id = line.split(b",", 1)[0].decode("latin-1").strip().strip('"')
            bad[clip_id] = f"{Path(path).name} line {number} is not valid UTF-8 ({err.reason} at byte {err.start})"
    rows = _parse("\n".join(good))
    if rows and key not in rows[0]:
        raise ValueError(f"{path}: no '{key}' column (columns: {list(rows[0])})")
    return rows, bad


def read_columns(path: Path, columns: tuple[str, ...]) -> tuple[list[dict], dict[str, str]]:
    """read_rows of a file that must have `columns` (the first one keys the rows): ValueError
    naming the file, the missing column and the columns it has."""
    rows, bad = read_rows(path, columns[0])
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: no {', '.join(repr(c) for c in missing)} column (expected "
                         f"{','.join(columns)}; its columns: {','.join(rows[0])})")
    return rows, bad


def _parse(text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]


def index_rows(rows: list[dict], key: str, source: str) -> tuple[dict[str, dict], dict[str, str]]:
    """{id: row}, and {id: reason} for ids listed more than once with different content."""
    by_id: dict[str, dict] = {}
    lines: dict[str, list[int]] = {}
    conflicts: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        clip_id = row.get(key, "")
        if not clip_id:
            continue
        lines.setdefault(clip_id, []).append(number)
        if clip_id in by_id and by_id[clip_id] != row:
            conflicts[clip_id] = (f"duplicate id in {source} with conflicting rows "
                                  f"(lines {', '.join(map(str, lines[clip_id]))})")
        by_id.setdefault(clip_id, row)
    return by_id, conflicts


def parse_valence(value: str | None, clip_id: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"clip {clip_id}: valence {value!r} is not a number") from None


def parse_labels(value: str | None) -> list[str]:
    """A label cell -> its emotions: 'happy' -> ['happy'], 'happy; surprise' -> ['happy', 'surprise'],
    '' -> [] (unlabelled); repeated names count once."""
    labels = []
    for part in (value or "").split(";"):
        part = part.strip()
        if part and part not in labels:
            labels.append(part)
    return labels
