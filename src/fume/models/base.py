"""The contract every FUME model keeps: forward(co2, ch4, modality_mask) -> dict of logits.

A model class derives from DualGasModel and writes only its layers (__init__) and its
computation (compute). The base class checks the inputs, initialises the weights once the
subclass's __init__ has run, records the options the model was built with (model.options, with
defaults) and declares the outputs from those options (model.output_names) without running it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from fume.models import blocks
from fume.models.inputs import check_pair


class DualGasModel(nn.Module):
    """Base of every registered model.

    Subclasses implement compute(co2, ch4, modality_mask) and either set OUTPUTS (outputs that do
    not depend on the options) or override declare_outputs(options).
    """

    # Output names (fume.contract.OUTPUT_NAMES) in the order forward returns them.
    OUTPUTS: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self._options: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _finish_construction(cls.__dict__["__init__"])  # type: ignore[method-assign]

    # -- options ---------------------------------------------------------------------------

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        """The keyword options of the class with their defaults, in signature order."""
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
        return {p.name: p.default for p in params if p.default is not p.empty}

    @property
    def options(self) -> dict[str, Any]:
        """The options this model was built with, defaults included: create_model(name, **options)
        builds the same architecture. A copy, so changing it cannot desynchronise the model."""
        return dict(self._options)

    # -- outputs ---------------------------------------------------------------------------

    @classmethod
    def declare_outputs(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The output names for a complete set of options; override when they depend on them."""
        return cls.OUTPUTS

    @classmethod
    def output_names_for(cls, **options: Any) -> tuple[str, ...]:
        """The output names a model built with `options` returns, without building it."""
        return cls.declare_outputs({**cls.default_options(), **options})

    @property
    def output_names(self) -> tuple[str, ...]:
        """The keys forward returns, in order, known without running the network."""
        return type(self).declare_outputs(self._options)

    # -- construction and forward ----------------------------------------------------------

    def init_weights(self) -> None:
        """Called once after the subclass's __init__; the Fast-SCNN initialisation by default."""
        blocks.init_weights(self)

    def forward(self, co2: torch.Tensor, ch4: torch.Tensor, modality_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """co2, ch4 (B, 1, H, W) with H and W multiples of 32, modality_mask (B, 2) = [co2 present,
        ch4 present] -> the logits named by output_names."""
        check_pair(co2, ch4, modality_mask)
        return self.compute(co2, ch4, modality_mask)

    def compute(self, co2: torch.Tensor, ch4: torch.Tensor, modality_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement compute(co2, ch4, modality_mask)")


def _finish_construction(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a subclass's __init__: after it, record the bound options and initialise the weights.

    Only the outermost __init__ (the class actually built) does this, so a subclass of a model
    initialises its weights once (the random stream, hence the initial weights, stays the same).
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def init_then_finish(self: DualGasModel, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self).__init__ is not init_then_finish:
            return
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        self._options = dict(list(bound.arguments.items())[1:])  # without self
        self.init_weights()

    return init_then_finish
