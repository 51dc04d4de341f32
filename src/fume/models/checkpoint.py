"""Reading a checkpoint back into (model, FumeConfig), safely: a checkpoint is data, and
loading one never runs code from it.

A Lightning checkpoint of a FUME run keeps the resolved configuration under
hyper_parameters["config"] and the network's weights under state_dict["model.*"].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fume.config import FumeConfig, ModelConfig, validate_config
from fume.errors import ConfigError, FumeError
from fume.models.registry import create_model

MODEL_PREFIX = "model."


def safe_torch_load(path: str | Path, map_location: Any = "cpu") -> Any:
    """torch.load through torch's weights-only unpickler, whatever the environment says: a
    checkpoint is data, and loading one must not run code from it. (torch.load's weights_only=True
    alone is what TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns off in some torch versions; an explicit
    pickle_module is honoured by every version. Only TORCH_FORCE_WEIGHTS_ONLY_LOAD, which makes
    torch refuse any pickle_module, gets the plain weights_only=True, which it forces anyway.)"""
    import os

    import torch._weights_only_unpickler as weights_only_unpickler

    if os.getenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true"):
        return torch.load(path, map_location=map_location, weights_only=True)
    return torch.load(path, map_location=map_location, weights_only=False, pickle_module=weights_only_unpickler)


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint's dictionary, read safely (safe_torch_load); any failure is one FumeError
    line naming the file and the cause."""
    path = Path(path)
    if not path.is_file():
        raise FumeError(f"checkpoint not found: {path}")
    try:
        ckpt = safe_torch_load(path, map_location=map_location)
    except Exception as err:  # truncated, not a torch file, foreign pickles
        raise FumeError(f"cannot read checkpoint {path}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise FumeError(f"{path} is not a Lightning checkpoint (no state_dict)")
    return ckpt


def config_from_checkpoint(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> FumeConfig:
    raw = (ckpt.get("hyper_parameters") or {}).get("config")
    if raw is None:
        raise FumeError(f"{path} is not a FUME checkpoint: hyper_parameters['config'] is missing")
    return validate_config(raw, f"config stored in {path}")


def check_same_model(trained: ModelConfig, requested: ModelConfig, checkpoint: str | Path) -> None:
    """Evaluating a checkpoint with another model's config would silently load mismatched weights."""
    if trained != requested:
        a, b = trained.model_dump(exclude_none=True), requested.model_dump(exclude_none=True)
        diff = ", ".join(f"model.{k}: checkpoint {a.get(k)!r} vs config {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        raise ConfigError(f"checkpoint {checkpoint} was trained with another model than the config asks for ({diff}); use the run's own config or drop the model overrides")


def build_model(model_config: ModelConfig) -> torch.nn.Module:
    try:
        return create_model(model_config.name, **model_config.model_kwargs())
    except ConfigError as err:
        raise ConfigError(f"model section of the config: {err}") from None


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, name: str) -> None:
    """Load `state` into `model`, every tensor by name and shape; a mismatch is one FumeError naming `source`."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # same names, other shapes
        detail = str(err).splitlines()
        raise FumeError(
            f"{source} does not match model {name!r} built from its config "
            f"({len(detail) - 1} tensors of another shape, e.g.{detail[1] if len(detail) > 1 else ''}); was it written by another FUME version?"
        ) from None
    if missing or unexpected:
        raise FumeError(
            f"{source} does not match model {name!r} built from its config: "
            f"{len(missing)} missing weights (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )


def load_model_from_checkpoint(path: str | Path, map_location: Any = "cpu") -> tuple[torch.nn.Module, FumeConfig]:
    """The trained network (eval mode) and the configuration it was trained with."""
    ckpt = read_checkpoint(path, map_location)
    config = config_from_checkpoint(ckpt, path)
    model = build_model(config.model)
    state = {k[len(MODEL_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    load_weights(model, state, f"checkpoint {path}", config.model.name)
    model.eval()
    return model, config
