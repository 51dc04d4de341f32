"""Grid files, validation before training, and the runner's skip / rerun / dedup behaviour
(training replaced by a stand-in that writes what a finished run leaves)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from reporting_helpers import write_fake_run

import fume.workflows.experiments as runner
from fume.config import shipped_configs
from fume.errors import ConfigError
from fume.reporting.grid import Preset, load_grid
from fume.workflows.experiments import is_finished, plan, run_experiments

BASE = shipped_configs()["fume_fastscnn"]
SHIPPED = ["baselines", "ablations", "leakage"]  # shipped grids, by name


def write_grid(path: Path, variants: list[dict], name: str = "g", **extra) -> Path:
    path.write_text(yaml.safe_dump({"name": name, "kind": "ablation", "base": str(BASE), "reference": "fume", "variants": variants, **extra}))
    return path


class FakeTraining:
    """Stands in for train + evaluate: records the runs and fails the variants it is told to."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.calls: list[str] = []
        self.fail = set(fail)

    def __call__(self, spec, run_dir: Path) -> dict:
        self.calls.append(spec.title)
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        if spec.variant.name in self.fail:
            raise RuntimeError(f"training of {spec.variant.name} diverged")
        write_fake_run(run_dir, spec.config, seed=spec.seed)
        return {"train_seconds": 1.5, "epochs_run": 1, "best_epoch": 0}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTraining:
    training = FakeTraining()
    monkeypatch.setattr(runner, "train_and_evaluate", training)
    monkeypatch.setattr(runner, "measure_complexity", lambda config, settings: {"params": 10, "gmacs": 0.5, "latency_ms": 2.0, "fps": 500.0})
    return training


def tiny_preset(dataset: Path) -> Preset:
    return Preset(overrides=[f"data.dataset_root={dataset}", "data.image_size=[64,64]"], seeds=[0])


def test_shipped_grids_validate_with_both_presets(tmp_path: Path):
    for preset in ("quick", "full"):
        specs, chosen = plan(SHIPPED, tmp_path / preset, preset=preset)
        names = {(s.grid.name, s.variant.name) for s in specs}
        assert ("baselines", "early_fusion") in names and ("ablations", "transitional_weight_16") in names and ("leakage", "leaky") in names
        assert {s.config.training.num_epochs for s in specs} == {8 if preset == "quick" else 100}  # same budget for all
        assert len({s.config.data.dataset_root for s in specs}) == 1  # same data for all
    ablation_groups = {v.group for v in load_grid(SHIPPED[1]).variants}
    assert {"encoder", "fusion", "tasks", "modalities", "loss", "transitional_weight", "augmentation"} <= ablation_groups
    # No area-changing augmentation by default (the plume's area carries the label); the ablation turns it on.
    fume = next(s for s in specs if s.variant.name == "fume")
    assert fume.config.data.augmentation.scale_limit == 0.0
    assert next(s for s in specs if s.variant.name == "scale_augmentation").config.data.augmentation.scale_limit == 0.15


def test_grid_file_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"variants\.0\.overide: unknown key"):
        load_grid(write_grid(tmp_path / "a.yaml", [{"name": "fume", "overide": ["model.fusion=add"]}]))
    with pytest.raises(ConfigError, match=r"repeated: \['fume'\]"):
        load_grid(write_grid(tmp_path / "b.yaml", [{"name": "fume"}, {"name": "fume"}]))
    with pytest.raises(ConfigError, match="reference 'fume' is not a variant"):
        load_grid(write_grid(tmp_path / "c.yaml", [{"name": "other"}]))


def test_unknown_key_in_a_variant_fails_before_any_training(tmp_path: Path, fake: FakeTraining, tiny_dataset: Path):
    grid = write_grid(tmp_path / "g.yaml", [{"name": "fume"}, {"name": "typo", "overrides": {"training.optimizer.lrr": 0.1}}])
    with pytest.raises(ConfigError) as err:
        run_experiments([grid], tmp_path / "out", preset=tiny_preset(tiny_dataset))
    assert "variant 'typo'" in str(err.value) and "training.optimizer.lrr: unknown key" in str(err.value)
    assert fake.calls == [] and not (tmp_path / "out").exists()


def test_option_a_model_does_not_take_fails_before_any_training(tmp_path: Path, fake: FakeTraining, tiny_dataset: Path):
    grid = write_grid(tmp_path / "g.yaml", [{"name": "fume"}, {"name": "plain", "overrides": ["model.name=fastscnn"]}])
    with pytest.raises(ConfigError, match=r"variant 'plain'.*unknown option\(s\) 'encoder'"):
        run_experiments([grid], tmp_path / "out", preset=tiny_preset(tiny_dataset))
    assert fake.calls == []


def test_finished_runs_are_skipped_and_a_failed_run_is_rerun(tmp_path: Path, fake: FakeTraining, tiny_dataset: Path):
    grid = write_grid(tmp_path / "g.yaml", [{"name": "fume"}, {"name": "concat", "group": "fusion", "overrides": ["model.fusion=concat"]}])
    out = tmp_path / "out"
    fake.fail = {"concat"}
    first = run_experiments([grid], out, preset=tiny_preset(tiny_dataset))
    assert fake.calls == ["g/fume seed 0", "g/concat seed 0"]
    assert first.failed == ["g/concat seed 0"] and first.trained == 1
    results = pd.read_csv(out / "results.csv")
    assert results.set_index("variant")["status"].to_dict() == {"fume": "ok", "concat": "failed"}
    assert "diverged" in results.set_index("variant").at["concat", "error"]
    assert is_finished(out / "runs/g/fume/seed0") and not is_finished(out / "runs/g/concat/seed0")

    fake.fail, fake.calls = set(), []
    second = run_experiments([grid], out, preset=tiny_preset(tiny_dataset))
    assert fake.calls == ["g/concat seed 0"]  # fume skipped, the failed one run again
    assert (second.trained, second.skipped, second.failed) == (1, 1, [])
    assert [p.name for p in (out / "runs/g/concat").iterdir() if ".failed-" in p.name]  # the failed attempt kept aside
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 2 and set(results["status"]) == {"ok"}
    row = results.set_index("variant").loc["fume"]
    assert row["params"] == 10 and row["train_seconds"] == 1.5 and row["num_samples"] > 0
    assert row["co2_iou_gas"] == 0.5  # every key of the run's metrics.json, not only the common ones

    fake.calls = []
    run_experiments([grid], out, preset=tiny_preset(tiny_dataset))
    assert fake.calls == []
    info = json.loads((out / "environment.json").read_text())
    assert len(info["invocations"]) == 3 and info["cpu_count"] >= 1


def test_an_interrupted_run_is_moved_aside_and_rerun(tmp_path: Path, fake: FakeTraining, tiny_dataset: Path):
    grid = write_grid(tmp_path / "g.yaml", [{"name": "fume"}])
    out = tmp_path / "out"
    partial = out / "runs/g/fume/seed0"
    (partial / "checkpoints").mkdir(parents=True)
    (partial / "checkpoints" / "last.ckpt").write_bytes(b"half")
    run_experiments([grid], out, preset=tiny_preset(tiny_dataset))
    assert fake.calls == ["g/fume seed 0"] and is_finished(partial)
    kept = [p for p in partial.parent.iterdir() if ".failed-" in p.name]
    assert len(kept) == 1 and (kept[0] / "checkpoints" / "last.ckpt").read_bytes() == b"half"


def test_identical_configurations_train_once_across_grids(tmp_path: Path, fake: FakeTraining, tiny_dataset: Path):
    one = write_grid(tmp_path / "one.yaml", [{"name": "fume"}, {"name": "add", "overrides": ["model.fusion=add"]}], name="one")
    two = write_grid(tmp_path / "two.yaml", [{"name": "fume"}], name="two")
    result = run_experiments([one, two], tmp_path / "out", seeds=[3], preset=tiny_preset(tiny_dataset))
    assert fake.calls == ["one/fume seed 3", "one/add seed 3"]
    rows = result.results.set_index(["grid", "variant"])
    assert rows.at[("two", "fume"), "run_dir"] == "runs/one/fume/seed3" and rows.at[("two", "fume"), "status"] == "ok"
    assert list(result.results["seed"]) == [3, 3, 3]


def test_leakage_conditions_share_one_test_set_and_differ_only_by_the_copies(tmp_path: Path, fake: FakeTraining, tiny_dataset: Path):
    grid = write_grid(tmp_path / "g.yaml", [{"name": "grouped"}, {"name": "leaky", "split": "leaky"}], reference="grouped", kind="leakage")
    out = tmp_path / "out"
    result = run_experiments([grid], out, preset=tiny_preset(tiny_dataset))
    from fume.data.layout import read_annotations

    assert set(result.results["status"]) == {"ok"}
    split_dirs = sorted((out / "splits").glob("leakage-*/*"))
    assert [d.name for d in split_dirs] == ["grouped", "leaky"]
    grouped, leaky = split_dirs
    # One test set: the same paired test table in both conditions, a subset of the grouped split's test frames.
    assert (grouped / "paired_test_annotations.csv").read_text() == (leaky / "paired_test_annotations.csv").read_text()
    test = read_annotations(grouped, "test")
    assert set(test["frame_path"]) < set(read_annotations(tiny_dataset, "test")["frame_path"])
    # The leaky training set is the grouped one plus other copies of the test recordings, none of the test frames.
    g_train, l_train = read_annotations(grouped, "train"), read_annotations(leaky, "train")
    added = l_train[~l_train["frame_path"].isin(g_train["frame_path"])]
    assert set(g_train["frame_path"]) <= set(l_train["frame_path"]) and len(added) > 0
    assert set(added["original_sample_id"]) <= set(test["original_sample_id"])
    assert not set(added["frame_path"]) & set(test["frame_path"])
    assert not set(g_train["original_sample_id"]) & set(test["original_sample_id"])
    g_pairs = pd.read_csv(grouped / "paired_train_annotations.csv", dtype=str, keep_default_na=False)
    l_pairs = pd.read_csv(leaky / "paired_train_annotations.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(l_pairs.iloc[: len(g_pairs)].reset_index(drop=True), g_pairs)  # grouped pairs kept as they are


def test_folds_hold_out_each_recording_once_stratified_by_class(tmp_path: Path, fake: FakeTraining, tiny_dataset: Path):
    grid = write_grid(tmp_path / "g.yaml", [{"name": "fume"}])
    out = tmp_path / "out"
    result = run_experiments([grid], out, preset=tiny_preset(tiny_dataset), folds=3)
    assert fake.calls == ["g/fume seed 0 fold 0", "g/fume seed 0 fold 1", "g/fume seed 0 fold 2"]
    assert sorted(result.results["fold"]) == [0, 1, 2]
    assert all(is_finished(out / f"runs/g/fume/fold{k}/seed0") for k in range(3))
    from fume.data.layout import read_annotations

    everything = read_annotations(tiny_dataset)
    tests = [read_annotations(d, "test") for d in sorted((out / "splits").glob("folds3-*/fold*"))]
    held_out = [set(t["original_sample_id"]) for t in tests]
    assert sorted(r for h in held_out for r in h) == sorted(set(everything["original_sample_id"]))  # each recording once
    for k, t in enumerate(tests):
        d = sorted((out / "splits").glob("folds3-*/fold*"))[k]
        train_val = pd.concat([read_annotations(d, "train"), read_annotations(d, "val")])
        assert not set(train_val["original_sample_id"]) & held_out[k]
    # Class-stratified: each class's recordings are spread over the folds as evenly as possible.
    per_recording = everything.groupby("original_sample_id")["class_id"].first()
    for cls, recordings in per_recording.groupby(per_recording):
        counts = [len(held & set(recordings.index)) for held in held_out]
        assert max(counts) - min(counts) <= 1, (cls, counts)
