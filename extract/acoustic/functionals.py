"""openSMILE functionals over the whole clip: INTERSPEECH 2009 / 2010, eGeMAPS, ComParE 2016.

Each takes the clip's audio as 16 kHz mono float32 (see extract.core.media).
"""
from __future__ import annotations

import os

import numpy as np

from ..core.base import Extractor, Output, register_presets
from ..core.media import SAMPLE_RATE


class OpenSmileFunctionals(Extractor):
    """openSMILE functionals of one config over the whole clip -> float32 [D]."""

    version = "1"
    feature_set = ""  # an opensmile.FeatureSet name, or a config file of the package's is09-13 folder

    def setup(self):
        import opensmile

        if self.feature_set.endswith(".conf"):
            folder = os.path.join(os.path.dirname(opensmile.__file__), "core", "config", "is09-13")
            self._smile = opensmile.Smile(feature_set=os.path.join(folder, self.feature_set),
                                          feature_level="func")
        else:
            self._smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, self.feature_set),
                                          feature_level=opensmile.FeatureLevel.Functionals)

    def extract(self, clip, media) -> Output:
        values = self._smile.process_signal(media.audio, SAMPLE_RATE).to_numpy()
        return Output(arrays={"functionals": values.reshape(-1).astype(np.float32)})

    def provenance(self) -> dict:
        return super().provenance() | {"feature_set": self.feature_set}


register_presets(OpenSmileFunctionals, {
    "is09": dict(dims="384", feature_set="IS09_emotion.conf",
                 description="openSMILE INTERSPEECH 2009 Emotion Challenge functionals"),
    "is10": dict(dims="1582", feature_set="IS10_paraling_compat.conf",
                 description="openSMILE INTERSPEECH 2010 Paralinguistic Challenge functionals"),
    "egemaps": dict(dims="88", feature_set="eGeMAPSv02",
                    description="openSMILE eGeMAPS v02 functionals (Geneva minimalistic acoustic parameter set)"),
    "compare2016": dict(dims="6373", feature_set="ComParE_2016",
                        description="openSMILE ComParE 2016 functionals (large brute-force set)"),
}, globals())
