"""`fume evaluate` and `fume predict` run the same inference path: for one checkpoint and one
paired table they give identical probabilities and identical masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from inference_helpers import make_checkpoint
from typer.testing import CliRunner

from fume.cli import app
from fume.data.frames import load_mask

runner = CliRunner()


def invoke(*args: object) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def test_evaluate_and_predict_give_identical_probabilities_and_masks(dataset: Path, tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt", dataset)  # BN measured: masks vary
    table = dataset / "paired_val_annotations.csv"
    invoke("evaluate", "--checkpoint", checkpoint, "--split", "val", "--save-masks", "--out", tmp_path / "eval")
    invoke("predict", "--checkpoint", checkpoint, "--input", table, "--save-masks", "--no-overlays", "--batch-size", 3, "--out", tmp_path / "pred")

    evaluated = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    predicted = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    assert len(evaluated) == len(predicted) == len(pd.read_csv(table)) > 0
    prob_columns = [c for c in evaluated.columns if c.startswith("prob_")]
    assert prob_columns == [c for c in predicted.columns if c.startswith("prob_")] and len(prob_columns) == 3
    np.testing.assert_array_equal(evaluated[prob_columns].to_numpy(), predicted[prob_columns].to_numpy())
    np.testing.assert_array_equal(evaluated["pred_class_id"].to_numpy(), predicted["pred_class_id"].to_numpy())

    compared = 0
    for (_, e), (_, p) in zip(evaluated.iterrows(), predicted.iterrows()):
        for gas in ("co2", "ch4"):
            if isinstance(e[f"{gas}_pred_mask"], str):
                a = load_mask(tmp_path / "eval" / e[f"{gas}_pred_mask"])
                b = load_mask(tmp_path / "pred" / p[f"{gas}_mask"])
                np.testing.assert_array_equal(a, b)
                compared += 1
            else:
                assert not isinstance(p.get(f"{gas}_mask"), str)
    assert compared >= len(evaluated)  # every pair has at least one gas
    masks = [load_mask(tmp_path / "eval" / m) for gas in ("co2", "ch4") for m in evaluated[f"{gas}_pred_mask"].dropna()]
    assert len({m.tobytes() for m in masks}) > 1, "the masks should differ between pairs for the comparison to mean something"
