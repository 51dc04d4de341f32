import json
import subprocess
import sys

import torch
from torch import nn
from typer.testing import CliRunner

from fume.cli import app
from fume.models import create_model
from fume.models.complexity import count_macs, count_parameters, measure_latency


class OneConvPerGas(nn.Module):
    """A model with a hand-countable cost: one 3x3 conv (1 -> 8 channels) applied to each gas."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)

    def forward(self, co2, ch4, modality_mask):
        return {"co2_seg_logits": self.conv(co2), "ch4_seg_logits": self.conv(ch4)}


def test_count_parameters_and_macs_match_hand_counts():
    model = OneConvPerGas()
    assert count_parameters(model) == 8 * 9 + 8
    # Per output pixel and channel: 9 MACs; two gases; the counter ignores the bias additions.
    assert count_macs(model, size=(64, 32)) == 2 * 64 * 32 * 8 * 9


def test_count_macs_restores_training_mode():
    model = OneConvPerGas().train()
    count_macs(model, size=(32, 32))
    assert model.training


def test_measure_latency_reports_percentiles_and_restores_threads():
    threads_before = torch.get_num_threads()
    result = measure_latency(OneConvPerGas(), size=(32, 32), runs=7, warmup=1, threads=1)
    assert set(result) == {"p50_ms", "p90_ms", "mean_ms", "runs", "threads"}
    assert result["runs"] == 7 and result["threads"] == 1
    assert 0 < result["p50_ms"] <= result["p90_ms"]
    assert torch.get_num_threads() == threads_before


def test_models_command_lists_every_model():
    result = CliRunner().invoke(app, ["models"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in ("fume", "fastscnn", "segmentation_only", "classification_only", "gas_aware_classifier",
                 "early_fusion", "multitask_single_stream"):
        assert name in result.output


def test_model_card_prints_and_writes_json(tmp_path):
    out = tmp_path / "cards" / "fume.json"
    result = CliRunner().invoke(
        app, ["model-card", "fume", "--size", "96x64", "--runs", "3", "--warmup", "1", "--json", str(out)],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    card = json.loads(out.read_text())
    assert card["model"] == "fume" and card["size"] == "96x64" and card["runs"] == 3
    model = create_model("fume")
    assert card["parameters"] == count_parameters(model)
    assert card["gmacs_per_pair"] * 1e9 == count_macs(model, (96, 64))
    assert card["latency_p50_ms"] > 0 and card["pairs_per_s"] > 0
    assert f"{card['parameters']:,}" in result.output


def test_model_card_accepts_ablation_options(tmp_path):
    out = tmp_path / "card.json"
    result = CliRunner().invoke(
        app, ["model-card", "fume", "--size", "64x64", "--runs", "1", "--warmup", "0",
              "-o", "fusion=concat", "-o", "tasks=cls", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    card = json.loads(out.read_text())
    assert card["options"] == {"fusion": "concat", "tasks": "cls"}
    assert card["outputs"] == ["cls_logits"]


def test_model_card_errors_are_clear_messages_without_traceback():
    completed = subprocess.run(
        [sys.executable, "-c", "from fume.cli import main; main()", "model-card", "fume", "--size", "100x96"],
        capture_output=True, text=True,
    )
    assert completed.returncode == 1
    output = " ".join((completed.stdout + completed.stderr).split())
    assert "size '100x96': width and height must be positive multiples of 32" in output
    assert "nearest valid sizes (WxH): 96x96, 128x96" in output
    assert "Traceback" not in output
