"""One registry of every model: its class, a one-line description and the figures published for it.

    create_model(name, **options)   the model (a DualGasModel)
    output_names(name, **options)   the keys its forward returns, without building it
    model_entry(name)               description, published parameter count, note
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fume.errors import ConfigError
from fume.models.base import DualGasModel


@dataclass(frozen=True)
class Reference:
    """A published parameter count and where it is published."""

    parameters: float
    source: str


@dataclass(frozen=True)
class ModelEntry:
    builder: type[DualGasModel]
    description: str
    reference: Reference | None = None
    # Where our figures differ from the reference, why (shown on the model card).
    note: str = ""


# Filled as the model modules are imported; fume.models (the package) imports them all, and it is
# always imported before this module, so the registry is complete whenever it is used.
_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, description: str, reference: Reference | None = None, note: str = ""
) -> Callable[[type[DualGasModel]], type[DualGasModel]]:
    """Class decorator adding a DualGasModel subclass under `name`."""

    def decorate(builder: type[DualGasModel]) -> type[DualGasModel]:
        if not (isinstance(builder, type) and issubclass(builder, DualGasModel)):
            raise TypeError(f"model {name!r}: register a DualGasModel subclass, got {builder!r}")
        _REGISTRY[name] = ModelEntry(builder, description, reference, note)
        return builder

    return decorate


def list_models() -> dict[str, str]:
    """Every model name with a one-line description, the default model ("fume") first."""
    names = sorted(_REGISTRY, key=lambda name: name != "fume")  # stable: the rest keep their order
    return {name: _REGISTRY[name].description for name in names}


def model_entry(name: str) -> ModelEntry:
    """The registry entry of `name`; ConfigError naming the available models otherwise."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available models: {', '.join(list_models())}")
    return _REGISTRY[name]


def model_options(name: str) -> dict[str, object]:
    """The keyword options of a model with their defaults."""
    return model_entry(name).builder.default_options()


def _checked_options(name: str, options: dict[str, Any]) -> None:
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}; allowed: {', '.join(allowed)}"
        )


def create_model(name: str = "fume", **options: Any) -> DualGasModel:
    """Build a registered model; unknown names or options raise ConfigError naming the allowed ones."""
    _checked_options(name, options)
    return model_entry(name).builder(**options)


def output_names(name: str = "fume", **options: Any) -> tuple[str, ...]:
    """The keys create_model(name, **options) returns from forward, in order, without building it.
    Unknown names or options raise ConfigError like create_model."""
    _checked_options(name, options)
    return model_entry(name).builder.output_names_for(**options)
