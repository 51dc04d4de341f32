"""`fume tune`: hyperparameter search with Optuna (TPE sampler, median pruning) over dotted config
keys, scored on the validation split of a split grouped by recording (never the test split).

A search space file (an example ships as fume/configs/tune/fume.yaml):

    params:                                    # dotted config keys
      training.optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # float range
      training.batch_size: {choices: [4, 8, 16]}                       # categorical
      training.loss.gamma: {low: 1, high: 3, type: float}              # ints are int ranges unless type: float
    pruner: {startup_trials: 5, warmup_epochs: 2}                      # MedianPruner settings (optional)

Each trial trains one run into OUT/trials/trial-NNNN (fume train with the trial's values); Optuna's
Lightning callback reports the config's monitored validation score (training.checkpoint.monitor,
val_<name>) after each validation and stops a trial whose score falls below the median of the
earlier trials at the same epoch. The trial's value is its best validation score.

Written after every call: OUT/best.yaml (the base config with the best trial's values, a full config
for `fume train -c`), OUT/trials.csv (one row per trial of the study: number, state, value, params,
run folder), OUT/history.png (Optuna's optimisation history) and OUT/study.json (direction, monitored
score, best trial; `fume report --tune OUT` reads it).

Resumable: with --storage (any SQLAlchemy URL, e.g. sqlite:///tune.db or a PostgreSQL server shared by
several machines) the study is loaded by name and each call adds --trials trials; a trial killed with
its process is marked failed after a missed heartbeat and retried once (optuna's RetryHeartbeatStaleTrialCallback).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fume.config import FumeConfig, config_file, override_config, read_yaml, resolve_paths, save_config, shipped_configs
from fume.errors import ConfigError, DataError, FumeError
from fume.io import write_csv, write_json, write_with
from fume.logs import get_logger

log = get_logger(__name__)

SPACES_FOLDER = "tune"
TRIALS_DIR = "trials"
BEST_FILE = "best.yaml"
TRIALS_FILE = "trials.csv"
HISTORY_FILE = "history.png"
STUDY_FILE = "study.json"
DEFAULT_STUDY = "fume"
HEARTBEAT_S = 60  # RDB storage: a running trial's heartbeat; one missed for GRACE_S marks it failed
GRACE_S = 180


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Param(_Strict):
    """A float or int range (low, high, optional log / step) or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    type: Literal["float", "int"] | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> Param:
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError("give either choices (a non-empty list) or low and high, not both")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError("give low < high (a range) or choices (a list)")
        elif self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    @property
    def kind(self) -> str:
        if self.choices is not None:
            return "categorical"
        if self.type is not None:
            return self.type
        return "int" if float(self.low).is_integer() and float(self.high).is_integer() and self.step in (None, 1) and not self.log else "float"

    def suggest(self, trial: Any, name: str) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def examples(self) -> list[Any]:
        """Values that must all make a valid config (checked before the first trial)."""
        if self.kind == "categorical":
            return list(self.choices)
        cast = int if self.kind == "int" else float
        return [cast(self.low), cast(self.high)]


class PrunerSettings(_Strict):
    startup_trials: int = Field(default=5, ge=0)  # trials that are never pruned (the median needs some)
    warmup_epochs: int = Field(default=1, ge=0)  # epochs of each trial before it may be pruned


class SearchSpace(_Strict):
    params: dict[str, Param] = Field(min_length=1)
    pruner: PrunerSettings = Field(default_factory=PrunerSettings)
    source: Path | None = None


def shipped_spaces() -> dict[str, Path]:
    return shipped_configs(SPACES_FOLDER)


def load_space(name_or_path: str | Path) -> SearchSpace:
    path = config_file(name_or_path, shipped_spaces(), "search space")
    raw = read_yaml(path, "search space")
    try:
        return SearchSpace(**raw, source=path)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]) or "(top level)"
            lines.append(f"  {key}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg'].removeprefix('Value error, ')}")
        raise ConfigError(f"search space {path}:\n" + "\n".join(lines)) from None


def trial_overrides(values: dict[str, Any]) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def check_space(base: FumeConfig, space: SearchSpace) -> None:
    """Every key and every bound or choice makes a valid config: a typo fails before any training."""
    for key, param in space.params.items():
        for value in param.examples():
            try:
                override_config(base, trial_overrides({key: value}), f"search space {space.source}")
            except ConfigError as err:
                raise ConfigError(f"search space {space.source}, {key}={value!r}: {err}") from None


def check_grouped_split(config: FumeConfig) -> None:
    """The search scores on the validation split: it must share no recording with the training
    split (a row-level split would reward memorising recordings)."""
    import pandas as pd

    tables = {s: config.data.paired_table(s) for s in ("train", "val")}
    for split, path in tables.items():
        if not path.is_file():
            raise DataError(f"paired {split} table not found: {path}; split by recording and pair the dataset first (fume split, fume pair)")
    recordings = {}
    for split, path in tables.items():
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        if not {"co2_recording", "ch4_recording"} <= set(table.columns):
            raise DataError(f"{path} has no co2_recording / ch4_recording columns; pair the dataset again with this FUME (fume pair)")
        recordings[split] = (set(table["co2_recording"]) | set(table["ch4_recording"])) - {""}
    shared = recordings["train"] & recordings["val"]
    if shared:
        raise DataError(
            f"{len(shared)} recording(s) are in both {tables['train'].name} and {tables['val'].name} (e.g. {sorted(shared)[0]!r}); "
            "fume tune scores on a validation split grouped by recording: split with `fume split` (grouped) and pair again"
        )


@dataclass
class TuneResult:
    out: Path
    study_name: str
    storage: str | None
    trials_run: int
    trials_total: int
    best_value: float | None
    best_params: dict[str, Any]
    best_yaml: Path | None
    trials_csv: Path
    history_png: Path | None


def _storage(url: str | None) -> Any:
    """None (in memory) or an RDB storage with heartbeats, so a killed trial is retried once."""
    if url is None:
        return None
    import warnings

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: "experimental" since optuna 2.8
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    except Exception as err:  # a bad URL, a missing driver, an unreachable server
        raise ConfigError(f"--storage {url}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None


def monitor_of(config: FumeConfig) -> str:
    from fume.training.trainer import effective_monitor, model_outputs

    return effective_monitor(config.training.checkpoint.monitor, model_outputs(config))


def tune(
    config: FumeConfig,
    space: SearchSpace,
    trials: int,
    out: str | Path,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
) -> TuneResult:
    """Run `trials` more trials of the study (created, or loaded from `storage`), then write
    best.yaml, trials.csv and history.png into OUT."""
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

    from fume.workflows.train import train

    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    out = Path(out).resolve()
    config = resolve_paths(config)
    check_space(config, space)
    if config.data.synthetic is not None:
        from fume.workflows.quickstart import prepare_synthetic_dataset

        prepare_synthetic_dataset(config)  # generated, split by recording and paired where absent
    check_grouped_split(config)
    monitor = monitor_of(config)
    direction = "minimize" if monitor == "loss" else "maximize"
    name = study_name or DEFAULT_STUDY
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our logger says what matters
    pruner = optuna.pruners.MedianPruner(n_startup_trials=space.pruner.startup_trials, n_warmup_steps=space.pruner.warmup_epochs)
    study = optuna.create_study(storage=_storage(storage), study_name=name, direction=direction, pruner=pruner, load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study {name!r} in {storage} was created to {study.direction.name.lower()}, but val_{monitor} is to be {direction}d")
    # A seed per call: a resumed search does not repeat the first call's random start-up points.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    before = len(study.trials)

    def objective(trial: Any) -> float:
        values = {key: param.suggest(trial, key) for key, param in space.params.items()}
        run_dir = out / TRIALS_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}-trial-{trial.number:04d}"  # a folder name, whatever the study's
        trial.set_user_attr("run_dir", str(run_dir))
        cfg = override_config(config, [*trial_overrides(values), f"experiment.name={name}-trial-{trial.number:04d}"], f"trial {trial.number}")
        log.info(f"trial {trial.number}: {', '.join(f'{k}={v}' for k, v in values.items())}")
        result = train(cfg, run_dir=run_dir, callbacks=[PyTorchLightningPruningCallback(trial, monitor=f"val_{monitor}")])
        if result.best_score is None or not math.isfinite(result.best_score):
            raise FumeError(f"trial {trial.number}: no finite val_{monitor} (run {run_dir})")
        log.info(f"trial {trial.number}: val_{monitor} = {result.best_score:.4f}")
        return result.best_score

    study.optimize(objective, n_trials=trials, catch=(FumeError,))
    return write_outputs(study, config, f"val_{monitor}", out, storage, len(study.trials) - before)


def write_outputs(study: Any, config: FumeConfig, monitor: str, out: Path, storage: str | None, trials_run: int) -> TuneResult:
    import optuna

    out.mkdir(parents=True, exist_ok=True)
    table = study.trials_dataframe(attrs=("number", "state", "value", "datetime_start", "datetime_complete", "duration", "params", "user_attrs"))
    trials_csv = out / TRIALS_FILE
    write_csv(trials_csv, table)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best_yaml = history = None
    best_value, best_params = None, {}
    if complete:
        best = study.best_trial
        best_value, best_params = best.value, dict(best.params)
        best_config = override_config(config, [*trial_overrides(best_params), f"experiment.name={study.study_name}-best"], "best trial")
        best_yaml = save_config(best_config, out / BEST_FILE)
        history = plot_history(study, out / HISTORY_FILE)
        # What `fume report --tune OUT` reads besides trials.csv (no storage URL: it may hold a password).
        write_json(out / STUDY_FILE, {"study": study.study_name, "direction": study.direction.name.lower(), "monitor": monitor,
                                      "trials": len(study.trials), "best_trial": best.number, "best_value": best_value,
                                      "best_params": best_params})
    else:
        log.warning(f"no trial of study {study.study_name!r} has completed yet; {BEST_FILE} not written")
    return TuneResult(out, study.study_name, storage, trials_run, len(study.trials), best_value, best_params, best_yaml, trials_csv, history)


def plot_history(study: Any, path: Path) -> Path:
    """Optuna's optimisation history (value per trial, best so far) as a PNG."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        ax = plot_optimization_history(study)
    figure = ax.figure
    figure.set_size_inches(7, 4)
    figure.tight_layout()
    write_with(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
    return path
