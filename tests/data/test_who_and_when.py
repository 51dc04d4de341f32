"""Who and when: the optional animal_id, session_id and timestamp columns survive split, pairing,
evaluation and prediction; `--group-by animal_id` keeps each animal in one split."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from data_helpers import make_real_layout
from typer.testing import CliRunner

from fume.cli import app
from fume.data.layout import read_csv
from fume.data.pairing import pair_dataset, pair_table
from fume.data.split import audit_leakage, split_dataset
from fume.errors import DataError

runner = CliRunner()
SPLITS = ("train", "val", "test")
PHS = (6.5, 5.9, 5.0)


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(*args: object) -> str:
    """The message of a command that fails: under CliRunner a DataError of one line, exit code 1."""
    result = run(*args)
    assert result.exit_code == 1 and isinstance(result.exception, DataError), result.output
    message = str(result.exception)
    assert "\n" not in message
    return message


def make_animals(root: Path, animals: int = 9, copies: int = 2) -> pd.DataFrame:
    """`animals` animals ('000', '001', ...: text ids with leading zeros), each filmed once with CO2
    and once with CH4 at its pH; one session per recording, a timestamp per frame."""
    recordings = [(f"a{k}_{gas}", gas, PHS[k % len(PHS)]) for k in range(animals) for gas in ("co2", "ch4")]
    table = make_real_layout(root, recordings, copies=copies)
    animal = table["original_sample_id"].str.extract(r"a(\d+)_")[0].astype(int)
    table["animal_id"] = animal.map(lambda k: f"{k:03d}")
    table["session_id"] = table["original_sample_id"].map(lambda s: f"s-{s}")
    table["timestamp"] = [f"2024-05-{1 + a:02d}T10:{i % 60:02d}:00" for i, a in enumerate(animal)]
    table.to_csv(root / "annotations.csv", index=False)
    return table


def animals_by_split(root: Path) -> dict[str, set[str]]:
    return {s: set(read_csv(root / f"{s}_annotations.csv")["animal_id"]) for s in SPLITS}


def test_group_by_animal_keeps_each_animal_in_one_split_and_columns_survive(tmp_path: Path) -> None:
    source = make_animals(tmp_path)
    parts = split_dataset(tmp_path, ratios=(0.5, 0.25, 0.25), seed=1, group_by="animal_id")
    seen = animals_by_split(tmp_path)
    assert all(seen[s] for s in SPLITS)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not seen[a] & seen[b]
    assert set().union(*seen.values()) == set(source["animal_id"])
    for split in SPLITS:
        written = read_csv(tmp_path / f"{split}_annotations.csv")
        assert {"animal_id", "session_id", "timestamp"} <= set(written.columns)
        assert len(written) == len(parts[split])
    merged = pd.concat([read_csv(tmp_path / f"{s}_annotations.csv") for s in SPLITS])
    expected = source.assign(frame_path=source["frame_path"]).set_index("frame_path")[["animal_id", "session_id", "timestamp"]]
    got = merged.set_index("frame_path")[["animal_id", "session_id", "timestamp"]]
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index())

    report = audit_leakage(tmp_path, group_by="animal_id")
    assert report.ok and sum(report.groups.values()) == 9
    assert "animal_id" in report.render()


def test_pairing_stays_within_an_animal_and_keeps_who_and_when(tmp_path: Path) -> None:
    make_animals(tmp_path)
    split_dataset(tmp_path, ratios=(0.5, 0.25, 0.25), seed=1, group_by="animal_id")
    result = pair_dataset(tmp_path)
    for split in SPLITS:
        paired = read_csv(tmp_path / f"paired_{split}_annotations.csv")
        assert len(paired) == len(result[split])
        for column in ("animal_id", "co2_session_id", "ch4_session_id", "co2_timestamp", "ch4_timestamp"):
            assert column in paired.columns
        assert paired["is_paired"].all()
        # both frames of a pair come from the animal the pair names
        for _, row in paired.iterrows():
            assert row["co2_frame"].split("/")[-1].startswith(f"a{int(row['animal_id'])}_co2")
            assert row["ch4_frame"].split("/")[-1].startswith(f"a{int(row['animal_id'])}_ch4")
            assert row["co2_session_id"] == f"s-a{int(row['animal_id'])}_co2"
            assert row["ch4_session_id"] == f"s-a{int(row['animal_id'])}_ch4"
        assert paired["animal_id"].str.len().eq(3).all()  # '007' stays '007'


def test_random_pairing_never_crosses_animals_at_the_same_ph(tmp_path: Path) -> None:
    table = make_animals(tmp_path, animals=6)  # animals k and k+3 share a pH
    from fume.data.layout import read_annotations

    paired = pair_table(read_annotations(tmp_path), seed=4)
    assert len(paired) == 6 * 2 and paired["is_paired"].all()
    animal_of = dict(zip(table["frame_path"].str.replace("\\", "/").str.removeprefix("mmseg_dataset/"), table["animal_id"]))
    assert (paired["co2_frame"].map(animal_of) == paired["animal_id"]).all()
    assert (paired["ch4_frame"].map(animal_of) == paired["animal_id"]).all()


def test_tables_without_the_columns_are_unchanged(real_layout: Path) -> None:
    split_dataset(real_layout, seed=0)
    result = pair_dataset(real_layout)
    from fume.data.layout import PAIRED_COLUMNS, PAIRED_RECORDING_COLUMNS

    for split in SPLITS:
        assert list(result[split].columns) == PAIRED_COLUMNS + PAIRED_RECORDING_COLUMNS
        assert "animal_id" not in read_csv(real_layout / f"{split}_annotations.csv").columns


def test_missing_animal_is_one_line_error_naming_csv_and_row(tmp_path: Path) -> None:
    table = make_animals(tmp_path)
    table.loc[5, "animal_id"] = ""
    table.to_csv(tmp_path / "annotations.csv", index=False)
    with pytest.raises(DataError, match=r"annotations.csv: row 6 \(line 7\) has no animal_id"):
        split_dataset(tmp_path, group_by="animal_id")
    message = one_line_error("split", tmp_path, "--group-by", "animal_id")
    assert str(tmp_path / "annotations.csv") in message and "row 6" in message
    assert not (tmp_path / "train_annotations.csv").exists()
    # the console script prints it as one line and exits 1
    fume = Path(sys.executable).with_name("fume")
    done = subprocess.run([str(fume), "split", str(tmp_path), "--group-by", "animal_id"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "400"})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "row 6" in lines[0], done.stderr


def test_recording_across_animals_is_an_error(tmp_path: Path) -> None:
    table = make_animals(tmp_path)
    first = table.index[table["original_sample_id"] == "a1_co2"][0]
    table.loc[first, "animal_id"] = "002"
    table.to_csv(tmp_path / "annotations.csv", index=False)
    message = one_line_error("split", tmp_path, "--group-by", "animal_id")
    assert "a1_co2" in message and "animal_id" in message and "'001', '002'" in message
    # the audit needs a value on every row too
    split_dataset(tmp_path, seed=0)
    table = read_csv(tmp_path / "val_annotations.csv")
    table.loc[0, "animal_id"] = " "
    table.to_csv(tmp_path / "val_annotations.csv", index=False)
    message = one_line_error("audit-leakage", tmp_path, "--group-by", "animal_id")
    assert "val_annotations.csv: row 1" in message


def test_cli_split_and_audit_count_shared_animals(tmp_path: Path) -> None:
    make_animals(tmp_path)
    result = run("split", tmp_path, "--group-by", "animal_id", "--ratios", "0.5", "0.25", "0.25")
    assert result.exit_code == 0, result.output
    assert "grouped by animal_id" in result.output
    result = run("audit-leakage", tmp_path, "--group-by", "animal_id")
    assert result.exit_code == 0 and "no leakage" in result.output, result.output
    # a recording-grouped split may put one animal's two recordings in different splits: the audit by animal sees it
    for seed in range(20):
        split_dataset(tmp_path, ratios=(0.5, 0.25, 0.25), seed=seed)
        report = audit_leakage(tmp_path, group_by="animal_id")
        if not report.ok:
            break
    assert not report.ok and sum(report.shared_groups.values()) > 0
    assert sum(v[0] for v in report.shared.values()) == 0  # no recording is shared, animals are
    result = run("audit-leakage", tmp_path, "--group-by", "animal_id")
    assert result.exit_code == 1 and "LEAKAGE" in result.output and "animal_id" in result.output
    assert run("audit-leakage", tmp_path).exit_code == 0  # by recording alone: no leakage


@pytest.mark.slow
def test_columns_reach_evaluation_records_and_predictions(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
    try:
        from inference_helpers import make_checkpoint
    finally:
        sys.path.pop(0)
    import torch

    from fume.data.dataset import read_paired_table
    from fume.evaluation.engine import evaluate_predictors
    from fume.inference import Predictor

    root = tmp_path / "d"
    root.mkdir()
    make_animals(root)
    split_dataset(root, ratios=(0.5, 0.25, 0.25), seed=1, group_by="animal_id")
    pair_dataset(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        checkpoint = make_checkpoint(tmp_path / "run" / "best.ckpt", root)
        table = read_paired_table(root / "paired_test_annotations.csv")
        records = evaluate_predictors({"m": Predictor.from_checkpoint(checkpoint)}, table, root)["m"].records
        expected = table.set_index("sample_id")
        for record in records:
            row = expected.loc[record["sample_id"]]
            for column in ("animal_id", "co2_session_id", "ch4_session_id", "co2_timestamp", "ch4_timestamp"):
                assert record[column] == row[column]
        result = run("predict", "-k", checkpoint, "--input", root / "paired_test_annotations.csv", "--out", tmp_path / "out")
        assert result.exit_code == 0, result.output
        result = run("evaluate", "-k", checkpoint, "--split", "test", "--out", tmp_path / "eval")
        assert result.exit_code == 0, result.output
    finally:
        torch.set_num_threads(threads)
    for written in (tmp_path / "out" / "predictions.csv", tmp_path / "eval" / "predictions.csv"):
        predictions = read_csv(written)
        assert len(predictions) == len(table)
        merged = predictions.merge(table, on="sample_id", suffixes=("", "_table"))
        for column in ("animal_id", "co2_session_id", "ch4_session_id", "co2_timestamp", "ch4_timestamp"):
            assert (merged[column] == merged[f"{column}_table"]).all(), (written, column)
