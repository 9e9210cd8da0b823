"""Transcript files of the MER releases, and which transcript a text encoder reads.

A transcript file (`name` and one column per transcript) may give one transcript per clip or the
same transcript in several languages:

    name,sentence              MER 2023 (ASR output, language not stated; `text` alike)
    name,chinese               MER 2024 label-transcription.csv, MERTools' merged transcription file
    name,chinese,english       MER 2025 subtitle_chieng.csv, MERTools' transcription-engchi-polish.csv

The rule (documented in README, "Your own data"): a text encoder reading `language` (its option
`language`, default `chinese`, as the MER baselines read the transcripts) gets that language's
column where the file has one; else the file's transcript of unnamed language (`sentence`,
`text`); a file with neither (only the other language) is refused before any work. A clip's
`text` is its transcript by the same rule for Chinese.
"""
from __future__ import annotations

from pathlib import Path

from .csvio import read_rows

LANGUAGES = ("chinese", "english")  # the languages a text encoder's `language` option names
DEFAULT_LANGUAGE = "chinese"        # MERTools' extract_text_huggingface.py --language default
UNNAMED = ("sentence", "text")      # a transcript whose language the file does not state
COLUMNS = LANGUAGES + UNNAMED


def read_transcripts(path: Path) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """{clip id: {column: transcript}} over the file's transcript columns, and {clip id: reason}
    for rows that are not valid UTF-8. ValueError naming the file when it has no transcript column."""
    rows, errors = read_rows(path, "name")
    columns = [c for c in COLUMNS if rows and c in rows[0]]
    if rows and not columns:
        raise ValueError(f"{path}: no transcript column (one of {', '.join(COLUMNS)}; "
                         f"its columns: {', '.join(rows[0])})")
    return {r["name"]: {c: r[c] for c in columns} for r in rows if r.get("name")}, errors


def transcript_fields(row: dict[str, str] | None) -> dict:
    """Clip fields of one clip's {column: transcript} (None: the file has no row for it): `text`,
    the Chinese reader's transcript (the file's only one when it gives just another language),
    and `texts`, every column, where the file names a language."""
    if not row:
        return {}
    text = in_language(row, DEFAULT_LANGUAGE)
    named = bool(set(row) & set(LANGUAGES))
    return {"text": next(iter(row.values())) if text is None else text,
            "texts": tuple(sorted(row.items())) if named else ()}


def in_language(texts: dict[str, str], language: str) -> str | None:
    """The transcript a `language` reader takes of one clip's {column: transcript}: that
    language's, else the unnamed one, else None (the file gives only another language)."""
    if language in texts:
        return texts[language]
    return next((texts[c] for c in UNNAMED if c in texts), None)


def missing_language(columns, language: str, source: str) -> str | None:
    """Why a file with transcript `columns` cannot serve a `language` reader, or None when it can."""
    if not columns or language in columns or set(UNNAMED) & set(columns):
        return None
    return f"{source} has no {language} transcript (its transcript columns: {', '.join(sorted(columns))})"
