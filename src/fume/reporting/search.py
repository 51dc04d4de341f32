"""The hyperparameter search's part of the report (`fume report EXP --tune TUNE_OUT`): the study's
optimisation history (TUNE_OUT/history.png, copied into the report's figures) and its best trials
(TUNE_OUT/trials.csv, TUNE_OUT/study.json, written by `fume tune`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from fume.errors import DataError
from fume.io import write_bytes

TOP_TRIALS = 5


def search_section(tune_dir: str | Path, report_dir: Path, figures_dir: Path) -> tuple[str, list[Path]]:
    """(Markdown section, figure files written)."""
    from fume.reporting.tables import to_markdown

    tune_dir = Path(tune_dir)
    paths = {name: tune_dir / name for name in ("trials.csv", "study.json", "history.png")}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise DataError(f"--tune {tune_dir}: {', '.join(missing)} not found; give the --out folder of a `fume tune` call with a completed trial")
    study = json.loads(paths["study.json"].read_text(encoding="utf-8"))
    trials = pd.read_csv(paths["trials.csv"])
    states = trials["state"].value_counts()
    complete = trials[trials["state"] == "COMPLETE"].sort_values("value", ascending=study["direction"] == "minimize")
    params = [c for c in trials.columns if c.startswith("params_")]
    top = complete.head(TOP_TRIALS)[["number", "value", *params]].rename(
        columns={"number": "Trial", "value": study["monitor"], **{c: c.removeprefix("params_") for c in params}})
    figure = write_bytes(figures_dir / "search_history.png", paths["history.png"].read_bytes())
    counts = ", ".join(f"{n} {s.lower()}" for s, n in states.items())
    text = (
        f"## Hyperparameter search\n\n"
        f"Optuna study `{study['study']}` ({len(trials)} trials: {counts}), TPE sampler with median pruning, scored by "
        f"{study['monitor']} on the validation split ({study['direction']}). Best: trial {study['best_trial']}, "
        f"{study['monitor']} = {study['best_value']:.4f}; its full config is `{tune_dir / 'best.yaml'}`.\n\n"
        f"**Best {len(top)} completed trials**\n\n{to_markdown(top.round(6))}\n\n"
        f"![Optimisation history]({os.path.relpath(figure, report_dir)})\n\n*Value of each trial and the best so far (Optuna)*\n\n"
    )
    return text, [figure]
