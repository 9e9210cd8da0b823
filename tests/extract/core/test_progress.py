"""Progress written to a file is plain lines, not a carriage-return bar."""
import io
import re
from types import SimpleNamespace

from click.testing import CliRunner

from extract.__main__ import main
from extract.core import progress
from extract.core.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_one_plain_line_every_few_seconds_and_one_at_the_end():
    stream = io.StringIO()
    bar = Progress(5, stream=stream, every=3600)
    for failed in (0, 0, 1, 1, 2):
        bar.update(failed)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 1, stream.getvalue()  # nothing due before the end
    assert re.fullmatch(r"extract: 5/5 clips \(100%\), [\d.]+ clips/s, elapsed 0:00:0\d, ETA 0:00:00, 2 failed",
                        lines[0]), lines


def test_a_terminal_gets_the_live_bar():
    stream = Terminal()
    bar = Progress(2, stream=stream)
    bar.update(0)
    bar.close()
    assert "\r" in stream.getvalue() and "1/2" in stream.getvalue()


def test_an_extraction_run_into_a_file_prints_lines(folder_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)  # a line per clip, to see them all
    result = CliRunner().invoke(main, ["--dataset", "mine", "--clips", str(folder_corpus), "--features", "mfcc",
                                       "--cache", str(tmp_path)])  # CliRunner's streams are no terminal
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("extract: ")]
    assert [line.split(" clips")[0] for line in lines] == ["extract: 1/3", "extract: 2/3", "extract: 3/3"]


def test_the_rate_and_eta_are_timed_from_the_first_clip_not_the_start_up(monkeypatch):
    """100 s of start-up (models loading), then a clip a second: after 11 clips the rate is 1 clip/s
    and 10 clips take 10 s more (timed from the start it would say 0.1 clips/s and 100 s)."""
    clock = [0.0]
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    stream = io.StringIO()
    bar = Progress(21, stream=stream, every=0.0)
    clock[0] = 100.0
    bar.update(0)
    for _ in range(10):
        clock[0] += 1.0
        bar.update(0)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "extract: 1/21 clips (5%), ? clips/s, elapsed 0:01:40, ETA ?, 0 failed"
    assert lines[-1] == "extract: 11/21 clips (52%), 1.0 clips/s, elapsed 0:01:50, ETA 0:00:10, 0 failed"
