"""Hand-crafted acoustic features (importing this registers them).

    functionals  openSMILE IS09, IS10, eGeMAPS, ComParE 2016 functionals over the clip
    spectral     librosa MFCC and log-mel, SAMSEMO E2E-L mel-spectrogram pieces
"""
from . import functionals, spectral  # noqa: F401
