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

Computing (:meth:`AtlasPanel.compute`, :meth:`AtlasPanel.content_for`) never touches a widget and
holds the lock it is given; :meth:`AtlasPanel.show` writes the widgets all at once. So the
Explorer computes the panel in its worker and shows it in its publish step, and the panel's own
clicks (a sub-neuron, the breadcrumb, the ranking) never run the engine while the Explorer's does.
"""

from __future__ import annotations

import html
import io
import threading
from dataclasses import dataclass, field
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


@dataclass
class AtlasContent:
    """What the panel shows for one breadcrumb path, computed apart from the widgets.

    ``tiles`` are the reference samples' (PNG, label); ``sub_neurons`` the (layer, channel) of
    the shown sub-neurons with their ``sub_values``; ``title``, ``message`` and ``subs_title``
    are HTML. ``key`` is the Explorer selection it was made for.
    """

    path: list[tuple[str, int]]
    target: int | None
    contrast: Any
    x: Any
    key: tuple | None
    by: str
    title: str = ""
    message: str = ""
    references: list[int] = field(default_factory=list)
    tiles: list[tuple[bytes, str]] = field(default_factory=list)
    subs_title: str = ""
    sub_neurons: list[tuple[str, int]] = field(default_factory=list)
    sub_values: list[float] = field(default_factory=list)


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
    lock : threading.RLock, optional
        Held while the panel computes: the Explorer passes its session's, so the panel's engine
        never runs at the same time as the Explorer's on the same model.
    """

    def __init__(
        self, explainer: Any, store: Any, data: Any, x: Any, *, k: int = 8, lock: Any = None
    ) -> None:
        self.lock = lock if lock is not None else threading.RLock()
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
    def content_for(
        self, x: Any, layer: str, channel: int | None, target: int, contrast: Any
    ) -> AtlasContent | None:
        """What the panel shows for neuron (layer, channel) of ``target`` on image ``x`` (a new
        selection resets the breadcrumb), or None when it shows that already.

        Computes without touching the widgets (the Explorer calls it from its worker and hands
        the result to :meth:`show` through its publish step).
        """
        key = (layer, channel, int(target), contrast)
        if key == self._key and x is self.x:
            return None
        path = [] if channel is None else [(layer, int(channel))]
        return self.compute(path, int(target), contrast, x=x, key=key)

    def descend(self, channel: int) -> None:
        """Go down to sub-neuron ``channel`` of the layer below."""
        found = [s for s in self.sub_neurons if s[1] == int(channel)]
        if not found:
            raise ConfigError(f"channel {channel} is not among the shown sub-neurons")
        self.show(self.compute([*self.path, found[0]], self.target, self.contrast))

    def up(self, depth: int) -> None:
        """Go back to the breadcrumb's entry ``depth`` (0 = the selected neuron)."""
        self.show(self.compute(self.path[: int(depth) + 1], self.target, self.contrast))

    def render(self) -> None:
        """Redraw for the current path, target and ranking."""
        self.show(self.compute(self.path, self.target, self.contrast))

    # ------------------------------------------------------------------------------ computing
    def compute(
        self,
        path: list[tuple[str, int]],
        target: int | None,
        contrast: Any,
        *,
        x: Any = None,
        key: tuple | None = None,
    ) -> AtlasContent:
        """Everything the panel shows for ``path`` (references, their tiles, sub-neurons on
        image ``x``, default: the current one), computed under the engine's lock."""
        x = self.x if x is None else x
        content = AtlasContent(list(path), target, contrast, x, key or self._key, self.by.value)
        if not path or target is None:
            content.title = "<b>neuron atlas</b>: select a neuron (click a bar)"
            return content
        layer, channel = path[-1]
        name = self._class_name(target)
        content.title = (
            "<b>"
            + html.escape(f"neuron atlas: {layer} channel {channel}, references for {name}")
            + "</b>"
        )
        with self.lock:
            self._references(content, layer, channel)
            self._sub_neurons(content, layer, channel)
        return content

    def _references(self, content: AtlasContent, layer: str, channel: int) -> None:
        if layer not in self.store_layers:
            known = ", ".join(self.store_layers)
            content.message = html.escape(
                f"layer {layer} is not in the atlas store (its layers: {known})"
            )
            return
        method = self._store_method(content.contrast)
        by = content.by
        refs = reference_samples(
            self.store, layer, channel, by=by, method=method, target=content.target, k=self.k
        )
        content.references = [int(s) for s in refs["sample"].values]
        ranked = f"by {by}" + ("" if by == "activation" else f" ({method})")
        content.message = html.escape(
            f"top {len(content.references)} of {refs.attrs['candidates']} samples {ranked}"
        )
        if not content.references:
            return
        maps = maps_for(
            self.explainer, self.table, refs, layer, channel, method=_engine(method), crop=False
        )
        content.tiles = [
            (self._png(maps, r), f"#{int(maps['sample'][r])}  {float(maps['score'][r]):+.3g}")
            for r in range(len(content.references))
        ]

    def _sub_neurons(self, content: AtlasContent, layer: str, channel: int) -> None:
        try:
            parts = self.explainer.decompose(
                content.x, content.target, layer, channel,
                contrast=self._decompose_contrast(content.contrast), k=SUB_NEURONS,
            )  # fmt: skip
        except CLRPError as error:
            content.subs_title = html.escape(f"no sub-neurons: {error}")
            return
        into = str(parts.attrs["into"])
        content.sub_neurons = [(into, int(c)) for c in parts["channel"].values]
        content.sub_values = [float(v) for v in parts.values]
        content.subs_title = html.escape(f"made of (on this image), in {into}:")

    # ------------------------------------------------------------------------------ showing
    def show(self, content: AtlasContent) -> None:
        """Show ``content`` (from :meth:`compute`): the panel's state and widgets, at once."""
        self.path, self.target, self.contrast = content.path, content.target, content.contrast
        self.x, self._key = content.x, content.key
        self.references, self.sub_neurons = content.references, content.sub_neurons
        self._crumbs()
        self.title.value, self.message.value = content.title, content.message
        tiles = []
        for png, label in content.tiles:
            image = w.Image(value=png, format="png", layout=TILE_LAYOUT)
            tile = w.VBox([image, w.Label(label)])
            tile.add_class("clrp-atlas-ref")
            tiles.append(tile)
        self.refs_box.children = tuple(tiles)
        self.subs_title.value = content.subs_title
        buttons = []
        for (into, c), value in zip(content.sub_neurons, content.sub_values, strict=True):
            button = w.Button(description=f"{into}:{c}  {value:+.3g}")
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
    def _store_method(self, contrast: Any) -> str:
        """The store's method for the Explorer's contrast (its first method for a baseline)."""
        label = contrast if isinstance(contrast, str) else f"rather_than_{contrast}"
        return label if label in self.methods else self.methods[0]

    def _decompose_contrast(self, contrast: Any) -> Any:
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
