"""What every command line of the project shares: refusals, the corpus options, Ctrl-C.

    Refused("why")              exit 2 before any work (a bad option, corpus, input file)
    @corpus_options             --layout / --root / --clips, as `python -m extract` takes them
    @ends_cleanly("what is kept")
                                Ctrl-C and a full disk end the command with one line on stderr
                                (exit 130 and 1), nothing half-written left
    @damage_named               a damaged cache file ends it with one line naming it, exit 1
    worker_pool(n, init, args)  spawned workers that leave Ctrl-C to the parent
    check_clip_table(table, cache, replace)
                                a clip table that would lose clips is refused unless --replace-clips
"""
from __future__ import annotations

import errno
import functools
import multiprocessing
import re
import signal
import sys
import threading
from pathlib import Path

import click

from .clips import ClipsDropped, changes, clips_path
from .hdf5 import DamagedFile

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class Refused(click.ClickException):
    """Refused before any work (bad option, corpus path or layout): exit 2, as for usage errors."""

    exit_code = 2


def corpus_options(command):
    """--layout/--root/--clips, as `python -m extract` takes them: the corpus of the clip table."""
    for option in reversed((
            click.option("--layout", help="Layout loader when the dataset name is not one (mer2023, mer2024, mer2025, samsemo, demo)."),
            click.option("--root", type=click.Path(file_okay=False), help="Corpus folder for a layout loader."),
            click.option("--clips", type=click.Path(dir_okay=False),
                         help="CSV describing the corpus (id,path,split,label,valence,text)."))):
        command = option(command)
    return command


def check_device(name: str) -> str:
    """`name` if it is auto, cpu, cuda or cuda:N with N a CUDA device torch sees here; else
    ValueError naming the value and the cause (stage 1 and 2 take --device the same way)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ValueError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    if name.startswith("cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if count == 0:
            raise ValueError(f"--device {name}: no CUDA device is available here (use cpu or auto)")
        if index >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA device{'s' * (count > 1)} "
                             f"(cuda:0 to cuda:{count - 1})")
    return name


def device_option(default: str | None = "auto", help: str = "auto, cpu, cuda or cuda:N."):
    """--device, refused (exit 2) before any work unless check_device takes it."""
    def check(ctx, param, value):
        try:
            return value if value is None else check_device(value)
        except ValueError as err:
            raise Refused(str(err)) from None
    return click.option("--device", default=default, show_default=default is not None, callback=check, help=help)


def cache_options(dataset_help: str = "Cached dataset (default: the only one in the cache).", required: bool = False):
    """--dataset and --cache (as cache_dir), as every stage-2 command takes them."""
    def decorate(command):
        command = click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
                               help="Cache folder (default data/cache).")(command)
        return click.option("--dataset", required=required, help=dataset_help)(command)
    return decorate


def corpus_manifest(dataset, layout, root, clips):
    """The corpus's manifest when one is named, else None; a bad one is refused before any work."""
    if not (layout or root or clips):
        return None
    from manifests import load_manifest

    try:
        return load_manifest(dataset, layout=layout, root=root, clips=clips)
    except (ValueError, FileNotFoundError) as err:
        raise Refused(str(err)) from None


def check_clip_table(table, cache, replace: bool):
    """Before any work: refuse writing the clip table `table` (cache.ClipTable) over a cached one
    that holds clips it lacks, unless `replace` (--replace-clips), naming how many and a few; say
    what else it changes (clips added, labels changed), as that replaces the table too."""
    try:
        dropped, change = changes(table, cache)
    except DamagedFile as err:
        if not replace:
            raise Refused(str(err)) from None
        dropped, change = [], "the damaged table is written again"
    if dropped and not replace:
        raise Refused(str(ClipsDropped(clips_path(table.dataset, cache), dropped, len(table))))
    if change:
        click.echo(f"clip table of {table.dataset}: {change}; it is replaced", err=True)


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


def _interrupt_once(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def damage_named(command):
    """Decorate a command's function (below @click.command): a damaged cache file it reads ends it
    with the DamagedFile message (the file, the cause, what to do) on stderr and exit 1."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DamagedFile as err:
            click.echo(str(err), err=True)
            sys.exit(1)
    return run


def ignore_interrupts():
    """For worker processes (a pool's initializer): Ctrl-C reaches the whole process group; the
    parent alone handles it and stops its workers, so they print no traceback of their own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_pool(workers: int, initializer=None, initargs=()):
    """A spawned process pool whose workers never act on Ctrl-C: SIGINT is blocked while they
    start (a spawned child inherits the mask: a Ctrl-C while it imports stays pending), then
    ignored by `ignore_interrupts` before it is unblocked and `initializer(*initargs)` runs. The
    parent's own Ctrl-C, held while it starts them, arrives once they are up."""
    blocked = threading.current_thread() is threading.main_thread()
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return multiprocessing.get_context("spawn").Pool(workers, _start_worker, (initializer, initargs))
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _start_worker(initializer, initargs):
    ignore_interrupts()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # ignored now: nothing to hold back
    if initializer is not None:
        initializer(*initargs)
