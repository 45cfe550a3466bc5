"""Output seeds of LRP, CLRP1, CLRP2, SGLRP and the pairwise contrast.

Every seed is a pair of logit-shaped tensors ``(real, virtual)``: ``real`` seeds the model's output
neurons; ``virtual`` (shape ``(N,)`` or None) seeds CLRP2's extra output row ``-W_j`` of the logit
layer. With ``S = z_j`` the target logit:

- target: ``S`` at ``j``;
- CLRP1 dual: ``S / (C - 1)`` on every ``k != j`` (``dual_seed="uniform"``), or ``|z_k|`` on
  ``k != j`` (``dual_seed="logits"``, the authors' code; the maps are then sum-normalised);
- CLRP2 dual: ``S`` on the virtual row ``-W_j``;
- SGLRP: target ``y_j (1 - y_j)`` at ``j``, dual ``y_j y_k`` on ``k != j`` (target - dual is the
  gradient of the softmax output ``y_j``);
- pairwise ``B``: ``S`` at ``B``.

All rules are linear in the seed, so the contrast map is one backward pass of ``target - dual``.

One-logit (binary) models, ``logits`` of shape (N, 1): the logit ``z`` is the evidence for the
positive class against the negative one, and the negative class has no output of its own. LRP and
CLRP2 are defined (CLRP2's dual ``-W_j`` *is* the negative class: "positive rather than negative").
CLRP1 and SGLRP spread the dual over the *other* outputs, of which there are none (CLRP1 would
divide by ``C - 1 = 0``, SGLRP's softmax of one logit is constant), so they raise a
:class:`~clrp_widgets.engine.errors.ConfigError` rather than silently return a NaN or zero map;
we do not guess a two-class convention (``[-z, z]``, ``[0, z]``, sigmoid or softmax) for the user.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from clrp_widgets import methods

from .errors import ConfigError

CONTRASTS = methods.CONTRASTS
DUAL_SEEDS = ("uniform", "logits")


@dataclass
class Seed:
    """Seed of one kind: ``real`` (N, C) on the logits, ``virtual`` (N,) on CLRP2's ``-W_j`` row."""

    real: Tensor
    virtual: Tensor | None = None

    def __sub__(self, other: Seed) -> Seed:
        if self.virtual is None and other.virtual is None:
            virtual = None
        else:
            zero = torch.zeros_like(self.real[:, 0])
            own = self.virtual if self.virtual is not None else zero
            virtual = own - (other.virtual if other.virtual is not None else zero)
        return Seed(self.real - other.real, virtual)

    def scale(self) -> Tensor:
        """Absolute seed sum per sample, shape (N,): the size of what is explained."""
        total = self.real.abs().sum(dim=1)
        return total if self.virtual is None else total + self.virtual.abs()

    def total(self) -> Tensor:
        """Seed sum per sample, shape (N,)."""
        total = self.real.sum(dim=1)
        return total if self.virtual is None else total + self.virtual


def class_seeds(
    logits: Tensor, targets: Tensor, contrast: str | int, dual_seed: str
) -> tuple[Seed, Seed | None]:
    """Target and dual seeds (dual None for plain LRP). ``logits`` is detached, (N, C)."""
    n, c = logits.shape
    if c < 2 and contrast in ("clrp1", "sglrp"):
        raise ConfigError(
            f"the model has one logit (a binary classifier), so {contrast!r} has no other class "
            "to contrast with; use variant/contrast='clrp2' (dual: the negated logit, i.e. "
            "'positive rather than negative') or 'lrp', or wrap the model to return two logits, "
            "e.g. torch.cat([-z, z], dim=1)."
        )
    rows = torch.arange(n, device=logits.device)
    onehot = torch.zeros_like(logits)
    onehot[rows, targets] = 1.0
    s = logits[rows, targets]
    if contrast == "sglrp":
        y = torch.softmax(logits, dim=1)
        yt = y[rows, targets]
        target = Seed(onehot * (yt * (1 - yt))[:, None])
        return target, Seed(yt[:, None] * y * (1 - onehot))
    target = Seed(onehot * s[:, None])
    if contrast == "lrp":
        return target, None
    if contrast == "clrp1":
        if dual_seed == "logits":
            return target, Seed(logits.abs() * (1 - onehot))
        return target, Seed((1 - onehot) * (s / (c - 1))[:, None])
    if contrast == "clrp2":
        return target, Seed(torch.zeros_like(logits), s.clone())
    assert isinstance(contrast, int)
    dual = torch.zeros_like(logits)
    dual[:, contrast] = s
    return target, Seed(dual)
