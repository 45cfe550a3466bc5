"""Names the Explorer shows: contrasts, layers with their type, and units (channel, unit, class)."""

from __future__ import annotations

from collections.abc import Sequence

from clrp_widgets import methods

CONTRASTS = [(m.label, m.name) for m in methods.REGISTRY]  # the picker's (label, value) pairs
CONTRAST_NAMES = {m.name: m.label for m in methods.REGISTRY}
CONTRAST_TIPS = {m.name: m.tip for m in methods.REGISTRY if m.tip}


class UnitNames:
    """How one layer's units are called: ``c<i>`` channels, ``u<i>`` dense units, classes, or
    ``head <i>`` / ``unit <i>`` for the attention heads and hidden units of transformer layers.

    The output layer (the last layer, one unit per class) names its units by class.
    """

    def __init__(self, kind: str, class_names: Sequence[str] = ()) -> None:
        self.kind = kind  # "channel" | "unit" | "class"
        self.class_names = list(class_names)

    @classmethod
    def of(
        cls, layer_type: str, is_last: bool, n_units: int | None, class_names: Sequence[str]
    ) -> UnitNames:
        """Units of a layer of type ``layer_type`` (e.g. "Linear"); ``n_units`` when known."""
        if is_last and (n_units is None or n_units == len(class_names)) and class_names:
            return cls("class", class_names)
        return cls("unit" if layer_type == "Linear" else "channel")

    @classmethod
    def of_tree(cls, unit_kind: str | None, has_positions: bool) -> UnitNames | None:
        """Names from a result-tree layer's ``unit_kind``: heads, or the hidden units of a
        token / channels-last layer (``has_positions``); None for the CNN names above."""
        if unit_kind == "head":
            return cls("head")
        if unit_kind == "unit" and has_positions:
            return cls("hidden")
        return None

    def label(self, unit: int) -> str:
        """The short label of unit ``unit``."""
        if self.kind == "class" and 0 <= unit < len(self.class_names):
            return self.class_names[unit]
        if self.kind in ("head", "hidden"):
            return f"{'head' if self.kind == 'head' else 'unit'} {unit}"
        return f"{'u' if self.kind == 'unit' else 'c'}{unit}"

    def singular(self) -> str:
        """ "channel", "unit", "class", "head" or "hidden unit"."""
        return "hidden unit" if self.kind == "hidden" else self.kind

    def plural(self) -> str:
        """ "channels", "units", "classes", "heads" or "hidden units"."""
        names = {"class": "classes", "unit": "units", "head": "heads", "hidden": "hidden units"}
        return names.get(self.kind, "channels")
