"""What every command line of the project shares: refusals, the corpus options, Ctrl-C.

    Refused("why")              exit 2 before any work (a bad option, corpus, input file)
    @corpus_options             --layout / --root / --clips, as `python -m extract` takes them
    @ends_cleanly("what is kept")
                                Ctrl-C and a full disk end the command with one line on stderr
                                (exit 130 and 1), nothing half-written left
"""
from __future__ import annotations

import errno
import functools
import signal
import sys
import threading
from pathlib import Path

import click

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class Refused(click.ClickException):
    """Refused before any work (bad option, corpus path or layout): exit 2, as for usage errors."""

    exit_code = 2


def corpus_options(command):
    """--layout/--root/--clips, as `python -m extract` takes them: the corpus of the clip table."""
    for option in reversed((
            click.option("--layout", help="Layout loader when the dataset name is not one (mer2023, samsemo, demo)."),
            click.option("--root", type=click.Path(file_okay=False), help="Corpus folder for a layout loader."),
            click.option("--clips", type=click.Path(dir_okay=False),
                         help="CSV describing the corpus (id,path,split,label,valence,text)."))):
        command = option(command)
    return command


def corpus_manifest(dataset, layout, root, clips):
    """The corpus's manifest when one is named, else None; a bad one is refused before any work."""
    if not (layout or root or clips):
        return None
    from manifests import load_manifest

    try:
        return load_manifest(dataset, layout=layout, root=root, clips=clips)
    except (ValueError, FileNotFoundError) as err:
        raise Refused(str(err)) from None


def source_of(command, dataset, layout, clips) -> str:
    """What wrote a clip table, without paths of this machine: 'import-npy --clips clips.csv'."""
    return f"{command} --clips {Path(clips).name}" if clips else f"{command} --layout {layout or dataset}"


def ends_cleanly(kept: str):
    """Decorate a command's function (below @click.command) so that Ctrl-C and a full disk end it
    with one line on stderr: `interrupted: <kept>` and exit 130, or `no space left on device: <path>`
    and exit 1. What the command was writing is removed on the way out by the code that owns it
    (try/finally, `commit.atomic_write`, `fuse.folders.written`); the first Ctrl-C turns further
    ones off, so a second cannot cut that clean-up short."""
    def decorate(command):
        @functools.wraps(command)
        def run(*args, **kwargs):
            main_thread = threading.current_thread() is threading.main_thread()
            before = signal.signal(signal.SIGINT, _interrupt_once) if main_thread else None
            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt:
                click.echo(f"interrupted: {kept}", err=True)
                sys.exit(INTERRUPTED)
            except OSError as err:
                if err.errno not in NO_SPACE:
                    raise
                click.echo(f"no space left on device: {err.filename or 'a write failed'}; nothing half-written "
                           f"is left; free space and run the same command again", err=True)
                sys.exit(1)
            finally:
                if main_thread:
                    signal.signal(signal.SIGINT, before)
        return run
    return decorate


interruptible = ends_cleanly  # the name the Ctrl-C part had first


def _interrupt_once(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def ignore_interrupts():
    """For worker processes (a pool's initializer): Ctrl-C reaches the whole process group; the
    parent alone handles it and stops its workers, so they print no traceback of their own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
