"""The model contract: every registered model is a DualGasModel that records its options,
declares its outputs without running, and checks its inputs the same way."""

import itertools
import typing

import pytest
import torch
from model_helpers import random_pair
from torch import nn

from fume.config import ModelConfig
from fume.contract import ENCODERS, FUSIONS, MODALITIES, OUTPUT_NAMES, TASKS
from fume.errors import ConfigError
from fume.models import DualGasModel, create_model, list_models, model_options, output_names
from fume.models.fume import FUME, FUSION_PARTS
from fume.models.registry import model_entry, register_model


def _valid_fume_options() -> list[dict[str, str]]:
    """Every combination of FUME's switches that builds (cross-modal attention needs both gases)."""
    combos = []
    for encoder, fusion, tasks, modalities in itertools.product(ENCODERS, FUSIONS, TASKS, MODALITIES):
        if FUSION_PARTS[fusion][1] and modalities != "dual":
            continue
        combos.append({"encoder": encoder, "fusion": fusion, "tasks": tasks, "modalities": modalities})
    return combos


FUME_OPTIONS = _valid_fume_options()
EVERY_BUILD = [(name, {}) for name in list_models()] + [("fume", options) for options in FUME_OPTIONS]


def _ids(value):
    return value if isinstance(value, str) else ",".join(f"{k}={v}" for k, v in value.items()) or "defaults"


@pytest.mark.parametrize("name", list(list_models()))
def test_every_registered_model_is_a_dual_gas_model(name):
    assert issubclass(model_entry(name).builder, DualGasModel)
    assert isinstance(create_model(name), DualGasModel)


def test_registry_refuses_a_class_outside_the_contract():
    with pytest.raises(TypeError, match=r"model 'plain': register a DualGasModel subclass"):
        register_model("plain", "not a dual-gas model")(nn.Conv2d)
    assert "plain" not in list_models()


@pytest.mark.parametrize(
    "name,options",
    [(name, {}) for name in list_models()]
    + [("fume", {"encoder": "separate", "fusion": "full_cross", "dropout": 0.2}), ("fume", {"modalities": "ch4", "tasks": "seg"}),
       ("early_fusion", {"num_classes": 4})],
    ids=_ids,
)
def test_options_record_defaults_and_rebuild_the_same_model(name, options):
    torch.manual_seed(0)
    model = create_model(name, **options)
    assert model.options == {**model_options(name), **options}
    torch.manual_seed(0)
    rebuilt = create_model(name, **model.options)
    assert rebuilt.options == model.options
    first, second = model.state_dict(), rebuilt.state_dict()
    assert list(first) == list(second)
    assert all(torch.equal(first[key], second[key]) for key in first)  # same seed, same initial weights


def test_options_are_a_copy():
    model = create_model("fume")
    model.options["tasks"] = "seg"
    assert model.options["tasks"] == "seg_cls"
    assert "cls_logits" in model.output_names


@pytest.mark.parametrize("name,options", EVERY_BUILD, ids=_ids)
def test_declared_outputs_are_what_forward_returns(name, options):
    model = create_model(name, **options).eval()
    co2, ch4 = random_pair(1, 64, 64)
    with torch.no_grad():
        returned = list(model(co2, ch4, torch.ones(1, 2)))
    assert list(model.output_names) == returned
    assert output_names(name, **options) == model.output_names
    assert set(returned) <= set(OUTPUT_NAMES)


def test_output_names_without_building_follow_the_options():
    assert output_names("fume") == ("cls_logits", "co2_seg_logits", "ch4_seg_logits")
    assert output_names("fume", tasks="seg", modalities="co2") == ("co2_seg_logits",)
    assert output_names("fume", tasks="cls") == ("cls_logits",)
    assert output_names("fastscnn") == ("co2_seg_logits", "ch4_seg_logits")
    assert output_names("classification_only") == ("cls_logits",)
    with pytest.raises(ConfigError, match=r"model option tasks='both' is not one of 'seg_cls', 'seg', 'cls'"):
        output_names("fume", tasks="both")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) 'task' for model 'fume'"):
        output_names("fume", task="seg")
    with pytest.raises(ConfigError, match=r"unknown model 'fume2'"):
        output_names("fume2")


def test_config_accepts_exactly_the_model_option_names():
    for key, names in (("encoder", ENCODERS), ("fusion", FUSIONS), ("tasks", TASKS), ("modalities", MODALITIES)):
        literal, none = typing.get_args(ModelConfig.model_fields[key].annotation)
        assert none is type(None)
        assert typing.get_args(literal) == names, key
        with pytest.raises(ValueError, match=key):
            ModelConfig(**{key: "unknown"})
        with pytest.raises(ConfigError, match=f"model option {key}='unknown' is not one of"):
            create_model("fume", **{key: "unknown"})
    assert tuple(FUSION_PARTS) == FUSIONS  # the model knows how to build every fusion the config allows
    defaults = model_options("fume")
    assert {defaults[key] for key in ("encoder", "fusion", "tasks", "modalities")} <= set(ENCODERS + FUSIONS + TASKS + MODALITIES)


@pytest.mark.parametrize("name", list(list_models()))
def test_every_model_rejects_wrong_inputs_with_the_same_messages(name):
    model = create_model(name).eval()
    co2, ch4 = random_pair(1, 64, 64)
    mask = torch.ones(1, 2)
    with pytest.raises(ValueError, match=r"ch4 must have shape \(B, 1, H, W\) \(one gray channel\), got \(1, 3, 64, 64\)"):
        model(co2, ch4.expand(1, 3, 64, 64), mask)
    with pytest.raises(ValueError, match=r"modality_mask must have shape \(B, 2\) = \(1, 2\) \[co2 present, ch4 present\], got \(1, 3\)"):
        model(co2, ch4, torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"input is 80x64 \(WxH\): width and height must be positive multiples of 32"):
        model(torch.rand(1, 1, 64, 80), torch.rand(1, 1, 64, 80), mask)


class _Doubler(DualGasModel):
    """A minimal model written against the contract (not registered)."""

    OUTPUTS = ("co2_seg_logits", "ch4_seg_logits")

    def __init__(self, channels: int = 3, scale: float = 2.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 1)
        self.scale = scale

    def compute(self, co2, ch4, modality_mask):
        return {"co2_seg_logits": self.conv(co2) * self.scale, "ch4_seg_logits": self.conv(ch4) * self.scale}


def test_a_new_model_gets_options_outputs_input_checks_and_initialisation():
    torch.manual_seed(0)
    model = _Doubler(channels=4)
    assert model.options == {"channels": 4, "scale": 2.0}
    assert model.output_names == ("co2_seg_logits", "ch4_seg_logits")
    assert model.conv.bias.abs().sum() == 0  # init_weights ran: conv biases start at zero
    co2, ch4 = random_pair(2, 32, 32)
    assert list(model(co2, ch4, torch.ones(2, 2))) == list(model.output_names)
    with pytest.raises(ValueError, match=r"co2 and ch4 must have the same shape"):
        model(co2, ch4[:, :, :, :16], torch.ones(2, 2))


def test_a_subclass_of_a_model_initialises_its_weights_once():
    class NarrowFUME(FUME):
        def __init__(self, dropout: float = 0.2) -> None:
            super().__init__(tasks="cls", dropout=dropout)

    torch.manual_seed(0)
    narrow = NarrowFUME()
    torch.manual_seed(0)
    plain = FUME(tasks="cls", dropout=0.2)
    assert narrow.options == {"dropout": 0.2}
    assert all(torch.equal(a, b) for a, b in zip(narrow.state_dict().values(), plain.state_dict().values()))


def test_registry_carries_the_published_figures():
    assert model_entry("fume").reference.parameters == 1.28e6
    assert model_entry("fume").reference.source == "FUME paper"
    assert "1.97 GMACs" in model_entry("fume").note
    assert "2.6 M" in model_entry("early_fusion").note
    assert all(model_entry(name).reference is not None for name in list_models())


def test_training_reads_the_declared_outputs_without_building_a_model(monkeypatch):
    from fume.config import load_config
    from fume.models import registry
    from fume.training.trainer import model_outputs

    def refuse(*args, **kwargs):
        raise AssertionError("model_outputs must not build a model")

    monkeypatch.setattr(registry, "create_model", refuse)
    config = load_config(None, ["model.name=fume", "model.tasks=seg", "model.modalities=ch4"])
    assert model_outputs(config) == {"ch4_seg_logits"}
    with pytest.raises(ConfigError, match=r"model section of the config: unknown option\(s\) 'fusion' for model 'fastscnn'"):
        model_outputs(load_config(None, ["model.name=fastscnn", "model.fusion=add"]))
