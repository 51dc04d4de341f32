"""One registry of every model: create_model(name, **kwargs) and list_models()."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn

from fume.errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    builder: Callable[..., nn.Module]
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, description: str) -> Callable:
    """Class or function decorator adding a model builder under `name`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelEntry(builder, description)
        return builder

    return decorate


def _ensure_registered() -> None:
    # Importing the modules registers their models.
    from fume.models import baselines, fastscnn, fume  # noqa: F401


def list_models() -> dict[str, str]:
    """Every model name with a one-line description, the default model ("fume") first."""
    _ensure_registered()
    names = sorted(_REGISTRY, key=lambda name: name != "fume")  # stable: the rest keep their order
    return {name: _REGISTRY[name].description for name in names}


def model_options(name: str) -> dict[str, object]:
    """The keyword options of a model with their defaults."""
    _ensure_registered()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available models: {', '.join(list_models())}")
    params = inspect.signature(_REGISTRY[name].builder).parameters
    return {key: p.default for key, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY or p.default is not p.empty}


def create_model(name: str = "fume", **kwargs: object) -> nn.Module:
    """Build a registered model; unknown names or options raise ConfigError naming the allowed ones."""
    options = model_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}; allowed: {', '.join(options)}"
        )
    return _REGISTRY[name].builder(**kwargs)
