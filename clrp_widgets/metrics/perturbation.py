"""Perturbation metrics: patch ablation at the arg-max and MoRF/LeRF region perturbation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clrp_widgets.engine.errors import InputError
from clrp_widgets.metrics.base import Metric
from clrp_widgets.metrics.maps import as_maps, as_targets, peak_index


def as_images(images: Any) -> torch.Tensor:
    """Images as a float tensor (N, C, H, W) in model-input space (DataArray, numpy or torch)."""
    if hasattr(images, "dims") and hasattr(images, "values"):
        images = images.values
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or not x.is_floating_point():
        raise InputError(
            f"images must be a float (N, C, H, W) batch; got {tuple(x.shape)} {x.dtype}. "
            "Preprocess them as the model expects (e.g. ModelBundle.preprocess)."
        )
    return x.detach()


def channel_mean(images: torch.Tensor, mean: Any = None) -> torch.Tensor:
    """The per-channel replacement value, shaped (C, 1, 1): ``mean`` or the batch's own mean."""
    if mean is None:
        return images.mean(dim=(0, 2, 3)).view(-1, 1, 1)
    if isinstance(mean, torch.Tensor):
        mean = mean.detach().cpu()
    m = torch.as_tensor(np.asarray(mean, dtype=np.float32), dtype=images.dtype)
    m = m.to(images.device).reshape(-1, 1, 1)
    if m.shape[0] not in (1, images.shape[1]):
        raise InputError(f"mean has {m.shape[0]} channels, images have {images.shape[1]}.")
    return m.expand(images.shape[1], 1, 1)


@torch.no_grad()
def target_scores(
    model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """The logit of each row's target class, evaluated in batches; float64 (N,)."""
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(x), batch_size):
        logits = model(x[s : s + batch_size].to(device))
        out.append(logits.gather(1, targets[s : s + batch_size, None].to(device))[:, 0])
    return torch.cat(out).double().cpu()


def _inputs(images: Any, maps: Any, targets: Any) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """Images (N, C, H, W), maps (N, H, W) of the same size, and one target per image."""
    x, m = as_images(images), as_maps(maps)
    if x.shape[0] != m.shape[0] or x.shape[2:] != m.shape[1:]:
        raise InputError(
            f"images {tuple(x.shape)} and maps {m.shape} do not match: give one map of "
            "the image's height and width per image."
        )
    return x, m, torch.as_tensor(as_targets(targets, len(x)))


class Ablation(Metric):
    """Replace the k×k patch around the map's arg-max with the data-set mean; score = logit drop.

    The value for one image is z_t(x) − z_t(x with the patch replaced): the larger the drop, the
    more the map's peak pointed at evidence the model uses (``higher_is_better``). On exact ties
    of the maximum the tied pixel nearest to the ties' centroid is the centre.

    Parameters
    ----------
    patch
        Side of the square patch in pixels (the paper's 9), clipped at the image border.
    """

    name = "ablation"
    unit = "item"
    needs_model = True
    higher_is_better = True

    def __init__(self, patch: int = 9):
        if patch < 1:
            raise InputError(f"patch must be a positive number of pixels; got {patch}.")
        self.patch = patch

    def ablate(self, images: torch.Tensor, maps: np.ndarray, mean: torch.Tensor) -> torch.Tensor:
        """A copy of ``images`` with each image's peak patch set to ``mean``."""
        out = images.clone()
        lo, hi = self.patch // 2, self.patch - self.patch // 2
        for i, m in enumerate(maps):
            y, x = peak_index(m)
            out[i, :, max(y - lo, 0) : y + hi, max(x - lo, 0) : x + hi] = mean
        return out

    def __call__(
        self, model: torch.nn.Module, images: Any, maps: Any, targets: Any, mean: Any = None
    ) -> np.ndarray:
        """Per-image drop of the target logit (float64, N)."""
        x, m, t = _inputs(images, maps, targets)
        before = target_scores(model, x, t)
        after = target_scores(model, self.ablate(x, m, channel_mean(x, mean)), t)
        return (before - after).numpy()


class RegionPerturbation(Metric):
    """Perturb non-overlapping patches in map order and follow the target logit (Samek et al.).

    The image is cut into a grid of ``patch``×``patch`` regions, ranked by their summed relevance
    (most relevant first for ``"morf"``, least relevant first for ``"lerf"``); step k replaces the
    first k·``per_step`` regions with the data-set mean. The value per image is the AOPC,
    1/(L+1) Σ_{k=0..L} (f(x⁰) − f(xᵏ)) with f the target logit. A good map makes the MoRF curve
    fall fast (high AOPC, ``higher_is_better``) and the LeRF curve stay flat (low AOPC).

    Parameters
    ----------
    order
        ``"morf"`` (most relevant first) or ``"lerf"`` (least relevant first).
    patch
        Region side in pixels; None: one eighth of the image side (an 8×8 grid).
    steps
        Number of perturbation steps L; None: every region, one per step.
    """

    name = "region_perturbation"
    unit = "item"
    needs_model = True
    #: perturbed images per model call (items are grouped up to this many)
    images_per_forward = 256

    def __init__(self, order: str = "morf", patch: int | None = None, steps: int | None = 16):
        if order not in ("morf", "lerf"):
            raise InputError(f"order must be 'morf' or 'lerf'; got {order!r}.")
        if patch is not None and patch < 1:
            raise InputError(f"patch must be a positive number of pixels; got {patch}.")
        self.order = order
        self.patch = patch
        self.steps = steps
        self.higher_is_better = order == "morf"

    def _grid(self, shape: tuple[int, int]) -> tuple[int, int, int]:
        p = self.patch or max(1, min(shape) // 8)
        return p, -(-shape[0] // p), -(-shape[1] // p)

    def curves(
        self, model: torch.nn.Module, images: Any, maps: Any, targets: Any, mean: Any = None
    ) -> np.ndarray:
        """Target logit after each step, float64 (N, L+1); column 0 is the unperturbed image."""
        x, m, t = _inputs(images, maps, targets)
        fill = channel_mean(x, mean)
        p, gh, gw = self._grid(m.shape[1:])
        n_regions = gh * gw
        steps = min(self.steps or n_regions, n_regions)
        per_step = np.linspace(0, n_regions, steps + 1).round().astype(int)
        padded = np.zeros((len(m), gh * p, gw * p))
        padded[:, : m.shape[1], : m.shape[2]] = m
        sums = padded.reshape(len(m), gh, p, gw, p).sum(axis=(2, 4)).reshape(len(m), -1)
        key = -sums if self.order == "morf" else sums
        ranks = np.argsort(key, axis=1, kind="stable")
        chunk = max(1, self.images_per_forward // (steps + 1))  # items per model call
        out = np.empty((len(x), steps + 1))
        for s in range(0, len(x), chunk):
            batch = torch.cat(
                [
                    self._steps(x[i], ranks[i], per_step, fill, p, gw)
                    for i in range(s, min(s + chunk, len(x)))
                ]
            )
            tt = t[s : s + chunk].repeat_interleave(steps + 1)
            out[s : s + chunk] = target_scores(model, batch, tt).view(-1, steps + 1).numpy()
        return out

    @staticmethod
    def _steps(
        image: torch.Tensor,
        ranks: np.ndarray,
        per_step: np.ndarray,
        fill: torch.Tensor,
        p: int,
        gw: int,
    ) -> torch.Tensor:
        """(L+1, C, H, W): ``image`` with the first ``per_step[k]`` ranked regions filled."""
        batch = image.expand(len(per_step), *image.shape).clone()
        for k in range(1, len(per_step)):
            batch[k] = batch[k - 1]
            for r in ranks[per_step[k - 1] : per_step[k]]:
                gy, gx = divmod(int(r), gw)
                batch[k, :, gy * p : (gy + 1) * p, gx * p : (gx + 1) * p] = fill
        return batch

    @staticmethod
    def aopc(curves: np.ndarray) -> np.ndarray:
        """AOPC per curve: the mean over steps of the drop from the unperturbed score."""
        return (curves[:, :1] - curves).mean(axis=1)

    def __call__(
        self, model: torch.nn.Module, images: Any, maps: Any, targets: Any, mean: Any = None
    ) -> np.ndarray:
        """Per-image AOPC (float64, N)."""
        return self.aopc(self.curves(model, images, maps, targets, mean))
