"""Loader for SAMSEMO's raw release as samsungnlp/samsemo's code reads it (Bujnowski et al. 2024).

    ROOT/<split>_split_<LANG>.txt    scene ids, one per line (train, valid, test; EN, PL, KO, DE, ES)
    ROOT/meta.pkl                    {scene id: {"label": ..., "text": transcript, ...}}
    ROOT/<scene id>/audio.wav        one folder per scene: its audio and its frames
    ROOT/<scene id>/image_<i>.jpg    frames, i = 0, 1, ... (FRAME_RATE per second)

The split files and meta.pkl may also sit in ROOT/meta_and_splits/ and the scene folders in
ROOT/segmented/combined/ (run.py's defaults under its base_dir/final_selection/). Every split file
present is loaded, all languages together; a scene's split is its file's split name, as the file
names it ("valid" stays "valid"). Scene ids (`<source video>_<scene number>`) are the corpus's own,
unique across languages, and keyed as they are in meta.pkl and the folder names; a scene listed in
two split files is a failed clip naming both.

Classes: the paper's Table 4 set-up, in run.py's `--emotions` order: anger and disgust merged as
"anger+", fear dropped. A scene labelled fear alone, or with run.py's 0/1 vector all zero, has none
of the classes: labelled NO_CLASS, an all-negative target that stage 2 trains and scores, as run.py
does (its BCE loss and F1 take the all-zero row as it is).

meta.pkl is a Python pickle: load only a release you trust.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np

from .table import LABEL_SEP, NO_CLASS, Clip, Manifest

# run.py --emotions (Table 4): anger and disgust merged, fear dropped
CLASSES = ("anger+", "happiness", "sadness", "surprise", "neutral")
# SAMSEMO's seven emotions (and common spellings) -> a class, or None: dropped
EMOTIONS = {"anger": "anger+", "angry": "anger+", "disgust": "anger+", "disgusted": "anger+",
            "anger+": "anger+", "happiness": "happiness", "happy": "happiness", "joy": "happiness",
            "sadness": "sadness", "sad": "sadness", "surprise": "surprise", "surprised": "surprise",
            "neutral": "neutral", "fear": None, "fearful": None, "scared": None}
# assumed: the release stores frames already sampled, one per 500 ms (prep_video.py reads every
# image_<i>.jpg; its sampler's defaults are fps=2, img_interval=500 ms); the rate is written nowhere
FRAME_RATE = 2.0
META_NAME = "meta.pkl"
AUDIO_NAME = "audio.wav"
FRAME_PATTERN = re.compile(r"image_(\d+)\.jpg$")
SPLIT_FILE = re.compile(r"(?P<split>[^_/]+)_split_(?P<lang>[A-Za-z]+)\.txt$")
META_DIRS = ("", "meta_and_splits", "final_selection/meta_and_splits")
SCENE_DIRS = ("", "segmented/combined", "final_selection/segmented/combined")


def load(root: Path, name: str = "samsemo") -> Manifest:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: corpus folder {root} does not exist")
    meta_dir = next((root / d for d in META_DIRS if _split_files(root / d)), None)
    if meta_dir is None:
        raise FileNotFoundError(f"{name}: no <split>_split_<LANG>.txt in {root} (or its "
                                f"{', '.join(d + '/' for d in META_DIRS if d)}): expected SAMSEMO's layout")
    meta_path = meta_dir / META_NAME
    if not meta_path.is_file():
        raise FileNotFoundError(f"{name}: no {META_NAME} next to the split files in {meta_dir}")
    with open(meta_path, "rb") as f:
        meta = pickle.load(f)
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: expected a dict {{scene id: {{'label', 'text'}}}}, got {type(meta).__name__}")
    listed, errors = _listed_scenes(_split_files(meta_dir))
    scenes = _scene_dir(root, listed)
    clips, warnings, no_class = [], [], 0
    for scene_id, (split, source) in sorted(listed.items()):
        entry = meta.get(scene_id)
        if entry is None:
            warnings.append(f"{scene_id}: listed in {source} but not in {META_NAME}: unlabelled, no transcript")
        label, text, problem = _entry(entry)
        no_class += label == NO_CLASS
        if problem:  # the media are still usable: only the label is lost
            warnings.append(f"{scene_id}: {META_NAME} {problem}: unlabelled")
        clips.append(Clip(id=scene_id, split=split, video=scenes / scene_id, label=label, text=text,
                          error=errors.get(scene_id) or scene_problem(scenes / scene_id)))
    if no_class:
        warnings.append(f"{no_class} scene(s) with none of the {len(CLASSES)} classes (fear alone, a dropped class, "
                        "or an all-zero label): all-negative targets, as run.py trains and scores them")
    return Manifest(name, clips, root=root, classes=CLASSES, warnings=warnings)


def scene_problem(folder: Path) -> str | None:
    """Why a scene folder cannot be decoded at all (no folder, no audio.wav, no frame), or None."""
    if not folder.is_dir():
        return f"scene folder {folder.name}/ not found in {folder.parent}"
    if not (folder / AUDIO_NAME).is_file():
        return f"scene {folder.name}: no {AUDIO_NAME} in its folder"
    with os.scandir(folder) as entries:
        if not any(FRAME_PATTERN.fullmatch(e.name) for e in entries):
            return f"scene {folder.name}: no image_<i>.jpg frames in its folder"
    return None


def frame_files(folder: Path) -> list[tuple[int, Path]]:
    """(index, path) of a scene's image_<i>.jpg, by index."""
    found = []
    with os.scandir(folder) as entries:
        for e in entries:
            match = FRAME_PATTERN.fullmatch(e.name)
            if match:
                found.append((int(match.group(1)), Path(e.path)))
    return sorted(found)


def _split_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if SPLIT_FILE.fullmatch(p.name) and p.is_file())


def _listed_scenes(files: list[Path]) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """{scene id: (split, file)}, and {scene id: reason} for a scene listed in two files."""
    listed, errors = {}, {}
    for path in files:
        split = SPLIT_FILE.fullmatch(path.name).group("split")
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            scene_id = line.strip()
            if not scene_id:
                continue
            if scene_id in listed and listed[scene_id][1] != path.name:
                errors[scene_id] = f"listed in both {listed[scene_id][1]} and {path.name}"
            listed.setdefault(scene_id, (split, path.name))
    return listed, errors


def _scene_dir(root: Path, listed) -> Path:
    """The folder holding the scene folders: the first candidate holding any listed scene."""
    probe = sorted(listed)[:50]
    for d in SCENE_DIRS:
        if any((root / d / s).is_dir() for s in probe):
            return root / d
    return root


def _entry(entry) -> tuple[str | None, str | None, str | None]:
    """A scene's meta.pkl entry -> (label, transcript, problem): label None when the entry has none,
    NO_CLASS when its emotions are none of the classes (fear alone, an all-zero vector)."""
    if entry is None:
        return None, None, None
    if not isinstance(entry, dict):
        return None, None, f"entry is a {type(entry).__name__}, expected a dict with 'label' and 'text'"
    text = entry.get("text", entry.get("transcript"))
    text = text if isinstance(text, str) and text.strip() else None
    raw = entry.get("label")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, text, None
    try:
        names = _names(raw)
    except (TypeError, ValueError) as err:
        return None, text, f"label {raw!r}: {err}"
    return _label(names) or NO_CLASS, text, None


def _label(names: list[str]) -> str | None:
    """Emotion names -> 'anger+;surprise' (merged, in class order); None when none is a class."""
    classes = {EMOTIONS[n] for n in names} - {None}
    return LABEL_SEP.join(c for c in CLASSES if c in classes) or None


def _names(raw) -> list[str]:
    """meta.pkl's label -> lower-case emotion names. A label is emotion names (a string, a list, or
    a dict name -> 0/1) or a 0/1 vector over run.py's 5 emotions (anger, happiness, sadness,
    surprise, neutral), as prep_raw.py feeds it to the model."""
    if isinstance(raw, str):
        names = [n for n in re.split(r"[\s,;|/]+", raw.strip().lower()) if n]
    elif isinstance(raw, dict):
        names = [str(k).strip().lower() for k, v in raw.items() if v]
    elif isinstance(raw, (list, tuple)) and all(isinstance(x, str) for x in raw):
        names = [x.strip().lower() for x in raw]
    else:
        vector = np.asarray(raw, dtype=float).reshape(-1)
        if vector.size != len(CLASSES):
            raise ValueError(f"label vector of {vector.size} values: expected {len(CLASSES)} "
                             f"(run.py's order: anger, happiness, sadness, surprise, neutral)")
        return [CLASSES[i] for i in np.flatnonzero(vector > 0.5)]
    unknown = [n for n in names if n not in EMOTIONS]
    if unknown:
        raise ValueError(f"unknown emotion(s) {unknown}: expected some of {sorted(EMOTIONS)}")
    return names
