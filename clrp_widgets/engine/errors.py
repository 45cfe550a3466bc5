"""The project's exception family: every message names the problem and the fix."""

from __future__ import annotations

from typing import Any


class CLRPError(Exception):
    """Base class of every error raised on purpose by clrp_widgets."""


class InputError(CLRPError, ValueError):
    """The input tensor, target or a numeric argument is not usable (shape, dtype, NaN, range)."""


class ConfigError(CLRPError, ValueError):
    """An unknown preset, variant, contrast, rule mapping or an inconsistent setting."""


class UnsupportedLayerError(CLRPError, TypeError):
    """The model holds a layer type for which no relevance rule is known.

    ``fix`` is the advice as an ``overrides=`` mapping that runs on the model that raised it
    (None where no rule can be suggested).
    """

    def __init__(self, message: str, fix: dict[Any, Any] | None = None) -> None:
        super().__init__(message)
        self.fix = fix


class LayerNotFoundError(CLRPError, KeyError):
    """A layer name that the model does not have."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it readable
        return str(self.args[0]) if self.args else ""


class ModelNotAvailableError(CLRPError, FileNotFoundError):
    """Model weights are not on this machine (no download happens at run time)."""


class ResultFileError(CLRPError, ValueError):
    """A saved result tree (netCDF/zarr) that cannot be read back as one (corrupt or hostile)."""


class StoreInUseError(CLRPError, RuntimeError):
    """Another live run is writing the same data-set store."""


class ConservationWarning(UserWarning):
    """A conservative rule preset lost or gained relevance: the map may be wrong.

    Raised as a warning (``warnings.warn``), naming the layer or operation where the relevance
    entering it and the relevance it handed down differ by more than 1e-4 (``guard.TOLERANCE``)
    of the explained output, at any size of that output.
    """
