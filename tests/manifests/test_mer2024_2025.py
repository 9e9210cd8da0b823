"""The MER 2024 and MER 2025 Track 1 release layouts (file and column names as MERTools reads them),
and the transcript in the encoder's language."""
import pytest

from manifests import load_manifest
from tests.media import write_clip


def clips(folder, names, samples):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_clip(folder / f"{name}.{'wav' if folder.name == 'audio' else 'mp4'}", samples)


@pytest.fixture
def mer2024(tmp_path, speech_16k):
    """Two labelled clips (one more listed without its video), three of the unlabelled pool, one
    with a placeholder label row; the checked subtitles in Chinese."""
    root = tmp_path / "mer2024-dataset"
    clips(root / "video-labeled", ["s1", "s2"], speech_16k[:4000])
    clips(root / "video-unlabeled-with-test2noise", ["u1", "u2", "u3"], speech_16k[:4000])
    (root / "label-disdim.csv").write_text("name,discrete\ns1,happy\ns2,sad\ns9,angry\nu1,neutral\n")
    (root / "label-transcription.csv").write_text("name,chinese\ns1,我很开心\nu2,你好\n")
    return root


def test_mer2024_layout(mer2024):
    m = load_manifest("mer2024", root=mer2024)
    assert m.ids == ["s1", "s2", "s9", "u1", "u2", "u3"] and m.track == "mer2024"
    assert [c.split for c in m] == ["train"] * 3 + ["test"] * 3
    assert m["s1"].label == "happy" and m["s1"].valence is None and m["s1"].text == "我很开心"
    assert m["u1"].label is None  # a placeholder row of the unlabelled pool is not a label
    assert any("label-disdim.csv lists 1 clips of video-unlabeled-with-test2noise/ (u1)" in w for w in m.warnings)
    assert m["s9"].error == "listed in label-disdim.csv but no media file video-labeled/s9.* on disk"
    assert m["u2"].text == "你好" and m["u3"].text is None and m.transcript_file == "label-transcription.csv"


def test_mer2024_prefers_the_merged_transcription(mer2024):
    (mer2024 / "transcription-merge.csv").write_text("name,chinese\ns1,合并\nu3,全部\n")
    m = load_manifest("mer2024", root=mer2024)
    assert m["s1"].text == "合并" and m["u3"].text == "全部" and m.transcript_file == "transcription-merge.csv"


def test_mer2024_refuses_a_release_without_its_files(mer2024):
    (mer2024 / "label-disdim.csv").write_text("name,emotion\ns1,happy\n")
    with pytest.raises(ValueError, match=r"label-disdim.csv: no 'discrete' column \(expected name,discrete; "
                                         r"its columns: name,emotion\)"):
        load_manifest("mer2024", root=mer2024)
    (mer2024 / "label-disdim.csv").unlink()
    with pytest.raises(FileNotFoundError, match="has no label-disdim.csv .expected the MER 2024 release layout"):
        load_manifest("mer2024", root=mer2024)


@pytest.fixture
def mer2025(tmp_path, speech_16k):
    """Train t1-t3 (t3 also a candidate), candidates c1-c3 (c2 only as audio, c3 nowhere), a
    release clip x1 on no list; Chinese and English subtitles."""
    root = tmp_path / "mer2025-dataset"
    clips(root / "video", ["t1", "t2", "t3", "c1", "x1"], speech_16k[:4000])
    clips(root / "audio", ["c2"], speech_16k[:4000])
    (root / "track1_train_disdim.csv").write_text("name,discrete\nt1,worried\nt2,surprise\nt3,happy\n")
    (root / "track_all_candidates.csv").write_text("name,discrete\nc1,neutral\nc2,neutral\nc3,neutral\nt3,neutral\n")
    (root / "subtitle_chieng.csv").write_text("name,chinese,english\nt1,我担心,I am worried\nc1,,only English\n")
    return root


def test_mer2025_layout(mer2025):
    m = load_manifest("mer2025", root=mer2025)
    assert m.ids == ["c1", "c2", "c3", "t1", "t2", "t3"] and m.track == "mer2025"  # x1: on no list
    assert {c.id: c.split for c in m} == {"c1": "test", "c2": "test", "c3": "test", "t1": "train", "t2": "train",
                                          "t3": "test"}
    assert m["t1"].label == "worried" and m["c1"].label is None  # the candidates' column is a placeholder
    assert m["c2"].video is None and m["c2"].audio.name == "c2.wav" and m["c2"].error is None
    assert m["c3"].error == ("listed in track_all_candidates.csv but no media file video/c3.* (nor audio/) on disk")
    assert m["t3"].error == "listed in both track1_train_disdim.csv and track_all_candidates.csv"


def test_the_transcript_is_read_in_the_encoders_language(mer2025):
    m = load_manifest("mer2025", root=mer2025)
    t1, c1 = m["t1"], m["c1"]
    assert t1.text == "我担心" and t1.transcript() == "我担心" and t1.transcript("english") == "I am worried"
    assert c1.transcript("chinese") == "" and c1.transcript("english") == "only English"
    assert m.language_problem("english") is None and m.language_problem("chinese") is None
    (mer2025 / "subtitle_chieng.csv").write_text("name,english\nt1,I am worried\n")
    m = load_manifest("mer2025", root=mer2025)
    assert m.language_problem("chinese") == ("subtitle_chieng.csv has no chinese transcript "
                                             "(its transcript columns: english)")
    (mer2025 / "subtitle_chieng.csv").write_text("name,sentence\nt1,asr output\n")  # language not stated
    assert load_manifest("mer2025", root=mer2025).language_problem("english") is None


def test_mer2023_reads_chinese_before_english(tmp_path, speech_16k):
    clips(tmp_path / "train", ["a"], speech_16k[:4000])
    (tmp_path / "train-label.csv").write_text("name,discrete,valence\na,happy,1\n")
    (tmp_path / "transcription-engchi-polish.csv").write_text("name,english,chinese\na,Great,太好了\n")
    assert load_manifest("mer2023", root=tmp_path)["a"].text == "太好了"
