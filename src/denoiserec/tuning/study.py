"""``denoiserec tune``: an Optuna study whose trials are ordinary run directories.

Study directory ``OUTPUT``::

    study.db        the Optuna study (SQLite), unless --storage names another database
    tune.json       the search space and the base configuration (a rerun must match them)
    trials/NNNN/    one run directory per trial (fingerprint, lock, resume: denoiserec.run)
    trials.csv      one row per trial: state, value, sampled settings, epochs, folder
    best.json       the best trial: settings, valid metrics, and its test metrics (tested once)
    summary.md      the best trial and the ten best trials as a table
    history.png     each trial's value and the best so far

A trial trains the base configuration with its sampled settings into ``trials/NNNN``,
selecting on valid only (the test set is not touched); after each epoch it reports the valid
selection value (``train.valid_metric``, trailing mean over ``train.selection_window``) to
the pruner. Its value is that selection value at the selected epoch. Several workers (processes
on one machine, or machines sharing a database URL) run trials of one study; ``trials`` counts
them all (checked before each trial starts: N workers may run up to N - 1 more). A worker
killed mid-trial leaves a trial whose heartbeat stops: after ``GRACE_SECONDS`` the next worker
to start a trial, or with the budget spent a worker waiting for the running trials, marks it
failed and queues the same settings again, and that retry resumes the run directory from its
last epoch (Ctrl-C queues the retry at once; it is held while Optuna creates or closes a
trial). Workers on several machines need one shared ``OUTPUT`` folder. When no trial is left
to run, the best trial's checkpoint is tested on the test set, once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from denoiserec.atomic import atomic_write_text, pid_lock
from denoiserec.errors import ConfigError, DenoiserecError
from denoiserec.fingerprints import comparable
from denoiserec.run import test_run, train_config
from denoiserec.runconfig import load_config
from denoiserec.train.distributed import world_size
from denoiserec.tuning.outputs import write_outputs
from denoiserec.tuning.space import TuneSpec, check_space, trial_overrides

STUDY_NAME = "denoiserec"
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 40
MAX_FAILURES_IN_A_ROW = 3


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("denoiserec tune needs Optuna: pip install 'denoiserec[tune]'"
                          ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats and their retry callback are marked experimental; they are what makes a
    # killed worker's trial run again, so the warning would only repeat on every start
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _retry_callback() -> Any:
    """Queue a failed trial's settings again (at most 3 times): the retry resumes its run."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    return RetryHeartbeatStaleTrialCallback(max_retry=3)


@dataclass(frozen=True)
class TuneJob:
    """What a worker tunes: the spec, the base settings (``--config`` and ``--set``), where."""

    spec: TuneSpec
    config: Path | None
    overrides: tuple[str, ...]
    output: Path
    storage: str | None = None
    worker: int = 0

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.output / 'study.db').resolve()}"


def trial_folder(frozen: Any) -> str:
    """A trial's run directory name: the number of the trial it retries, if it is a retry
    (so the retry resumes the killed trial's epochs), else its own."""
    return f"{frozen.system_attrs.get('failed_trial', frozen.number):04d}"


def _frozen(study: Any, number: int) -> Any:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _storage(job: TuneJob) -> Any:
    optuna = _optuna()
    from optuna.storages import RDBStorage

    url = job.storage_url
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                          grace_period=GRACE_SECONDS,
                          heartbeat_stale_trial_callback=_retry_callback())
    except (optuna.exceptions.OptunaError, ImportError, ValueError) as err:
        raise ConfigError(f"storage {url.split('://')[0]}://...: {err}") from None


def _check_study_dir(job: TuneJob, base: dict[str, Any]) -> None:
    """``OUTPUT`` is new, or a study of the same space and base configuration."""
    output = job.output
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output} is a file; choose another --output")
    record = {"spec": job.spec.to_dict(), "digest": job.spec.digest(), "base": base}
    path = output / "tune.json"
    if path.is_file():
        before = json.loads(path.read_text())
        if before["digest"] != record["digest"]:
            raise ConfigError(f"{output} holds a study of another search space (sampler, "
                              "pruner or space); choose another --output")
        if comparable(before["base"]) != comparable(base):
            raise ConfigError(f"{output} holds a study of another base configuration; choose "
                              "another --output")
    elif output.is_dir() and any(output.iterdir()):
        raise ConfigError(f"{output} exists and is not a denoiserec study; choose another "
                          "--output")
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1))


def trial_sampler(job: TuneJob, trials_so_far: int) -> Any:
    """TPE seeded from (sampler.seed, worker, trials in the study so far): a worker started
    again on a study, or a second worker, does not draw the settings another drew (one
    sampler seeded once per process would: a restarted worker would repeat its first draws)."""
    optuna = _optuna()
    seed = np.random.SeedSequence([job.spec.sampler.seed, job.worker, trials_so_far])
    return optuna.samplers.TPESampler(n_startup_trials=job.spec.sampler.startup_trials,
                                      seed=int(seed.generate_state(1)[0]), constant_liar=True)


def open_study(job: TuneJob, base: dict[str, Any]) -> Any:
    """Create or load the study, with this worker's sampler and the pruner; a worker whose
    space or base configuration (``base``: --config and --set) differs is refused."""
    optuna = _optuna()
    spec = job.spec
    sampler = trial_sampler(job, 0)
    pruner = (optuna.pruners.NopPruner() if spec.pruner.kind == "none" else
              optuna.pruners.MedianPruner(n_startup_trials=spec.pruner.startup_trials,
                                          n_warmup_steps=spec.pruner.warmup_epochs))
    study = optuna.create_study(storage=_storage(job), study_name=STUDY_NAME,
                                direction="maximize", sampler=sampler, pruner=pruner,
                                load_if_exists=True)
    digests = {"spec_digest": (spec.digest(), "search space"),
               "base_digest": (hashlib.sha256(json.dumps(comparable(base), sort_keys=True,
                                                         default=str).encode()).hexdigest(),
                               "base configuration (--config, --set)")}
    for key, (digest, what) in digests.items():
        known = study.user_attrs.get(key)
        if known is None:
            study.set_user_attr(key, digest)
        elif known != digest:
            raise ConfigError(f"the study in this storage was made with another {what}; "
                              "choose another --storage or --output")
    return study


def _budget(study: Any) -> tuple[int, int]:
    """(trials that count towards ``trials``, queued retries): a failed trial that was queued
    again counts once, as its retry."""
    state = _optuna().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    waiting = sum(t.state == state.WAITING for t in trials)
    counted = sum(t.state != state.WAITING and t.number not in retried for t in trials)
    return counted, waiting


class Objective:
    """One trial: the base settings with the sampled ones, trained into ``trials/NNNN``."""

    def __init__(self, job: TuneJob, study: Any) -> None:
        self.job = job
        self.study = study
        self.current: int | None = None
        self.interrupts = _HeldInterrupt()

    def __call__(self, trial: Any) -> float:
        self.current = trial.number
        with self.interrupts.released():
            return self._train(trial)

    def _train(self, trial: Any) -> float:
        optuna = _optuna()
        job = self.job
        params = {p.key: p.suggest(trial) for p in job.spec.space}
        config = load_config(job.config, [*job.overrides, *trial_overrides(job.spec, params)])
        run_dir = job.output / "trials" / trial_folder(_frozen(self.study, trial.number))
        trial.set_user_attr("run_dir", str(run_dir.relative_to(job.output)))
        print(f"[tune] trial {trial.number} -> {run_dir}: "
              + ", ".join(f"{k}={v}" for k, v in params.items()), flush=True)
        reported = 0

        def report(trainer: Any) -> None:
            nonlocal reported
            history = trainer.state.history
            for entry in history[reported:]:  # a resumed trial reports its earlier epochs too
                trial.report(entry["selection_value"], entry["epoch"])
            reported = len(history)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {history[-1]['epoch']}: below the median")

        result = train_config(config, run_dir, on_epoch=report, test=False)
        best = result.history[result.best_epoch]
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("epochs", len(result.history))
        trial.set_user_attr("valid", result.valid)
        return float(best["selection_value"])


class _HeldInterrupt:
    """Ctrl-C is held while Optuna creates or closes a trial and raised once the trial runs
    (or after ``optimize`` returns): an interrupt inside ``ask`` or ``tell`` would leave a
    trial RUNNING with no heartbeat (never retried) or retry the wrong one."""

    def __init__(self) -> None:
        self.pending = False
        self.active = threading.current_thread() is threading.main_thread()
        self.previous: Any = signal.default_int_handler

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending = True

    def __enter__(self) -> _HeldInterrupt:
        if self.active:
            self.previous = signal.signal(signal.SIGINT, self._hold)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self.previous)
            if self.pending and exc[0] is None:
                self.pending = False
                raise KeyboardInterrupt

    @contextlib.contextmanager
    def released(self) -> Any:
        """Inside a running trial: Ctrl-C interrupts at once (a held one now)."""
        if not self.active:
            yield
            return
        signal.signal(signal.SIGINT, self.previous)
        try:
            if self.pending:
                self.pending = False
                raise KeyboardInterrupt
            yield
        finally:
            signal.signal(signal.SIGINT, self._hold)


def _retry(study: Any, number: int) -> None:
    """Queue again the settings of trial ``number`` (interrupted): the retry resumes it."""
    _retry_callback()(study, _frozen(study, number))


def run_worker(job: TuneJob) -> Any:
    """Run trials until the study has ``trials`` of them; returns the study."""
    optuna = _optuna()
    base = check_space(job.spec, job.config, list(job.overrides)).to_dict()
    _check_study_dir(job, base)
    study = open_study(job, base)
    objective = Objective(job, study)
    failures = 0
    while True:
        counted, waiting = _budget(study)
        if counted >= job.spec.trials and not waiting and not _dead_trials_retried(study):
            break
        study.sampler = trial_sampler(job, len(study.get_trials(deepcopy=False)))
        objective.current = None
        try:
            with objective.interrupts:
                study.optimize(objective, n_trials=1, catch=(DenoiserecError,))
        except KeyboardInterrupt:
            state = _optuna().trial.TrialState
            if (objective.current is not None
                    and _frozen(study, objective.current).state in (state.RUNNING, state.FAIL)):
                _retry(study, objective.current)
            raise
        last = _frozen(study, objective.current)
        failures = failures + 1 if last.state == optuna.trial.TrialState.FAIL else 0
        if failures >= MAX_FAILURES_IN_A_ROW:
            raise ConfigError(f"{failures} trials failed in a row (see the lines above); "
                              "stopping this worker")
        write_outputs(study, job.output, tested=None)
    return study


def _dead_trials_retried(study: Any) -> bool:
    """With the budget spent, wait until every RUNNING trial either shows a live worker or
    goes stale (no heartbeat for ``GRACE_SECONDS``: its worker was killed); a stale trial is
    failed and queued again. True when some trial was queued again (there is work left).
    Optuna checks for stale trials only when a trial starts, so without this the last counted
    trial of a killed worker would stay RUNNING for good."""
    optuna = _optuna()
    state = optuna.trial.TrialState

    def running() -> set[int]:
        return {t.number for t in study.get_trials(deepcopy=False) if t.state == state.RUNNING}

    deadline = time.monotonic() + GRACE_SECONDS + HEARTBEAT_SECONDS
    while running():
        optuna.storages.fail_stale_trials(study)
        if _budget(study)[1]:
            return True
        if time.monotonic() > deadline:  # still beating: live workers finish them
            return False
        time.sleep(HEARTBEAT_SECONDS / 2)
    return False


def finish(job: TuneJob, study: Any) -> dict[str, Any] | None:
    """Test the best trial once when no trial is running or queued; write the outputs.
    Returns ``best.json``'s content, None while other workers still run trials."""
    state = _optuna().trial.TrialState
    busy = [t for t in study.get_trials(deepcopy=False)
            if t.state in (state.RUNNING, state.WAITING)]
    if busy:
        write_outputs(study, job.output, tested=None)
        print(f"[tune] {len(busy)} trials still run in other workers; the last worker to "
              "finish tests the best trial", flush=True)
        return None
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == state.COMPLETE]
    if not complete:
        raise ConfigError(f"{job.output}: no trial completed; nothing to test")
    with pid_lock(job.output / ".test.lock") as mine:
        if not mine:
            return None
        best = study.best_trial
        tested = test_run(job.output / best.user_attrs["run_dir"])
        return write_outputs(study, job.output, tested=tested)


def tune(job: TuneJob) -> dict[str, Any] | None:
    """Run a worker, then (the last worker) test the best trial: ``denoiserec tune``."""
    if world_size() > 1:  # a rank pruned alone would leave the others waiting on it
        raise ConfigError("denoiserec tune does not run under torchrun: start more workers "
                          "(--worker K) on one study instead")
    started = time.perf_counter()
    study = run_worker(job)
    result = finish(job, study)
    print(f"[tune] worker {job.worker} done after {time.perf_counter() - started:.0f} s",
          flush=True)
    return result
