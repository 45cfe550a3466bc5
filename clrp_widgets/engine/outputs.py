"""The class scores in what a model returns: a tensor, a Hugging Face ``ModelOutput``, a dict or a
tuple.

With ``output=None`` (the default) the scores are found as users expect:

- a tensor is the scores;
- an object with a tensor attribute ``logits`` gives it (Hugging Face ``ModelOutput``,
  torchvision's ``InceptionOutputs``);
- a mapping gives its ``"logits"`` entry, or its only tensor;
- a tuple or list gives its only ``(N, classes)`` tensor (Hugging Face's ``return_dict=False``
  gives the logits and, if asked, hidden states of other shapes).

Anything else, or two candidates, is ambiguous and raises a :class:`~.errors.ConfigError` that
lists what the model returned and how to choose with ``output=``: a key or attribute name
(``"scores"``), an index (``0``) or a callable (``lambda out: out.scores``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from .errors import ConfigError

OutputSelector = str | int | Callable[[Any], Any] | None


def select_logits(output: Any, selector: OutputSelector, n: int) -> Tensor:
    """The ``(N, classes)`` class scores in ``output`` (see the module docstring)."""
    if selector is None:
        value = _found(output, n)
    else:
        value = _selected(output, selector)
    if not isinstance(value, Tensor) or value.ndim != 2 or value.shape[0] != n:
        raise ConfigError(
            f"the model's output{'' if selector is None else f' selected by output={selector!r}'}"
            f" is {describe(value)}; the engine needs class scores of shape (N, classes) with "
            f"N = {n}. Pick them with output= (a key, attribute, index or callable), or wrap "
            "the model so that it returns the class scores."
        )
    return value


def describe(value: Any) -> str:
    """A short description of a model output, for messages."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, Mapping) or hasattr(value, "keys"):
        try:
            parts = [f"{k!r}: {_short(value[k])}" for k in value.keys()]
        except (TypeError, KeyError):
            parts = []
        return f"{type(value).__name__} {{{', '.join(parts)}}}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} ({', '.join(_short(v) for v in value)})"
    return type(value).__name__


def _short(value: Any) -> str:
    return f"tensor {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__


def _found(output: Any, n: int) -> Any:
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, Mapping):
        if isinstance(output.get("logits"), Tensor):
            return output["logits"]
        tensors = [v for v in output.values() if isinstance(v, Tensor)]
        if len(tensors) == 1:
            return tensors[0]
        raise _ambiguous(output, '"logits"', "a key")
    if isinstance(output, (tuple, list)):
        scores = [
            i for i, v in enumerate(output) if isinstance(v, Tensor) and v.ndim == 2 and len(v) == n
        ]
        if len(scores) == 1:
            return output[scores[0]]
        raise _ambiguous(output, "0", "an index")
    return output


def _ambiguous(output: Any, example: str, kind: str) -> ConfigError:
    return ConfigError(
        f"the model returned {describe(output)}, and which of it holds the class scores is "
        f"ambiguous; choose with output= ({kind}, e.g. output={example}, or a callable such as "
        "output=lambda out: out[0])."
    )


def _selected(output: Any, selector: OutputSelector) -> Any:
    try:
        if callable(selector):
            return selector(output)
        if isinstance(selector, str):
            if isinstance(output, Mapping) or (
                hasattr(output, "keys") and selector in output.keys()
            ):
                return output[selector]
            return getattr(output, selector)
        if isinstance(selector, int) and not isinstance(selector, bool):
            return output[selector]
    except (AttributeError, KeyError, IndexError, TypeError) as err:
        raise ConfigError(
            f"output={selector!r} does not select anything in {describe(output)} ({err}); pass "
            "a key, attribute name or index that exists, or a callable."
        ) from None
    raise ConfigError(
        f"output must be None, a key or attribute name, an index or a callable, got {selector!r}."
    )
