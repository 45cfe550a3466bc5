"""``AtlasPanel``: the neuron atlas under the Explorer (reference samples and sub-neurons).

For the selected neuron (layer, channel) and the current target class it shows the neuron's top
reference samples from a data-set store (``cw.scale.reference_samples``, contrastive by default,
switchable to relevance or activation) with their conditional maps cropped to where the neuron's
relevance lies (``cw.scale.reference_maps``), and the neuron's top sub-neurons in the layer below
on the Explorer's image (``Explainer.decompose``). Clicking a sub-neuron descends to it; the
breadcrumb goes back up.

Everything is plain ipywidgets (PNG ``Image`` tiles and buttons), so an exported notebook shows
the panel as it was saved. DOM hooks: the panel has the class ``clrp-atlas``; reference tiles
``clrp-atlas-ref``, sub-neuron buttons ``clrp-atlas-sub``, breadcrumb buttons ``clrp-atlas-crumb``.
"""

from __future__ import annotations

import html
import io
from typing import Any

import ipywidgets as w
import xarray as xr
from PIL import Image

from clrp_widgets.engine.errors import CLRPError, ConfigError
from clrp_widgets.scale import store as zstore
from clrp_widgets.scale.atlas import checked_table, maps_for, reference_samples
from clrp_widgets.widgets.maps import display_image, render_rgb

RANKINGS = [("contrastive", "contrast"), ("relevance", "relevance"), ("activation", "activation")]
TILE = 96  # pixels of a reference tile's side (square tiles, as CRP shows its references)
TILE_LAYOUT = {"width": f"{TILE}px", "height": f"{TILE}px"}
MIN_CROP = 16  # image pixels: a crop is never narrower (a one-pixel box says nothing)
SUB_NEURONS = 5


class AtlasPanel(w.VBox):
    """Reference samples and sub-neurons of one neuron; see the module docstring.

    Parameters
    ----------
    explainer : cw.Explainer
        The store's model (the panel builds its own Explainer on it, so the caller's cached
        forward pass stays).
    store : str or pathlib.Path
        A store of ``cw.scale.explain_dataset`` on ``data``.
    data
        The data the store was written from (checked against its fingerprint).
    x : torch.Tensor
        The (1, C, H, W) image whose decomposition is shown.
    k : int
        Reference samples shown.
    """

    def __init__(self, explainer: Any, store: Any, data: Any, x: Any, *, k: int = 8) -> None:
        self.explainer = explainer.with_rules(explainer.rules)  # its own engine, every setting
        self.store = zstore.local_path(store)
        self.table = checked_table(self.store, data)
        root = xr.open_zarr(self.store, chunks=None, consolidated=True)
        self.store_layers = list(root.attrs["layers"])
        self.methods = [str(m) for m in root["contrast"].values]
        self.bounds = explainer.input_bounds
        self.x, self.k = x, int(k)
        self.path: list[tuple[str, int]] = []
        self.target: int | None = None
        self.contrast: str | int = "clrp1"
        self.references: list[int] = []  # samples shown, best first
        self.sub_neurons: list[tuple[str, int]] = []  # (layer, channel) shown, best first
        self._key: tuple | None = None
        self.by = w.ToggleButtons(options=RANKINGS, value="contrast", description="rank by")
        self.by.observe(lambda _: self.render(), names="value")
        self.title = w.HTML()
        self.crumbs = w.HBox(layout={"align_items": "center"})
        self.message = w.HTML()
        self.refs_box = w.HBox(layout={"flex_flow": "row wrap"})
        self.subs_title = w.HTML()
        self.subs_box = w.HBox(layout={"flex_flow": "row wrap"})
        parts = [self.title, self.by, self.crumbs, self.message, self.refs_box]
        super().__init__([*parts, self.subs_title, self.subs_box])
        self.add_class("clrp-atlas")

    # ------------------------------------------------------------------------------ navigation
    def set_image(self, x: Any) -> None:
        """Decompose neurons on image ``x`` (the Explorer's current image) from now on."""
        if x is not self.x:
            self.x, self._key = x, None

    def follow(self, layer: str, channel: int | None, target: int, contrast: Any) -> None:
        """Show neuron (layer, channel) for ``target`` (a new selection resets the breadcrumb)."""
        key = (layer, channel, int(target), contrast)
        if key == self._key:
            return
        self._key = key
        self.target, self.contrast = int(target), contrast
        self.path = [] if channel is None else [(layer, int(channel))]
        self.render()

    def descend(self, channel: int) -> None:
        """Go down to sub-neuron ``channel`` of the layer below."""
        found = [s for s in self.sub_neurons if s[1] == int(channel)]
        if not found:
            raise ConfigError(f"channel {channel} is not among the shown sub-neurons")
        self.path = [*self.path, found[0]]
        self.render()

    def up(self, depth: int) -> None:
        """Go back to the breadcrumb's entry ``depth`` (0 = the selected neuron)."""
        self.path = self.path[: int(depth) + 1]
        self.render()

    # ------------------------------------------------------------------------------ rendering
    def render(self) -> None:
        """Redraw for the current path, target and ranking."""
        self._crumbs()
        if not self.path or self.target is None:
            self.title.value = "<b>neuron atlas</b>: select a neuron (click a bar)"
            self.message.value = ""
            self.refs_box.children, self.subs_box.children = (), ()
            self.references, self.sub_neurons = [], []
            self.subs_title.value = ""
            return
        layer, channel = self.path[-1]
        name = self._class_name(self.target)
        self.title.value = (
            "<b>"
            + html.escape(f"neuron atlas: {layer} channel {channel}, references for {name}")
            + "</b>"
        )
        self._show_references(layer, channel)
        self._show_sub_neurons(layer, channel)

    def _show_references(self, layer: str, channel: int) -> None:
        if layer not in self.store_layers:
            known = ", ".join(self.store_layers)
            self.message.value = html.escape(
                f"layer {layer} is not in the atlas store (its layers: {known})"
            )
            self.refs_box.children, self.references = (), []
            return
        method = self._store_method()
        by, target = self.by.value, self.target
        refs = reference_samples(
            self.store, layer, channel, by=by, method=method, target=target, k=self.k
        )
        self.references = [int(s) for s in refs["sample"].values]
        ranked = f"by {self.by.value}" + ("" if self.by.value == "activation" else f" ({method})")
        self.message.value = html.escape(
            f"top {len(self.references)} of {refs.attrs['candidates']} samples {ranked}"
        )
        if not self.references:
            self.refs_box.children = ()
            return
        maps = maps_for(
            self.explainer, self.table, refs, layer, channel, method=_engine(method), crop=False
        )
        tiles = []
        for r in range(len(self.references)):
            tile = w.VBox(
                [
                    w.Image(value=self._png(maps, r), format="png", layout=TILE_LAYOUT),
                    w.Label(f"#{int(maps['sample'][r])}  {float(maps['score'][r]):+.3g}"),
                ]
            )
            tile.add_class("clrp-atlas-ref")
            tiles.append(tile)
        self.refs_box.children = tuple(tiles)

    def _show_sub_neurons(self, layer: str, channel: int) -> None:
        try:
            parts = self.explainer.decompose(
                self.x, self.target, layer, channel, contrast=self._decompose_contrast(),
                k=SUB_NEURONS,
            )  # fmt: skip
        except CLRPError as error:
            self.subs_title.value = html.escape(f"no sub-neurons: {error}")
            self.subs_box.children, self.sub_neurons = (), []
            return
        into = str(parts.attrs["into"])
        self.sub_neurons = [(into, int(c)) for c in parts["channel"].values]
        self.subs_title.value = html.escape(f"made of (on this image), in {into}:")
        buttons = []
        for (_, c), value in zip(self.sub_neurons, parts.values, strict=True):
            button = w.Button(description=f"{into}:{c}  {float(value):+.3g}")
            button.on_click(lambda _, c=c: self.descend(c))
            button.add_class("clrp-atlas-sub")
            buttons.append(button)
        self.subs_box.children = tuple(buttons)

    def _crumbs(self) -> None:
        """The breadcrumb: ``path: layer:channel › layer:channel ...`` (buttons go back up)."""
        spaced = {"margin": "0 4px 0 0"}  # ipywidgets' Layout has no flex gap
        parts: list[w.Widget] = [w.HTML("path:", layout=spaced)] if self.path else []
        for depth, (layer, channel) in enumerate(self.path):
            if depth:
                parts.append(w.HTML("&rsaquo;", layout=spaced))
            button = w.Button(description=f"{layer}:{channel}", layout={"width": "auto", **spaced})
            button.on_click(lambda _, d=depth: self.up(d))
            button.add_class("clrp-atlas-crumb")
            parts.append(button)
        self.crumbs.children = tuple(parts)

    def crumb_buttons(self) -> list[w.Button]:
        """The breadcrumb's buttons, from the selected neuron down."""
        return [b for b in self.crumbs.children if isinstance(b, w.Button)]

    def _png(self, maps: xr.Dataset, r: int) -> bytes:
        image = display_image(maps["pixels"].values[r], self.bounds)
        rgb = render_rgb(maps["heatmap"].values[r], image)
        y0, x0, y1, x1 = square_around([int(v) for v in maps["box"].values[r]], rgb.shape[:2])
        picture = Image.fromarray(rgb[y0:y1, x0:x1]).resize((TILE, TILE), Image.Resampling.NEAREST)
        out = io.BytesIO()
        picture.save(out, format="PNG")
        return out.getvalue()

    # ------------------------------------------------------------------------------ helpers
    def _store_method(self) -> str:
        """The store's method for the Explorer's contrast (its first method for a baseline)."""
        contrast = self.contrast
        label = contrast if isinstance(contrast, str) else f"rather_than_{contrast}"
        return label if label in self.methods else self.methods[0]

    def _decompose_contrast(self) -> Any:
        contrast = self.contrast
        if isinstance(contrast, int) or contrast in ("lrp", "clrp1", "clrp2", "sglrp"):
            return contrast
        return _engine(self.methods[0])

    def _class_name(self, target: int) -> str:
        names = self.explainer.class_names
        return names[target] if names and 0 <= target < len(names) else str(target)


def square_around(box: list[int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The square (y0, x0, y1, x1) centred on ``box`` that holds it, at least ``MIN_CROP`` wide,
    shifted (and, for a box larger than the image, clipped) to lie inside an image of ``size``."""
    y0, x0, y1, x1 = box
    side = min(max(y1 - y0, x1 - x0, MIN_CROP), *size)
    top = min(max((y0 + y1 - side) // 2, 0), size[0] - side)
    left = min(max((x0 + x1 - side) // 2, 0), size[1] - side)
    return top, left, top + side, left + side


def _engine(label: str) -> Any:
    """A store method label as the engine's contrast (``rather_than_3`` -> 3)."""
    return int(label.rsplit("_", 1)[1]) if label.startswith("rather_than_") else label
