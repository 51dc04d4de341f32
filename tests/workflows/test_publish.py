"""`fume publish` round trip: safetensors weights equal the checkpoint's, the card parses with
huggingface_hub.ModelCard (offline) and its model-index holds the test metrics, load_pretrained and
`fume predict --model` give the checkpoint's outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import balanced_accuracy_score
from typer.testing import CliRunner

from fume.cli import app
from fume.errors import FumeError
from fume.models import load_pretrained
from fume.models.checkpoint import load_model_from_checkpoint, read_checkpoint
from fume.workflows.publish import publish_run


@pytest.fixture(scope="module")
def published(trained_run: Path, tmp_path_factory: pytest.TempPathFactory):
    run = tmp_path_factory.mktemp("publish") / "run"
    shutil.copytree(trained_run, run)  # publish evaluates into RUN_DIR/test; keep the shared run as it was
    return publish_run(run, run.parent / "model", data_kind="synthetic"), run


def test_weights_equal_the_checkpoints(published) -> None:
    result, run = published
    state = read_checkpoint(result.checkpoint)["state_dict"]
    weights = load_file(str(result.out / "model.safetensors"))
    expected = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    assert set(weights) == set(expected)
    for key, value in expected.items():
        assert torch.equal(weights[key], value), key
    assert result.checkpoint == run / "checkpoints" / "best.ckpt"
    assert {p.name for p in result.files} == {"model.safetensors", "config.yaml", "model.onnx", "model.json", "README.md"}


def test_card_parses_offline_and_holds_the_test_metrics(published) -> None:
    from huggingface_hub import ModelCard

    result, run = published
    card = ModelCard.load(result.out / "README.md")
    metrics = json.loads((run / "test" / "metrics.json").read_text())
    found = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert found["mIoU"] == pytest.approx(metrics["miou"], abs=1e-4)
    assert found["Balanced accuracy"] == pytest.approx(metrics["balanced_accuracy"], abs=1e-4)
    assert all(r.dataset_split == "test" for r in card.data.eval_results)
    assert card.data.license == "mit" and "synthetic-data" in card.data.tags
    assert card.data.parameters == sum(p.numel() for p in load_pretrained(result.out)[0].parameters())
    assert "The training, validation and test data are synthetic" in card.text
    for section in ("## Intended use", "## Training data", "## Evaluation", "## Limitations"):
        assert section in card.text
    # The balanced accuracy the card states is sklearn's on the test predictions, inside its interval.
    predictions = pd.read_csv(run / "test" / "predictions.csv")
    reference = balanced_accuracy_score(predictions["class_id"], predictions["pred_class_id"])
    low, high = result.intervals["balanced_accuracy"]
    assert metrics["balanced_accuracy"] == pytest.approx(reference)
    assert low <= reference <= high and low < high


def test_load_pretrained_gives_the_checkpoints_outputs(published) -> None:
    result, _ = published
    reference, config = load_model_from_checkpoint(result.checkpoint)
    model, loaded = load_pretrained(result.out)
    assert loaded.model == config.model and loaded.data.image_size == config.data.image_size
    w, h = config.data.image_size
    generator = torch.Generator().manual_seed(0)
    co2, ch4 = torch.rand(2, 1, h, w, generator=generator), torch.rand(2, 1, h, w, generator=generator)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    with torch.no_grad():
        a, b = reference(co2, ch4, mask), model(co2, ch4, mask)
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_predict_with_model_folder_matches_the_checkpoint(published, tiny_data: Path, tmp_path: Path) -> None:
    result, _ = published
    table = tiny_data / "paired_test_annotations.csv"
    outputs = {}
    for option, source in (("--model", result.out), ("--checkpoint", result.checkpoint)):
        out = tmp_path / option.strip("-")
        done = CliRunner().invoke(app, ["predict", option, str(source), "--input", str(table), "--out", str(out), "--no-overlays"])
        assert done.exit_code == 0, done.output
        outputs[option] = pd.read_csv(out / "predictions.csv")
    probs = [c for c in outputs["--model"] if c.startswith("prob_")]
    assert probs
    np.testing.assert_array_equal(outputs["--model"][probs].to_numpy(), outputs["--checkpoint"][probs].to_numpy())


def test_broken_folder_is_one_error_naming_the_file(published, tmp_path: Path) -> None:
    result, _ = published
    with pytest.raises(FumeError, match="model.safetensors not found"):
        load_pretrained(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(result.out, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(FumeError, match=r"cannot read .*model.safetensors"):
        load_pretrained(broken)


def test_publish_command_states_recorded_data_and_the_license(published, tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    _, run = published
    done = CliRunner().invoke(app, ["publish", str(run), "--out", str(tmp_path / "model"), "--data", "recorded", "--license", "apache-2.0",
                                    "--name", "fume-test"])
    assert done.exit_code == 0, done.output
    card = ModelCard.load(tmp_path / "model" / "README.md")
    assert card.data.license == "apache-2.0" and card.data.model_name == "fume-test" and "synthetic-data" not in card.data.tags
    assert "are synthetic" not in card.text and "Recorded dual-gas OGI frames" in card.text
    bad = CliRunner().invoke(app, ["publish", str(run), "--out", str(tmp_path / "other"), "--data", "real"])
    assert bad.exit_code != 0 and "--data 'real': choose synthetic or recorded" in str(bad.exception)
