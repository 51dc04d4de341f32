from __future__ import annotations

import pytest

from fume.config import FumeConfig, apply_overrides, load_config, save_config, shipped_configs
from fume.errors import ConfigError

CONFIGS = shipped_configs()["fume_fastscnn"].parent


def test_fume_fastscnn_config_carries_the_seed_recipe():
    cfg = load_config(CONFIGS / "fume_fastscnn.yaml")
    t = cfg.training
    assert cfg.model.name == "fume" and cfg.model.encoder == "shared"
    assert tuple(cfg.data.image_size) == (640, 480)
    assert (t.optimizer.name, t.optimizer.lr, t.optimizer.weight_decay, tuple(t.optimizer.betas)) == ("adamw", 1e-3, 1e-4, (0.9, 0.999))
    assert (t.scheduler.name, t.scheduler.eta_min) == ("cosine", 1e-5)
    assert (t.batch_size, t.grad_clip, t.use_amp) == (8, 1.0, True)
    assert (t.loss.seg_loss, t.loss.cls_loss, t.loss.gamma, t.loss.cls_alpha) == ("focal_dice", "focal", 2.0, [1.0, 8.0, 1.2])
    assert (t.loss.lambda_seg, t.loss.lambda_cls) == (1.0, 1.0)
    assert (t.early_stopping.enabled, t.early_stopping.patience, t.early_stopping.monitor) == (True, 15, "balanced_accuracy")
    assert (t.checkpoint.every_n_epochs, t.checkpoint.save_last) == (5, True)
    assert cfg.data.modality_dropout == 0.2 and cfg.weighted_sampling is True
    assert cfg.data.augmentation.horizontal_flip_p == 0.5 and cfg.data.augmentation.rotate_limit == 15


def test_quickstart_config_is_valid_and_small():
    cfg = load_config(CONFIGS / "quickstart.yaml")
    assert cfg.model.name == "fume"
    w, h = cfg.data.image_size
    assert w * h <= 320 * 256
    assert cfg.data.synthetic is not None


def test_dotted_overrides_are_parsed_as_yaml():
    cfg = load_config(CONFIGS / "quickstart.yaml", ["training.batch_size=4", "data.image_size=[320,256]",
                                                   "training.grad_clip=null", "trainer.devices=2", "model.fusion=concat"])
    assert cfg.training.batch_size == 4
    assert tuple(cfg.data.image_size) == (320, 256)
    assert cfg.training.grad_clip is None
    assert cfg.trainer.devices == 2
    assert cfg.model.fusion == "concat"


def test_override_creates_a_section_missing_from_the_file():
    raw = apply_overrides({"training": {"batch_size": 8}}, ["resume.enabled=true", "training.optimizer.lr=0.01"])
    assert raw == {"training": {"batch_size": 8, "optimizer": {"lr": 0.01}}, "resume": {"enabled": True}}


def test_unknown_key_names_the_key_and_the_allowed_ones():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["training.batchsize=4"])
    assert "training.batchsize: unknown key; allowed keys here: num_epochs, batch_size, optimizer," in str(err.value)


def test_unknown_top_level_section():
    with pytest.raises(ConfigError, match=r"wandb: unknown key; allowed keys here: experiment, model, data, training"):
        load_config(None, ["wandb.enabled=true"])


def test_wrong_type_names_the_key_and_the_value():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["training.batch_size=eight"])
    assert "training.batch_size: Input should be a valid integer" in str(err.value)
    assert "'eight'" in str(err.value)


def test_choice_lists_the_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.fusion=attention"])
    assert "model.fusion: Input should be 'concat', 'add', 'self_attention', 'cross_attention', 'self_channel' or 'full_cross'" in str(err.value)


def test_image_size_must_be_multiple_of_32():
    expected = r"data.image_size: must be \[W, H\]; got \[330, 250\]: width and height must be positive multiples of 32 .*nearest valid sizes \(WxH\): 320x224, 352x224, 320x256, 352x256"
    with pytest.raises(ConfigError, match=expected):
        load_config(None, ["data.image_size=[330,250]"])


def test_class_weights_must_match_class_count():
    with pytest.raises(ConfigError, match="training.loss.cls_alpha has 2 values but data.labels.class_names has 3 classes"):
        load_config(None, ["training.loss.cls_alpha=[1,8]"])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match=r"override 'training.batch_size' must look like section.key=value"):
        load_config(None, ["training.batch_size"])
    with pytest.raises(ConfigError, match=r"training.batch_size is a value \(8\), not a section"):
        load_config(CONFIGS / "fume_fastscnn.yaml", ["training.batch_size.x=1"])


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [1, 2\n")
    with pytest.raises(ConfigError, match=f"config file {bad} is not valid YAML"):
        load_config(bad)
    (tmp_path / "typo.yaml").write_text("training:\n  num_epoch: 3\n")
    with pytest.raises(ConfigError, match=r"invalid configuration \(.*typo.yaml\):\n  training.num_epoch: unknown key"):
        load_config(tmp_path / "typo.yaml")


def test_saved_config_loads_back_identical(tmp_path):
    cfg = load_config(CONFIGS / "fume_fastscnn.yaml", ["data.image_size=[320,256]", "model.fusion=full_cross"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(path) == cfg
    assert FumeConfig.model_validate(cfg.to_dict()) == cfg


def test_model_switch_a_model_does_not_take_is_an_error():
    from fume.models.checkpoint import build_model

    with pytest.raises(ConfigError, match=r"model section of the config: unknown option\(s\) 'fusion' for model 'segmentation_only'"):
        build_model(load_config(None, ["model.name=segmentation_only", "model.fusion=concat"]).model)
    with pytest.raises(ConfigError, match=r"unknown model 'nope'; available models: fume,"):
        build_model(load_config(None, ["model.name=nope"]).model)
