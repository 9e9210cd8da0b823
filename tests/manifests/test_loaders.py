"""Clip tables from the MER 2023 release layout and from a user's CSV."""
import pytest

from manifests import MER_CLASSES, load_manifest
from tests.conftest import write_table
from tests.media import write_clip


@pytest.fixture
def mer_release(tmp_path, speech_16k):
    """A tiny MER 2023 release: labelled train/test1, unlabelled test3, a transcript file."""
    for split, names in {"train": ["sample_01", "sample_02", "sample_03"], "test1": ["sample_10"],
                         "test3": ["sample_30"]}.items():
        (tmp_path / split).mkdir()
        for name in names:
            write_clip(tmp_path / split / f"{name}.mp4", speech_16k[:8000])
    (tmp_path / "train-label.csv").write_text(
        "name,discrete,valence\nsample_01,happy,3.5\nsample_02,sad,-2\nsample_03,angry,-4\n"
        "sample_03,angry,-4\nsample_04,worried,-1\n")
    (tmp_path / "test1-label.csv").write_text("name,discrete,valence\nsample_10,neutral,0\n"
                                              "sample_10,surprise,1\n")
    (tmp_path / "transcription.csv").write_bytes(
        "name,sentence\nsample_01,今天真开心\n".encode() + b"sample_02,caf\xe9 au lait\n"
        + b"sample_10,hello there\n")
    return tmp_path


def test_mer2023_layout(mer_release):
    m = load_manifest("mer2023", root=mer_release)
    assert m.ids == ["sample_01", "sample_02", "sample_03", "sample_04", "sample_10", "sample_30"]
    assert m["sample_01"].label == "happy" and m["sample_01"].valence == 3.5
    assert m["sample_01"].text == "今天真开心" and m["sample_01"].split == "train"
    assert m["sample_30"].split == "test3" and m["sample_30"].label is None
    assert m["sample_01"].video.name == "sample_01.mp4"
    assert m.classes == MER_CLASSES


def test_mer2023_problems_become_per_clip_errors(mer_release):
    m = load_manifest("mer2023", root=mer_release)
    assert m["sample_03"].error is None  # listed twice with identical rows: harmless
    assert "no media file train/sample_04.*" in m["sample_04"].error
    assert "duplicate id in test1-label.csv" in m["sample_10"].error
    assert m["sample_02"].text is None and "line 3 is not valid UTF-8" in m["sample_02"].text_error
    assert m["sample_02"].error is None  # its audio and video are still usable


def test_demo_and_layout_names(mer_release):
    assert load_manifest("demo", root=mer_release).ids == load_manifest("mer2023", root=mer_release).ids
    noisy = load_manifest("mer2023-noisy", layout="mer2023", root=mer_release)
    assert noisy.name == "mer2023-noisy" and len(noisy) == 6
    with pytest.raises(ValueError, match="--layout"):
        load_manifest("mer2023-noisy", root=mer_release)
    with pytest.raises(FileNotFoundError, match="release layout"):
        load_manifest("mer2023", root=mer_release / "train")


def test_fingerprint_ignores_where_the_corpus_lives(mer_release, tmp_path_factory):
    import shutil

    moved = tmp_path_factory.mktemp("elsewhere") / "release"
    shutil.copytree(mer_release, moved)
    a, b = load_manifest("mer2023", root=mer_release), load_manifest("mer2023", root=moved)
    assert a.fingerprint() == b.fingerprint()
    (moved / "train-label.csv").write_text("name,discrete,valence\nsample_01,sad,-3\n")
    assert load_manifest("mer2023", root=moved).fingerprint() != a.fingerprint()


def test_folder_csv(folder_corpus):
    m = load_manifest("mine", clips=folder_corpus)
    assert m.ids == ["a", "b", "c"]
    assert m["c"].audio.name == "c.wav" and m["c"].video is None and m["c"].media.name == "c.wav"
    assert m["a"].text == "so glad" and m["b"].valence == -3.0 and m["c"].label is None


def test_folder_csv_missing_columns_is_a_clear_error(tmp_path):
    (tmp_path / "clips.csv").write_text("name,file\nx,x.mp4\n")
    with pytest.raises(ValueError, match="missing column"):
        load_manifest("mine", clips=tmp_path / "clips.csv")


def test_signature_follows_the_input_a_feature_needs(folder_corpus, speech_16k):
    clip = load_manifest("mine", clips=folder_corpus)["a"]
    audio, text = clip.signature(("audio",)), clip.signature(("text",))
    write_clip(folder_corpus.parent / "a.mp4", speech_16k[:8000])  # a new take, same transcript
    again = load_manifest("mine", clips=folder_corpus)["a"]
    assert again.signature(("audio",)) != audio and again.signature(("text",)) == text
    (folder_corpus.parent / "a.mp4").unlink()
    assert "media=missing" in load_manifest("mine", clips=folder_corpus)["a"].signature(("audio",))


def test_multi_label_cells_are_read_in_class_order(tmp_path, speech_16k):
    for name in "abcd":
        write_clip(tmp_path / f"{name}.wav", speech_16k[:4000])
    rows = [dict(id="a", path="a.wav", split="train", label="surprise ; happy"),
            dict(id="b", path="b.wav", split="train", label="sad"),
            dict(id="c", path="c.wav", split="test", label=""),
            dict(id="d", path="d.wav", split="train", label="happy;happy")]
    m = load_manifest("sams", clips=write_table(tmp_path / "clips.csv", rows))
    assert m.classes == MER_CLASSES  # every single label is a MER class
    assert m["a"].label == "happy;surprise" and m["a"].labels == ("happy", "surprise")
    assert m["d"].labels == ("happy",) and m["c"].labels == () and m.multi_label
    rows = [dict(id="a", path="a.wav", split="train", label="joy;calm"), dict(id="b", path="b.wav", split="train")]
    other = load_manifest("own", clips=write_table(tmp_path / "own.csv", rows))
    assert other.classes == ("calm", "joy") and other["a"].labels == ("calm", "joy")


def test_single_label_tables_keep_their_fingerprint(tmp_path, speech_16k):
    for name in "abcd":
        write_clip(tmp_path / f"{name}.wav", speech_16k[:4000])
    (tmp_path / "clips.csv").write_text("id,path,split,label,valence,text\na,a.wav,train,happy,2.5,hi\n"
                                        "b,b.wav,train, sad ,-3,\nc,c.wav,test,,,\nd,d.wav,train,joy,,\n")
    m = load_manifest("x", clips=tmp_path / "clips.csv")
    # the hash this table had before multi-label cells were read: features cached then stay valid
    assert not m.multi_label and m.fingerprint() == "4f09ec18f2eaf593"
    assert m.classes == ("happy", "joy", "sad") and m["b"].labels == ("sad",)


def test_splits_are_summarised_and_ordered_as_read():
    """train, then validation and test splits in order, then any other by name; not alphabetical
    (test1 before train) and not as the clips happen to come."""
    from manifests.table import Clip, Manifest, ordered_splits

    names = ["test2", "zeta", "test1", "valid", "alpha", "train", "test", "test2"]
    assert ordered_splits(names) == ["train", "valid", "test", "test1", "test2", "alpha", "zeta"]
    clips = [Clip(f"c{i}", split, label="happy") for i, split in enumerate(["test2", "train", "test1", "train"])]
    assert Manifest("m", clips).summary() == "m: 4 clips (train 2, test1 1, test2 1); 0 with errors"


def test_a_layout_without_a_folder_is_looked_for_in_data_datasets(mer_release, tmp_path_factory, monkeypatch):
    work = tmp_path_factory.mktemp("work")
    monkeypatch.chdir(work)   # `make extract DATASET=mer2023` as typed, without DATA=
    with pytest.raises(ValueError) as err:
        load_manifest("mer2023")
    message = str(err.value)
    assert "no corpus folder given, and none at data/datasets/mer2023" in message
    assert "make extract: DATA=DIR" in message and "ROOT/train-label.csv" in message
    (work / "data" / "datasets").mkdir(parents=True)
    (work / "data" / "datasets" / "mer2023").symlink_to(mer_release)
    assert load_manifest("mer2023").split("train")[0].id == "sample_01"
