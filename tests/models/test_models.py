import pytest
import torch
import torch.nn.functional as F
from model_helpers import make_nontrivial, random_pair

from fume.contract import FUSIONS
from fume.errors import ConfigError
from fume.models import create_model, list_models
from fume.models.complexity import count_macs, count_parameters
from fume.models.fastscnn import FastSCNNEncoder
from fume.models.inputs import mask_frames

MODEL_NAMES = [
    "fume",
    "fastscnn",
    "segmentation_only",
    "classification_only",
    "gas_aware_classifier",
    "early_fusion",
    "multitask_single_stream",
]
EXPECTED_KEYS = {
    "fume": {"cls_logits", "co2_seg_logits", "ch4_seg_logits"},
    "fastscnn": {"co2_seg_logits", "ch4_seg_logits"},
    "segmentation_only": {"co2_seg_logits", "ch4_seg_logits"},
    "classification_only": {"cls_logits"},
    "gas_aware_classifier": {"cls_logits"},
    "early_fusion": {"cls_logits", "co2_seg_logits", "ch4_seg_logits"},
    "multitask_single_stream": {"cls_logits", "co2_seg_logits", "ch4_seg_logits"},
}
# Each switch away from the default, and the combinations that change the structure most.
ABLATIONS = (
    [{"encoder": "separate"}, {"tasks": "seg"}, {"tasks": "cls"}, {"modalities": "co2"}, {"modalities": "ch4"}]
    + [{"fusion": fusion} for fusion in FUSIONS]
    + [{"encoder": "separate", "fusion": "full_cross"}, {"modalities": "co2", "fusion": "self_attention", "tasks": "seg"}]
)
SIZES = [(64, 64), (96, 128)]
MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])


def expected_fume_keys(options: dict) -> set[str]:
    gases = {"dual": ["co2", "ch4"], "co2": ["co2"], "ch4": ["ch4"]}[options.get("modalities", "dual")]
    tasks = options.get("tasks", "seg_cls")
    keys = {"cls_logits"} if tasks in ("seg_cls", "cls") else set()
    if tasks in ("seg_cls", "seg"):
        keys |= {f"{gas}_seg_logits" for gas in gases}
    return keys


def check_outputs(outputs: dict, keys: set[str], batch: int, height: int, width: int) -> None:
    assert set(outputs) == keys
    for key, value in outputs.items():
        expected = (batch, 3) if key == "cls_logits" else (batch, 3, height, width)
        assert value.shape == expected, key
        assert torch.isfinite(value).all(), key


def test_registry_lists_every_model_with_a_description():
    models = list_models()
    assert list(models) == MODEL_NAMES
    assert all(isinstance(text, str) and text for text in models.values())


@pytest.mark.parametrize("height,width", SIZES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_outputs_keys_and_shapes(name, height, width):
    model = create_model(name).eval()
    co2, ch4 = random_pair(3, height, width)
    with torch.no_grad():
        check_outputs(model(co2, ch4, MASK), EXPECTED_KEYS[name], 3, height, width)


@pytest.mark.parametrize("height,width", SIZES)
@pytest.mark.parametrize("options", ABLATIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_ablation_outputs_keys_and_shapes(options, height, width):
    model = create_model("fume", **options).eval()
    co2, ch4 = random_pair(3, height, width)
    with torch.no_grad():
        check_outputs(model(co2, ch4, MASK), expected_fume_keys(options), 3, height, width)


def test_default_model_is_within_the_published_budget():
    model = create_model("fume")
    assert count_parameters(model) <= 1_300_000
    assert count_macs(model, (640, 480)) <= 2_000_000_000


@pytest.mark.parametrize(
    "name,reference", [("segmentation_only", 1.3e6), ("classification_only", 1.2e6), ("gas_aware_classifier", 1.25e6),
                       ("multitask_single_stream", 1.4e6), ("fastscnn", 1.11e6)]
)
def test_baseline_sizes_are_within_25_percent_of_the_seed(name, reference):
    assert abs(count_parameters(create_model(name)) - reference) / reference <= 0.25


def test_separate_encoders_add_exactly_one_encoder():
    shared = count_parameters(create_model("fume"))
    separate = count_parameters(create_model("fume", encoder="separate"))
    assert separate - shared == count_parameters(FastSCNNEncoder(1, se=True))


def test_shared_encoder_runs_once_on_both_gases_in_training_and_per_gas_at_inference():
    model = make_nontrivial(create_model("fume"))
    calls = []
    model.encoder.register_forward_hook(lambda module, args, output: calls.append(tuple(args[0].shape)))
    co2, ch4 = random_pair(2, 64, 64)
    model.train()(co2, ch4, torch.ones(2, 2))
    assert calls == [(4, 1, 64, 64)]  # one batch: the batch statistics span both gases
    calls.clear()
    with torch.no_grad():
        model.eval()(co2, ch4, torch.ones(2, 2))
        assert calls == [(2, 1, 64, 64), (2, 1, 64, 64)]  # one pass per gas (no slicing in the graph)
        # With running statistics the per-gas passes equal one pass over the stacked gases.
        stacked = mask_frames(torch.cat([co2, ch4]), torch.ones(4))
        low, high = model.encoder(stacked)
        lows, highs = model.encode([co2, ch4], [torch.ones(2), torch.ones(2)])
    torch.testing.assert_close(torch.cat(lows), low, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(highs), high, rtol=1e-5, atol=1e-5)


TWO_GAS_CLASSIFIERS = (
    [("fume", {"fusion": fusion}) for fusion in FUSIONS]
    + [("fume", {"encoder": "separate", "fusion": "full_cross"}), ("fume", {"tasks": "cls"})]
    + [(name, {}) for name in ("classification_only", "gas_aware_classifier", "early_fusion", "multitask_single_stream")]
)


@pytest.mark.parametrize("name,options", TWO_GAS_CLASSIFIERS, ids=lambda v: v if isinstance(v, str) else str(v))
def test_absent_gas_content_does_not_change_any_output(name, options):
    model = make_nontrivial(create_model(name, **options)).eval()
    co2, ch4 = random_pair(3, 64, 96)
    other_co2, other_ch4 = random_pair(3, 64, 96, seed=1)
    with torch.no_grad():
        base = model(co2, ch4, MASK)
        # Sample 1 lacks CH4, sample 2 lacks CO2: change exactly those frames.
        changed_ch4, changed_co2 = ch4.clone(), co2.clone()
        changed_ch4[1] = other_ch4[1] * 50
        changed_co2[2] = float("nan")
        perturbed = model(changed_co2, changed_ch4, MASK)
        # The same change on a present gas must matter (the check can fail).
        present_changed = model(co2, other_ch4, MASK)
    for key in base:
        assert torch.equal(base[key], perturbed[key]), key
    assert not torch.equal(base["cls_logits"][0], present_changed["cls_logits"][0])


@pytest.mark.parametrize("name", ["fume", "early_fusion", "multitask_single_stream", "fastscnn"])
def test_samples_do_not_influence_each_other_in_eval_mode(name):
    model = make_nontrivial(create_model(name)).eval()
    co2, ch4 = random_pair(3, 64, 64)
    with torch.no_grad():
        together = model(co2, ch4, MASK)
        alone = model(co2[1:2], ch4[1:2], MASK[1:2])
    for key in together:
        torch.testing.assert_close(together[key][1:2], alone[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mask", [[[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])
@pytest.mark.parametrize("fusion", ["self_channel", "full_cross", "add"])
def test_batches_with_absent_gases_give_finite_outputs(mask, fusion):
    model = make_nontrivial(create_model("fume", fusion=fusion)).eval()
    co2, ch4 = random_pair(2, 64, 64)
    with torch.no_grad():
        outputs = model(co2, ch4, torch.tensor(mask))
    assert all(torch.isfinite(v).all() for v in outputs.values())


def _task_loss(outputs: dict, labels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    loss = torch.zeros(())
    if "cls_logits" in outputs:
        loss = loss + F.cross_entropy(outputs["cls_logits"], labels)
    for key in ("co2_seg_logits", "ch4_seg_logits"):
        if key in outputs:
            loss = loss + F.cross_entropy(outputs[key], masks)
    return loss


@pytest.mark.parametrize(
    "name,options",
    [("fume", {}), ("fume", {"fusion": "full_cross", "encoder": "separate"}), ("fume", {"tasks": "cls"}),
     ("early_fusion", {}), ("multitask_single_stream", {}), ("gas_aware_classifier", {}), ("fastscnn", {})],
    ids=lambda v: v if isinstance(v, str) else str(v),
)
def test_training_step_reaches_every_parameter(name, options):
    torch.manual_seed(0)
    model = make_nontrivial(create_model(name, **options)).train()
    co2, ch4 = random_pair(2, 64, 64)
    labels = torch.tensor([0, 2])
    masks = torch.randint(0, 3, (2, 64, 64))
    loss = _task_loss(model(co2, ch4, torch.ones(2, 2)), labels, masks)
    assert torch.isfinite(loss)
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name


def test_eval_mode_is_deterministic():
    model = create_model("fume").eval()
    co2, ch4 = random_pair(2, 64, 64)
    with torch.no_grad():
        first, second = model(co2, ch4, MASK[:2]), model(co2, ch4, MASK[:2])
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_bad_inputs_raise_value_errors_naming_the_expected_shape():
    model = create_model("fume").eval()
    co2, ch4 = random_pair(1, 64, 64)
    mask = torch.ones(1, 2)
    with pytest.raises(ValueError, match=r"co2 must have shape \(B, 1, H, W\).*got \(1, 64, 64\)"):
        model(co2[0], ch4, mask)
    with pytest.raises(ValueError, match=r"ch4 must have shape \(B, 1, H, W\).*got \(1, 3, 64, 64\)"):
        model(co2, ch4.expand(1, 3, 64, 64), mask)
    with pytest.raises(ValueError, match=r"modality_mask must have shape \(B, 2\) = \(1, 2\).*got \(2,\)"):
        model(co2, ch4, torch.ones(2))
    with pytest.raises(ValueError, match=r"same shape"):
        model(co2, torch.rand(1, 1, 64, 96), mask)
    expected = (r"input is 150x100 \(WxH\): width and height must be positive multiples of 32 .*"
                r"nearest valid sizes \(WxH\): 128x96, 160x96, 128x128, 160x128")
    with pytest.raises(ValueError, match=expected):
        model(torch.rand(1, 1, 100, 150), torch.rand(1, 1, 100, 150), mask)


def test_create_model_rejects_unknown_names_options_and_values():
    with pytest.raises(ConfigError, match=r"unknown model 'fume2'; available models: fume, fastscnn"):
        create_model("fume2")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) 'fussion' for model 'fume'; allowed: encoder, fusion, tasks"):
        create_model("fume", fussion="add")
    with pytest.raises(ConfigError, match=r"fusion='cross' is not one of 'concat', 'add'"):
        create_model("fume", fusion="cross")
    with pytest.raises(ConfigError, match=r"fusion='full_cross' \(cross-modal attention\) needs both gases"):
        create_model("fume", fusion="full_cross", modalities="ch4")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) 'fusion' for model 'fastscnn'"):
        create_model("fastscnn", fusion="add")
