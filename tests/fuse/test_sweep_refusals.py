"""fuse.sweep refuses, with exit 2 and one line before any work, a storage URL that cannot be opened
(its password masked) and a --budget that is not a positive duration."""
import os
import subprocess

import pytest
from click.testing import CliRunner

from fuse.sweep import main
from tests.postgres import needs_postgres, postgres_server

from .conftest import synthetic_corpus, write_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    manifest, arrays = synthetic_corpus(n_train=30, n_test=6, n_unlabelled=0)
    return write_cache(tmp_path_factory.mktemp("sweep-refusals") / "cache", "synth", manifest, arrays)


def sweep(cache, tmp_path, *args):
    args = ["--cache", cache, "--dataset", "synth", "--features", "A=acoustic", "--grid", "epochs=1;folds=2",
            "--runs", tmp_path / "runs", "--out", tmp_path / "out", "--quiet", *args]
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_refused(result, tmp_path, line, secret=None):
    assert result.exit_code == 2, result.output
    assert line in result.output.splitlines(), result.output
    if secret:
        assert secret not in result.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("url, line", [
    ("mysql://sweeper:s3cret@127.0.0.1/sweeps", "Error: --storage mysql://sweeper:***@127.0.0.1/sweeps: its database "
                                                "driver is not installed (No module named 'MySQLdb')"),
    ("oracle+nosuch://sweeper:s3cret@db/x", "Error: --storage oracle+nosuch://sweeper:***@db/x: unknown database kind "
                                            "'oracle+nosuch' (sqlite, postgresql, mysql)"),
    ("postgresql//sweeper:s3cret@db/sweeps", "Error: --storage postgresql//sweeper:***@db/sweeps: not a database "
                                             "URL (e.g. sqlite:///data/runs/study.db, postgresql://user@host/sweeps)"),
], ids=["driver-not-installed", "unknown-kind", "not-a-url"])
def test_a_storage_that_cannot_be_opened_is_refused(cache, tmp_path, url, line):
    assert_refused(sweep(cache, tmp_path, "--storage", url), tmp_path, line, secret="s3cret")


def test_an_sqlite_file_in_a_missing_folder_or_not_a_database_is_refused(cache, tmp_path):
    url = f"sqlite:///{tmp_path}/nosuch/study.db"
    assert_refused(sweep(cache, tmp_path, "--storage", url), tmp_path,
                   f"Error: --storage {url}: folder {tmp_path}/nosuch does not exist")
    (tmp_path / "notes.db").write_text("not a database\n" * 100)
    url = f"sqlite:///{tmp_path}/notes.db"
    assert_refused(sweep(cache, tmp_path, "--storage", url), tmp_path,
                   f"Error: --storage {url}: {tmp_path}/notes.db cannot be opened as an SQLite database "
                   f"(file is not a database)")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only filesystem needs root")
def test_an_sqlite_file_in_a_read_only_folder_is_refused(cache, tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], check=True)
    try:
        url = f"sqlite:///{folder}/study.db"
        assert_refused(sweep(cache, tmp_path, "--storage", url), tmp_path,
                       f"Error: --storage {url}: folder {folder} is not writable (Read-only file system)")
        assert not list(folder.iterdir())
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("budget", ["-1h", "0s", "0", "nan", "inf", "h"])
def test_a_budget_that_is_not_a_positive_duration_is_refused(cache, tmp_path, budget):
    result = sweep(cache, tmp_path, "--budget", budget)
    assert_refused(result, tmp_path, f"Error: Invalid value for '--budget': '{budget}': expected a positive "
                                     f"duration: 8h, 90m, 45s or 3600 (seconds)")


@needs_postgres
def test_a_postgresql_database_that_does_not_exist_or_a_server_that_is_down_is_refused(cache, tmp_path):
    from fuse.study import check_storage

    with postgres_server() as server:
        port = server.port
        check_storage(server.url())  # the server is up and reachable: the refusal below is the name's
        assert_refused(sweep(cache, tmp_path, "--storage", server.url("nosuchdb")), tmp_path,
                       f"Error: --storage postgresql://postgres:***@127.0.0.1:{port}/nosuchdb: cannot connect "
                       f"(connection failed: connection to server at \"127.0.0.1\", port {port} failed: FATAL: "
                       f"database \"nosuchdb\" does not exist)", secret="s3cret")
        server.stop()
        result = sweep(cache, tmp_path, "--storage", server.url())
        assert_refused(result, tmp_path, f"Error: --storage postgresql://postgres:***@127.0.0.1:{port}/postgres: "
                                         f"cannot connect (connection failed: connection to server at \"127.0.0.1\", "
                                         f"port {port} failed: Connection refused Is the server running on that host "
                                         f"and accepting TCP/IP connections?)", secret="s3cret")
