"""`fume tune`: Optuna over dotted config keys, in memory and in SQLite, resumable; best.yaml is a
full config that trains; the pruning callback is fed the monitored validation score."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner
from workflow_helpers import BASE, overrides, tiny_config

from fume.cli import app
from fume.config import load_config
from fume.errors import ConfigError, DataError
from fume.reporting.search import search_section
from fume.workflows.train import train
from fume.workflows.tune import load_space, shipped_spaces, tune

SPACE = {
    "params": {"training.optimizer.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}, "training.batch_size": {"choices": [2, 4]},
               "training.loss.lambda_cls": {"low": 1, "high": 3}},
    "pruner": {"startup_trials": 1, "warmup_epochs": 0},
}


def write_space(path: Path, space: dict = SPACE) -> Path:
    path.write_text(yaml.safe_dump(space))
    return path


def test_shipped_space_validates_against_the_shipped_config(tiny_data: Path) -> None:
    from fume.workflows.tune import check_space

    space = load_space("fume")
    assert space.source == shipped_spaces()["fume"]
    check_space(tiny_config(tiny_data), space)
    assert space.params["training.batch_size"].kind == "categorical" and space.params["training.optimizer.lr"].kind == "float"


def test_space_errors_name_the_file_and_key(tmp_path: Path, tiny_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"params.training.optimizer.lr: give low < high"):
        load_space(write_space(tmp_path / "a.yaml", {"params": {"training.optimizer.lr": {"low": 1, "high": 0.1}}}))
    typo = load_space(write_space(tmp_path / "b.yaml", {"params": {"training.optimizer.lrr": {"low": 0.1, "high": 1.0}}}))
    with pytest.raises(ConfigError, match=r"b.yaml, training.optimizer.lrr=0.1"):
        tune(tiny_config(tiny_data), typo, 1, tmp_path / "out")
    bad_value = load_space(write_space(tmp_path / "c.yaml", {"params": {"training.batch_size": {"choices": [4, 0]}}}))
    with pytest.raises(ConfigError, match=r"training.batch_size=0"):
        tune(tiny_config(tiny_data), bad_value, 1, tmp_path / "out")


def test_a_row_level_split_is_refused(tmp_path: Path, tiny_data: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    train_table = pd.read_csv(root / "paired_train_annotations.csv", dtype=str, keep_default_na=False)
    val = pd.read_csv(root / "paired_val_annotations.csv", dtype=str, keep_default_na=False)
    pd.concat([val, train_table.head(1)]).to_csv(root / "paired_val_annotations.csv", index=False)
    with pytest.raises(DataError, match=r"1 recording\(s\) are in both paired_train_annotations.csv and paired_val_annotations.csv"):
        tune(tiny_config(root), load_space(write_space(tmp_path / "s.yaml")), 1, tmp_path / "out")


@pytest.mark.slow
def test_in_memory_search_writes_best_yaml_that_trains(tmp_path: Path, tiny_data: Path) -> None:
    config = tiny_config(tiny_data, "training.num_epochs=2")
    result = tune(config, load_space(write_space(tmp_path / "space.yaml")), 4, tmp_path / "out")
    assert result.trials_run == result.trials_total == 4
    table = pd.read_csv(result.trials_csv)
    assert list(table["number"]) == [0, 1, 2, 3]
    assert set(table["state"]) <= {"COMPLETE", "PRUNED"} and (table["state"] == "COMPLETE").any()
    complete = table[table["state"] == "COMPLETE"]
    best = complete.loc[complete["value"].idxmax()]
    assert result.best_value == pytest.approx(best["value"])
    assert (tmp_path / "out" / "history.png").stat().st_size > 0
    # best.yaml: the base config with the best trial's values, a config fume train accepts.
    best_config = load_config(result.best_yaml)
    assert best_config.training.optimizer.lr == pytest.approx(best["params_training.optimizer.lr"])
    assert best_config.training.batch_size == best["params_training.batch_size"]
    assert best_config.training.loss.lambda_cls == best["params_training.loss.lambda_cls"]
    assert best_config.model == config.model and best_config.data.image_size == config.data.image_size
    trained = train(best_config, run_dir=tmp_path / "best-run")
    assert trained.best_checkpoint is not None and trained.best_checkpoint.is_file()
    # Each completed trial's value is the best validation score its run wrote (metrics.json).
    for row in complete.itertuples():
        summary = json.loads((Path(row.user_attrs_run_dir) / "metrics.json").read_text())
        assert row.value == pytest.approx(summary["best_score"])
    # The report's section on the search (fume report --tune OUT): best trials first, the history plot copied.
    text, figures = search_section(tmp_path / "out", tmp_path / "report", tmp_path / "report" / "figures")
    assert figures[0].read_bytes() == (tmp_path / "out" / "history.png").read_bytes()
    first_row = text.split("**Best ")[1].splitlines()[4]
    assert first_row.startswith(f"| {int(best['number'])} | {round(best['value'], 6)} |")
    assert "](figures/search_history.png)" in text and "val_joint_score" in text


@pytest.mark.slow
def test_sqlite_study_resumes_and_the_pruner_sees_every_epoch(tmp_path: Path, tiny_data: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    space = write_space(tmp_path / "space.yaml")
    done = CliRunner().invoke(app, ["tune", "-c", str(BASE), "--space", str(space), "--trials", "2", "--storage", url, "--study", "s",
                                    "--out", str(tmp_path / "out"), *overrides(tiny_data, "training.num_epochs=2")])
    assert done.exit_code == 0, done.output
    assert "2 trials run now, 2 in all" in done.output
    again = CliRunner().invoke(app, ["tune", "-c", str(BASE), "--space", str(space), "--trials", "1", "--storage", url, "--study", "s",
                                     "--out", str(tmp_path / "out"), *overrides(tiny_data, "training.num_epochs=2")])
    assert again.exit_code == 0, again.output
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert len(pd.read_csv(tmp_path / "out" / "trials.csv")) == 3
    for trial in study.trials:
        run = Path(trial.user_attrs["run_dir"])
        logged = pd.read_csv(run / "csv" / "metrics.csv").dropna(subset=["val_joint_score"])
        reported = trial.intermediate_values
        assert sorted(reported) == sorted(logged["epoch"].astype(int))[: len(reported)] and reported
        for epoch, value in reported.items():
            assert value == pytest.approx(logged.loc[logged["epoch"] == epoch, "val_joint_score"].iloc[0], rel=1e-6)
    assert load_config(tmp_path / "out" / "best.yaml").experiment.name == "s-best"
