"""The Explorer's state machine: what a user's request does to the view, with every reset rule.

Pure: no widgets, no engine. :func:`next_view` takes the state shown now, the changes a user
(or a picker, a click, Python code) asks for and what is known about the choices, validates the
request and returns the changes to apply with a note for the user. The Explorer applies them
and computes; only its ``publish`` step writes the synced widget state.

Rules
-----
- ``contrast``, ``rules`` and ``layer`` must be among the choices (layers once known).
- A new ``layer`` clears the selected channels (they were another layer's).
- A new ``image`` clears the pixel and the channels, and asks for that image's most probable
  class as target and class B (``-1``).
- ``channels`` must exist in the layer (when its size is known).
- Class B never equals the target: a B picked equal to the target is refused with a note (the
  rest of the request still applies); a target moved onto B moves B to the most probable other
  class, with a note.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clrp_widgets.engine.errors import ConfigError

#: the traits that make up a view
VIEW_KEYS = (
    "target",
    "contrast",
    "class_b",
    "rules",
    "layer",
    "channels",
    "pixel",
    "neuron_mode",
    "image",
)


@dataclass(frozen=True)
class Choices:
    """What a request is checked against.

    Attributes
    ----------
    contrasts, rules, layers : sequence of str
        The valid values (``layers`` empty while the model's layers are not known yet).
    n_images : int
        Images in the set.
    class_names : sequence of str
        One per class.
    n_units : callable
        ``n_units(layer)``: the layer's channels or units, None when not known yet.
    probs : numpy.ndarray, optional
        The shown image's class probabilities (ranks the classes for a new class B).
    """

    contrasts: Sequence[str]
    rules: Sequence[str]
    layers: Sequence[str]
    n_images: int
    class_names: Sequence[str]
    n_units: Callable[[str], int | None] = field(default=lambda _: None)
    probs: np.ndarray | None = None


@dataclass(frozen=True)
class Step:
    """The outcome of a request: ``changes`` to apply (empty: nothing to do) and a ``note``
    for the user (empty: none). ``refused_b`` says a class B equal to the target was dropped
    (the pickers must show the old B again)."""

    changes: dict[str, Any]
    note: str = ""
    refused_b: bool = False


def next_view(current: Mapping[str, Any], request: Mapping[str, Any], choices: Choices) -> Step:
    """The changes that ``request`` makes to the ``current`` view (see the module docstring).

    Raises
    ------
    ConfigError
        A value that is not among the choices, naming the valid ones.
    """
    unknown = set(request) - set(VIEW_KEYS)
    if unknown:
        raise ConfigError(f"unknown view setting(s) {sorted(unknown)}; use {list(VIEW_KEYS)}")
    state = dict(request)
    if "contrast" in state:
        check_choice(state["contrast"], choices.contrasts, "contrast")
    if "rules" in state:
        check_choice(state["rules"], choices.rules, "rules")
    if "layer" in state and choices.layers:
        check_choice(state["layer"], choices.layers, "layer")
    if "layer" in state and state["layer"] != current["layer"]:
        state.setdefault("channels", [])
    if "image" in state:
        _check_image(state["image"], choices.n_images)
        if state["image"] != current["image"]:
            state.setdefault("pixel", [])
            state.setdefault("channels", [])
            state.setdefault("target", -1)  # the new image's most probable class
            state.setdefault("class_b", -1)
    if "channels" in state:
        _check_channels(state["channels"], state.get("layer", current["layer"]), choices)
    return _keep_b_apart(current, state, choices)


def toggled(channels: Sequence[int], channel: int) -> list[int]:
    """The selection after a click on ``channel``: a selected one is deselected, else it is
    added, keeping the last two."""
    kept = [c for c in channels if c != channel]
    if len(kept) == len(channels):
        kept = [*kept, int(channel)][-2:]
    return kept


def other_class(target: int, choices: Choices) -> int:
    """The most probable class other than ``target`` (in index order before probabilities)."""
    probs = choices.probs
    ranked = np.argsort(-probs) if probs is not None else range(len(choices.class_names))
    return next(int(c) for c in ranked if c != target)


def _keep_b_apart(current: Mapping[str, Any], state: dict[str, Any], choices: Choices) -> Step:
    target = state.get("target", current["target"])
    if target < 0 or state.get("class_b", current["class_b"]) != target:
        return Step(state)
    name = choices.class_names[target]
    if "class_b" in state and "target" not in state:
        del state["class_b"]
        note = f"class B must differ from the target ({name}); pick another class"
        return Step(state, note, refused_b=True)
    state["class_b"] = other_class(target, choices)
    note = f"class B is now {choices.class_names[state['class_b']]}: it must differ from the target"
    return Step(state, note)


def check_choice(value: Any, valid: Sequence[str], what: str) -> None:
    """Raise a ConfigError naming the valid values unless ``value`` is one of them."""
    if value not in valid:
        raise ConfigError(f"unknown {what} {value!r}; choose from {list(valid)}")


def _check_image(index: Any, n: int) -> None:
    if _int(index) is None or not 0 <= index < n:
        raise ConfigError(f"image {index!r} is out of range; use 0..{n - 1}")


def _check_channels(channels: Sequence[Any], layer: str, choices: Choices) -> None:
    n = choices.n_units(layer)
    for c in channels:
        if _int(c) is None or c < 0 or (n is not None and c >= n):
            span = f"0..{n - 1}" if n is not None else "non-negative integers"
            raise ConfigError(
                f"channel {c!r} is out of range for layer {layer}; use {span} "
                f"(or change the layer first)"
            )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
