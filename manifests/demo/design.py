"""What each demo clip says and shows: emotion cues per modality, drawn from a seed.

Every modality carries the emotion, none of them always: per clip each of voice and text is
independently "ambiguous" (neutral prosody, neutral wording) with probability AMBIGUOUS, the face
(a neutral face) with probability FACE_AMBIGUOUS, cue strengths vary, and faces blend in a weaker
distractor expression in the brows and eyes, so fusing modalities beats any single one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

CLASSES = ("neutral", "angry", "happy", "sad", "worried", "surprise")  # MER 2023 order
AMBIGUOUS = 0.35
# a real expression is read more reliably than prosody or wording: the face is neutral more often
FACE_AMBIGUOUS = 0.5

# valence centre per class, on MER 2023's [-5, 5] scale
VALENCE = {"neutral": 0.0, "angry": -3.2, "happy": 3.4, "sad": -3.0, "worried": -1.8, "surprise": 1.2}

# espeak-ng prosody at full cue strength: (pitch 0-100, rate wpm, pitch range 0-100, volume 0-200)
PROSODY = {"neutral": (50, 165, 45, 100), "angry": (38, 235, 85, 200), "happy": (80, 195, 100, 140),
           "sad": (25, 100, 5, 50), "worried": (62, 135, 20, 70), "surprise": (95, 170, 100, 155)}

# speakers: (espeak voice, pitch offset); each says every kind of sentence
VOICES = (("en+m1", -8), ("en+m3", -4), ("en+f2", 10), ("en+f4", 6), ("en-us+m2", -2),
          ("en-us+f3", 12), ("en-gb-x-rp+m4", 0), ("en+f5", 8))

SENTENCES = {
    "neutral": ("The meeting starts at nine tomorrow.", "I put the files on your desk.",
                "We took the train to the city.", "The report has twelve pages."),
    "angry": ("I told you a hundred times, stop it!", "This is completely unacceptable!",
              "How dare you lie to me again?", "Get out of my office right now!"),
    "happy": ("I got the job, this is wonderful!", "We won, I am so glad!",
              "What a lovely surprise party, thank you!", "I love this, it makes me smile."),
    "sad": ("I miss her so much.", "Nobody came to say goodbye.",
            "I lost everything I worked for.", "It will never be the same again."),
    "worried": ("What if the test results are bad?", "I am afraid something went wrong.",
                "He still has not called, I am nervous.", "I hope we are not too late."),
    "surprise": ("Wait, you are here already?", "No way, is that really true?",
                 "Oh! I did not expect that at all!", "You did all of this by yourself?"),
}


@dataclass(frozen=True)
class ClipDesign:
    """The latent design of one clip (written to demo-info.json)."""

    id: str
    split: str
    label: str
    valence: float
    text: str
    voice: str
    voice_cue: float   # 0 = neutral prosody, 1 = full emotional prosody
    face_cue: float    # peak expression intensity (0 = neutral face)
    face_distractor: str     # another expression in the brows and eyes, weaker (faces are not clean)
    distractor_cue: float
    text_cue: bool     # False = a neutral sentence
    audio_rate: int
    audio_channels: int
    motion_seed: int
    snr_db: float | None = None      # MER-NOISE speech noise (test2 only)
    blur_factor: int | None = None   # MER-NOISE down/up-sampling factor (test2 only)
    source: str | None = None        # the test1 clip a test2 clip corrupts

    def as_dict(self) -> dict:
        return asdict(self)


def cue(rng: np.random.Generator, ambiguous: float = AMBIGUOUS) -> float:
    """A modality's cue strength: 0 with probability `ambiguous`, else in [0.45, 1]."""
    return 0.0 if rng.random() < ambiguous else float(rng.uniform(0.45, 1.0))


def audio_format(index: int) -> tuple[int, int]:
    """(sample rate, channels): mostly 16 / 22.05 kHz mono, some 44.1 / 48 kHz stereo."""
    return ((16000, 1), (22050, 1), (16000, 1), (44100, 2), (16000, 1), (48000, 2), (22050, 1))[index % 7]


def design_clip(rng: np.random.Generator, clip_id: str, split: str, label: str, index: int) -> ClipDesign:
    voice, _ = VOICES[int(rng.integers(len(VOICES)))]
    text_cue = bool(rng.random() >= AMBIGUOUS) or label == "neutral"
    pool = SENTENCES[label if text_cue else "neutral"]
    valence = float(np.clip(VALENCE[label] + rng.normal(0, 0.7), -5, 5))
    rate, channels = audio_format(index)
    others = [c for c in CLASSES if c not in ("neutral", label)]
    return ClipDesign(id=clip_id, split=split, label=label, valence=round(valence, 2),
                      text=pool[int(rng.integers(len(pool)))], voice=voice, voice_cue=cue(rng),
                      face_cue=cue(rng, FACE_AMBIGUOUS), face_distractor=others[int(rng.integers(len(others)))],
                      distractor_cue=float(rng.uniform(0.0, 0.45)), text_cue=text_cue,
                      audio_rate=rate, audio_channels=channels, motion_seed=int(rng.integers(2**31)))


def prosody(design: ClipDesign) -> dict:
    """espeak-ng parameters: neutral prosody moved toward the emotion's by the voice cue."""
    offset = dict(VOICES)[design.voice]
    neutral, target = np.array(PROSODY["neutral"], float), np.array(PROSODY[design.label], float)
    pitch, rate, pitch_range, volume = neutral + design.voice_cue * (target - neutral)
    return {"pitch": int(np.clip(pitch + offset, 0, 100)), "rate": int(rate),
            "pitch_range": int(pitch_range), "volume": int(volume)}


def split_sizes(n_clips: int) -> dict[str, int]:
    """MER 2023-like proportions: 96 -> train 64, test1 12, test2 12 (test1 corrupted), test3 8."""
    if n_clips < 4:
        raise ValueError("the demo corpus needs at least 4 clips (one per split)")
    test1 = max(1, round(n_clips / 8))
    test3 = max(1, round(n_clips / 12))
    return {"train": n_clips - 2 * test1 - test3, "test1": test1, "test2": test1, "test3": test3}
