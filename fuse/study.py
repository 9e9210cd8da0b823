"""The shared record of a sweep's trials: an Optuna study in an RDB storage (an SQLite file by
default, a PostgreSQL URL for several machines). Optuna is the queue: every trial of the sweep is
enqueued once; any number of worker processes, on any machine reaching the storage, pop waiting
trials atomically. A worker that dies stops sending heartbeats; after the grace period its trial is
failed and put back in the queue (RetryHeartbeatStaleTrialCallback), so no trial is lost.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time

import warnings

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
log = logging.getLogger(__name__)

HEARTBEAT = 20     # seconds between a running trial's heartbeats
GRACE = 60         # a trial silent this long belongs to a dead worker
RETRIES = 3


def storage(url: str, heartbeat: int = HEARTBEAT, grace: int = GRACE) -> RDBStorage:
    return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=grace,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=RETRIES),
                      engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None)


def study_name(definition: dict) -> str:
    """One study per sweep definition (dataset, features, models, grid, search, seeds)."""
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"sweep-{definition.get('dataset', '')}-{digest}"


def open_study(url: str, name: str, heartbeat: int = HEARTBEAT, grace: int = GRACE) -> optuna.Study:
    return optuna.create_study(study_name=name, storage=storage(url, heartbeat, grace), load_if_exists=True,
                               direction="maximize")


def enqueue(study: optuna.Study, keys: list[str]) -> int:
    """Queue every trial key not yet in the study (finished, running or waiting); returns how many."""
    known = {t.user_attrs.get("key") for t in study.get_trials(deepcopy=False)}
    added = 0
    for index, key in enumerate(keys):
        if key not in known:
            study.enqueue_trial({"index": index}, user_attrs={"key": key})
            added += 1
    return added


def waiting(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def work(study: optuna.Study, n_keys: int, run_trial, deadline: float | None = None, poll: float = 5.0) -> int:
    """Run queued trials until the queue is empty and no trial is running anywhere (a dead
    worker's trial comes back to the queue after the grace period): `run_trial(key) -> objective
    value`. Starts no trial after `deadline` (time.time()). Returns how many trials this worker ran."""
    ran = []

    def objective(trial: optuna.Trial) -> float:
        key = trial.user_attrs.get("key")
        if key is None:  # the sampler's own trial: another worker took the last queued one
            raise optuna.TrialPruned("queue empty")
        trial.suggest_int("index", 0, max(n_keys - 1, 0))
        return run_trial(key)

    while deadline is None or time.time() < deadline:
        if waiting(study):
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[lambda s, t: ran.append(t)])
            continue
        optuna.storages.fail_stale_trials(study)
        if not waiting(study) and not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            break
        time.sleep(poll)
    return sum(1 for t in ran if t.user_attrs.get("key") is not None)
