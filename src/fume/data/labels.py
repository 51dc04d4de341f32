"""Class names, the pH-to-class mapping and the mask values: configuration, not code."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fume.errors import DataError

# Mask pixel values (DESIGN.md section 1).
BACKGROUND, TUBE, GAS = 0, 1, 2
MASK_CLASS_NAMES: tuple[str, ...] = ("background", "tube", "gas")
MASK_VALUES = frozenset({BACKGROUND, TUBE, GAS})

GASES: tuple[str, ...] = ("co2", "ch4")


class LabelConfig(BaseModel):
    """Health classes and how a pH level maps to one (paper, Table 2, by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    class_names: list[str] = Field(default_factory=lambda: ["Healthy", "Transitional", "Acidotic"])
    ph_to_class: dict[float, int] = Field(
        default_factory=lambda: {6.5: 0, 6.2: 0, 5.9: 1, 5.6: 2, 5.3: 2, 5.0: 2}
    )
    gases: tuple[str, ...] = GASES

    @field_validator("class_names")
    @classmethod
    def _unique_names(cls, names: list[str]) -> list[str]:
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"class_names must hold at least two distinct names, got {names}")
        return names

    @model_validator(mode="after")
    def _classes_in_range(self) -> LabelConfig:
        bad = {ph: c for ph, c in self.ph_to_class.items() if not 0 <= c < len(self.class_names)}
        if bad:
            raise ValueError(f"ph_to_class maps to class ids outside 0..{len(self.class_names) - 1}: {bad}")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def ph_levels(self) -> list[float]:
        return sorted(self.ph_to_class, reverse=True)

    def class_of_ph(self, ph: float) -> int:
        """Class id of a pH level; pH values are compared to 0.01 so CSV round-off does not matter."""
        for level, class_id in self.ph_to_class.items():
            if math.isclose(float(ph), level, abs_tol=1e-2):
                return class_id
        raise DataError(f"pH {ph} is not one of the configured pH levels {self.ph_levels}")

    def class_id(self, name: str) -> int:
        try:
            return self.class_names.index(name)
        except ValueError:
            raise DataError(f"unknown class name {name!r}; expected one of {self.class_names}") from None

    def phs_of_class(self, class_id: int) -> list[float]:
        return [ph for ph in self.ph_levels if self.ph_to_class[ph] == class_id]
