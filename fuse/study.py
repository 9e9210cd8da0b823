"""The shared record of a sweep's trials: an Optuna study in an RDB storage (an SQLite file by
default, a PostgreSQL URL for several machines). Optuna is the queue: every trial of the sweep is
enqueued, any number of worker processes, on any machine reaching the storage, pop waiting trials.
A worker that dies stops sending heartbeats; after the grace period its trial is failed and put
back in the queue (RetryHeartbeatStaleTrialCallback), so no trial is lost.

Two processes may enqueue the same key at once (nothing in Optuna makes "enqueue if absent"
atomic), so a popped trial steps aside when another copy of its key is queued or running with a
lower trial number: each key is trained by one worker at a time, and a copy popped after the key
finished finds its run folder and trains nothing. Heartbeat and grace period (seconds) come from
the environment variables MER_SWEEP_HEARTBEAT and MER_SWEEP_GRACE (defaults 20 and 60).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import tempfile
import time
import warnings
from contextlib import closing, contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from . import sweep_params
from .stopping import Stop
from .trials import Trial

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger(__name__)

HEARTBEAT = 20     # seconds between a running trial's heartbeats
GRACE = 60         # a trial silent this long belongs to a dead worker
RETRIES = 3
LIVE = (TrialState.WAITING, TrialState.RUNNING)


def _seconds(variable: str, default: int) -> int:
    text = os.environ.get(variable, "")
    try:
        value = int(text) if text else default
    except ValueError:
        raise ValueError(f"{variable}={text!r}: expected a whole number of seconds") from None
    if value < 1:
        raise ValueError(f"{variable}={text!r}: expected at least 1 second")
    return value


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds, from MER_SWEEP_HEARTBEAT / MER_SWEEP_GRACE."""
    heartbeat = _seconds("MER_SWEEP_HEARTBEAT", HEARTBEAT)
    grace = _seconds("MER_SWEEP_GRACE", max(GRACE, 3 * heartbeat))
    if grace <= heartbeat:  # a live worker would be taken for dead between two heartbeats
        raise ValueError(f"MER_SWEEP_GRACE={grace} must exceed MER_SWEEP_HEARTBEAT={heartbeat}")
    return heartbeat, grace


@contextmanager
def _quiet_experimental():
    """Heartbeats are an experimental Optuna feature (there since 2.9): no warning at every call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


@functools.cache
def _rdb_internals():
    """(models, _create_scoped_session) of Optuna's private RDB modules, or None (warned once) if a
    release moved them. The one private use: Optuna's public API exposes no trial's heartbeats, and
    the check for trials that died before their first one needs them (_Storage)."""
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
    except ImportError as err:
        log.warning(f"this Optuna ({optuna.__version__}) lacks the internals the check for trials that "
                    f"died before their first heartbeat reads ({err}); such a trial stays running")
        return None
    return models, _create_scoped_session


class _Storage(RDBStorage):
    """RDBStorage that also takes a running trial for dead when it never sent a heartbeat and began
    more than the grace period ago. Optuna's stale check skips trials without a heartbeat record,
    so a worker killed between popping a trial and its first heartbeat (a window that widens under
    load) left that trial running for ever, and a resumed sweep waiting for it (seen in a test)."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        if _rdb_internals() is None:  # moved in this Optuna: its own check alone
            return stale
        models, _create_scoped_session = _rdb_internals()
        # datetime_start is the popping worker's clock: machines sharing a study need clocks
        # closer than the grace period, as the heartbeats themselves do
        too_old = datetime.now() - timedelta(seconds=self.grace_period)
        with _create_scoped_session(self.scoped_session, True) as session:
            running = (session.query(models.TrialModel).filter(models.TrialModel.state == TrialState.RUNNING)
                       .filter(models.TrialModel.study_id == study_id).all())
            silent = [t.trial_id for t in running
                      if not t.heartbeats and t.datetime_start is not None and t.datetime_start < too_old]
        return stale + [t for t in silent if t not in stale]


CONNECT_TIMEOUT = {"postgresql": {"connect_timeout": 10}, "mysql": {"connect_timeout": 10}}  # seconds


def check_storage(url: str):
    """Refuse (ValueError, one line naming the URL, its password masked, and the cause) a storage
    that cannot be opened: not a URL, an unknown database kind, a driver not installed, a server or
    database that cannot be reached, an SQLite file that is not a database or whose folder is
    missing or not writable. Creates nothing."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"--storage {masked(url)}: not a database URL (e.g. sqlite:///data/runs/study.db, "
                         f"postgresql://user@host/sweeps)") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        return _check_sqlite(parsed.database, shown)
    engine = None
    try:
        engine = create_engine(parsed, connect_args=CONNECT_TIMEOUT.get(parsed.get_backend_name(), {}))
        with engine.connect():
            pass
    except NoSuchModuleError:
        raise ValueError(f"--storage {shown}: unknown database kind {parsed.drivername!r} "
                         f"(sqlite, postgresql, mysql)") from None
    except ImportError as err:
        hint = "; pip install -e '.[cluster]' (psycopg 3)" if parsed.get_backend_name() == "postgresql" else ""
        raise ValueError(f"--storage {shown}: its database driver is not installed ({err}{hint})") from None
    except SQLAlchemyError as err:
        cause = " ".join(str(getattr(err, "orig", None) or err).split())
        if parsed.password:
            cause = cause.replace(parsed.password, "***")
        raise ValueError(f"--storage {shown}: cannot connect ({cause})") from None
    finally:
        if engine is not None:
            engine.dispose()


def _check_sqlite(path: str | None, shown: str):
    if not path or path == ":memory:":
        return
    path = Path(path)
    if path.exists():
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True)) as db:
                db.execute("SELECT count(*) FROM sqlite_master")
        except sqlite3.Error as err:
            raise ValueError(f"--storage {shown}: {path} cannot be opened as an SQLite database ({err})") from None
        return
    if not path.parent.is_dir():
        raise ValueError(f"--storage {shown}: folder {path.parent} does not exist")
    try:
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as err:
        raise ValueError(f"--storage {shown}: folder {path.parent} is not writable ({err.strerror})") from None


def masked(url: str) -> str:
    """`url` with the password of its user:password@ part (if any) shown as ***."""
    return re.sub(r"([^:/@]+:)[^@/]*@", r"\1***@", url, count=1)


def storage(url: str) -> RDBStorage:
    heartbeat, grace = heartbeat_settings()
    sqlite = url.startswith("sqlite")
    for attempt in range(5):
        try:
            with _quiet_experimental():
                rdb = _Storage(url, heartbeat_interval=heartbeat, grace_period=grace,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=RETRIES),
                                 engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else None)
            break
        except SQLAlchemyError:  # another process is creating the same new storage's tables
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    if sqlite:
        _immediate_transactions(rdb.engine)
    return rdb


def _immediate_transactions(engine):
    """SQLite: take the write lock when a transaction begins. pysqlite begins one only at the first
    write, so two processes could both read a trial as WAITING and both pop it (measured: 15 of
    150 trials popped twice by 3 processes); PostgreSQL's SELECT ... FOR UPDATE has no such gap.
    (The SQLAlchemy recipe for pysqlite transactions.)"""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened by RDBStorage's set-up predate the listeners


def study_name(definition: dict) -> str:
    """One study per sweep definition (dataset, features, models, grid, search, seeds)."""
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"sweep-{definition.get('dataset', '')}-{digest}"


def open_study(url: str, name: str) -> optuna.Study:
    return optuna.create_study(study_name=name, storage=storage(url), load_if_exists=True, direction="maximize")


def enqueue(study: optuna.Study, keys: list[tuple[str, dict]]) -> int:
    """Queue every (key, parameters) whose key is not waiting or running in the study; returns
    how many were queued. The caller passes the keys whose run is not finished: a failed trial, or
    a complete one whose run folder was deleted since, is queued again. The parameters (fuse.sweep_params)
    are handed back to the worker that pops the trial when it suggests them."""
    known = {t.user_attrs.get("key") for t in study.get_trials(deepcopy=False, states=LIVE)}
    added = 0
    for key, chosen in keys:
        if key not in known:
            study.enqueue_trial(chosen, user_attrs={"key": key})
            added += 1
    return added


def waiting(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def taken(study: optuna.Study, number: int, key: str) -> bool:
    """Whether another copy of `key` is waiting or running with a lower trial number (the lowest
    live copy always runs, so no key is dropped and none runs twice at once)."""
    return any(t.number < number and t.user_attrs.get("key") == key
               for t in study.get_trials(deepcopy=False, states=LIVE))


def work(study: optuna.Study, run_trial, deadline: float | None = None,
         signals=(signal.SIGINT, signal.SIGTERM)) -> int:
    """Run queued trials until the queue is empty and no trial is running anywhere (a dead
    worker's trial comes back to the queue after the grace period): `run_trial(key) -> ([(run,
    metrics)], trained: bool)`, the runs a queued key names, in its order. Each trial records its
    real choices and scores (fuse.sweep_params). Starts no trial after `deadline` (time.time()).
    `signals` stop it (fuse.stopping: KeyboardInterrupt, the trial in training failed). Returns
    how many trials this worker trained."""
    trained, stop = [], Stop()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    found = sweep_params.stored(study)  # None: a study written before trials recorded their choices

    def objective(trial: optuna.Trial) -> float:
        key = trial.user_attrs.get("key")
        if key is None:  # the sampler's own trial: another worker took the last queued one
            raise optuna.TrialPruned("queue empty")
        if stop.requested:
            raise optuna.TrialPruned("stopping")
        if taken(study, trial.number, key):
            trial.set_user_attr("duplicate", True)
            raise optuna.TrialPruned("another copy of this trial is queued or running")
        if found:
            sweep_params.suggest(trial, sweep_params.params(sweep_params.first_trial(key)), found)
        trial.set_user_attr("worker", worker)
        with stop.training():
            results, did_train = run_trial(key)
        trial.set_user_attr("trained", did_train)
        (run, metrics), others = results[0], results[1:]
        for name, value in sweep_params.attributes(run, metrics).items():
            trial.set_user_attr(name, value)
        if did_train and found:
            for (other, other_metrics), item in zip(others, json.loads(key)["runs"][1:]):
                sweep_params.add_finished(study, Trial.from_key(item["trial"]), other, other_metrics, found,
                                          trial.number)
        trained.extend([key] if did_train else [])
        return metrics["cv"]["combined"]["mean"]

    poll = min(2.0, float(heartbeat_settings()[0]))  # waiting on other workers' last trials
    with stop.installed(signals):
        while deadline is None or time.time() < deadline:
            stop.check()
            if waiting(study):
                study.optimize(objective, n_trials=1, catch=(Exception,))
                continue
            with _quiet_experimental():
                optuna.storages.fail_stale_trials(study)
            if not waiting(study) and not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                break
            time.sleep(poll)
        stop.check()
    return len(trained)
