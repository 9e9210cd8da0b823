"""The MER 2024 / 2025 Track 1 submission rules, as the organisers' evaluation.py holds a file to them."""
import pytest

from manifests import MER_CLASSES
from manifests.tracks import TRACKS, SubmissionError, check_submission


def submission(tmp_path, text):
    path = tmp_path / "submission.csv"
    path.write_text(text)
    return path


def test_the_track_rules_of_a_submission_file(tmp_path):
    track, candidates = TRACKS["mer2025"], ["c1", "c2", "c3"]
    assert check_submission(submission(tmp_path, "name,discrete\nc1,happy\nc2,sad\nc3,neutral\n"), track,
                            candidates) == 3
    with pytest.raises(SubmissionError, match="header name,discrete,valence; MER 2025 Track 1 .MER-SEMI. wants "
                                              "name,discrete"):
        check_submission(submission(tmp_path, "name,discrete,valence\nc1,happy,1\n"), track, candidates)
    bad = "name,discrete\nc1,happy\nc1,happy\nc9,sad\nc2,joy\n"
    with pytest.raises(SubmissionError) as err:
        check_submission(submission(tmp_path, bad), track, candidates)
    assert str(err.value) == (f"{tmp_path / 'submission.csv'}: 1 candidate clips have no row (c3); 1 rows name no "
                              "candidate clip (c9); 1 clips have several rows (c1); 1 rows have a discrete value "
                              f"outside {', '.join(MER_CLASSES)} (c2)")
