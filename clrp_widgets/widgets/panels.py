"""The Explorer's panels: how a computed view is drawn (mixed into ``Explorer``).

Everything here runs in ``Job.publish`` (the newest request only): the header's map and its
legend, the neuron bars, the pixel's neuron list, the selected neurons' maps, the thumbnails, the
exported HTML's embedded maps and the state mirrored to the front end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from clrp_widgets.results import decode_attrs
from clrp_widgets.widgets.charts import percent
from clrp_widgets.widgets.labels import CONTRAST_NAMES, CONTRAST_TIPS, UnitNames
from clrp_widgets.widgets.maps import (
    compare,
    downsample,
    neurons_at,
    patch_grid,
    to_image,
    top_channels,
)
from clrp_widgets.widgets.session import LRP_CONTRASTS, View


class PanelsMixin:
    """Drawing methods of :class:`~clrp_widgets.widgets.explorer.Explorer`."""

    # Provided by the Explorer: its widgets, state traits, session and what is known.
    heatmap: Any
    neuron_view: Any
    thumbs: Any
    bars: Any
    top5: Any
    gallery: Any
    session: Any
    dataset_stats: Any
    class_names: list[str]
    layer_names: list[str]
    target: int
    rules: str
    image: int
    top_k: int
    map_version: int
    _independent: bool
    _layer_types: dict[str, str]
    _display: Callable[[int], np.ndarray]
    # What is on screen: written here, in the publish step, only.
    _image: np.ndarray
    _shown: dict[Any, Any]
    _shown_view: View | None
    _units: dict[str, UnitNames]
    _layer_shown: tuple[View, Any] | None
    _thumbs_layer: str | None
    _pixel_layer: str | None

    def _state(self, view: View, version: int) -> dict[str, Any]:
        return {
            "target": view.target,
            "target_name": self.class_names[view.target],
            "contrast": view.contrast,
            "class_b": view.class_b,
            "rules": view.rules,
            "layer": view.layer,
            "channels": list(view.channels),
            "pixel": list(view.pixel) if view.pixel else [],
            "neuron_mode": view.neuron_mode,
            "image": view.image,
            "map_version": version,
            "stage": "",
            "error": "",
        }

    def _changed(self, part: str, key: Any) -> bool:
        if self._shows(part, key):
            return False
        self._shown[part] = key
        return True

    def _shows(self, part: str, key: Any) -> bool:
        return self._shown.get(part) == key

    def _units_of(self, view: View, n_units: int | None = None, layer: Any = None) -> UnitNames:
        if layer is not None:  # transformer layers: heads and hidden units, from the tree
            kind = decode_attrs(dict(layer.attrs)).get("unit_kind")
            named = UnitNames.of_tree(kind, layer["relevance"].ndim > 2)
            if named is not None:
                return named
        last = bool(self.layer_names) and view.layer == self.layer_names[-1]
        kind = self._layer_types.get(view.layer, "")
        return UnitNames.of(kind, last, n_units, self.class_names)

    def _show_prediction(self, image: int, probs: np.ndarray) -> None:
        best = int(np.argmax(probs))
        self.gallery.set_prediction(image, f"{self.class_names[best]} {percent(probs[best])}")
        if image == self.image:
            self._show_top()

    def _show_top(self) -> None:
        probs = self.session.cached_probs(self.rules, self.image)
        if probs is not None and self.class_names:
            k = min(max(int(self.top_k), 1), len(probs))
            self.top5.show(probs, self.class_names, self.target, k=k, independent=self._independent)

    def _show_main(
        self, view: View, main: np.ndarray, layer: Any, chan_maps: list | None = None
    ) -> None:
        """The header's map, the neuron bars and the pixel's list, then the neuron maps and the
        view's state, once.

        Without ``chan_maps`` (the selected neurons' maps are still coming) the state says so
        (``stage: "neuron maps"``) and the version stays: no state claims a view before all of
        it is shown.
        """
        self._draw_header(view, main)
        decision = view.decision()
        units = self._units_of(view, int(layer["neuron_relevance"].shape[-1]), layer)
        self._units[view.layer] = units
        self._layer_shown = (view.decision(), layer)
        if self._changed("bars", decision):
            self._show_bars(view, layer, units)
        self.bars.select(view.channels)
        if self._changed("pixel", (decision, view.pixel)):
            self._show_pixel(view, layer, units)
        self._shown_view = view
        if chan_maps is None:
            self.heatmap.state = {**self._state(view, self.map_version), "stage": "neuron maps"}
            return
        self._show_neurons(view, chan_maps)
        self._publish_state(view)

    def _show_header(self, view: View, main: np.ndarray) -> None:
        """The header's map alone, its state saying the neuron bars are still coming.

        The neuron panel's tree needs another pass (the target's, or for a baseline its own
        LRP-family passes): the map is shown first.
        """
        self._draw_header(view, main)
        self.heatmap.state = {**self._state(view, self.map_version), "stage": "neuron bars"}

    def _draw_header(self, view: View, main: np.ndarray) -> None:
        name = self.class_names[view.target]
        if self._changed("image", view.image):
            self._image = self._display(view.image)
            self.heatmap.set_image(self._image)
            self.neuron_view.set_image(self._image)
        if self._changed(
            "main", (view.image, view.rules, view.target, view.contrast, view.class_b)
        ):
            label = CONTRAST_NAMES[view.contrast]
            if view.contrast == "pairwise":
                label = f"{name} rather than {self.class_names[view.class_b]}"
            self.heatmap.set_maps([main], [f"{label}: {name}"])
            self.heatmap.help = self._help(view)
            self.heatmap.panel_tooltips = [CONTRAST_TIPS.get(view.contrast, label)]
        self.top5.highlight(view.target)

    def _publish_state(self, view: View) -> None:
        version = self.map_version + 1
        state = self._state(view, version)
        self.heatmap.state = state
        self.neuron_view.state = {
            **state,
            "view": ["empty", "single", "compare"][len(view.channels)],
        }
        self.thumbs.selected = list(view.channels)
        self.map_version = version  # last: observers of map_version see the finished view

    def _dual(self, view: View) -> str:
        """What the view's target is contrasted with (the dual), in words."""
        return {
            "clrp1": "all other classes together",
            "clrp2": f'"not {self.class_names[view.target]}"',
            "sglrp": "the other classes weighted by their probability",
            "pairwise": f"class B ({self.class_names[view.class_b]})",
        }.get(view.panel_contrast, "nothing (plain LRP)")

    def _help(self, view: View, neurons: bool = False) -> str:
        """The maps' legend: what target, dual, contrast and the colours mean in this view."""
        name = self.class_names[view.target]
        lines = [
            f"target: relevance for {name}",
            f"dual: relevance for what {name} is contrasted with: {self._dual(view)}",
            f"contrast = target − dual: what makes {name} win; the map shows its positive part",
            "colours: red = evidence for the target; in signed maps blue = evidence against",
        ]
        if neurons:
            lines.append(
                "a channel's conditional map: the decision's relevance that flows through it"
            )
            lines.append(self._panel_note(view).strip(" ()") or "")
        elif view.contrast not in LRP_CONTRASTS:
            lines.insert(0, f"{CONTRAST_NAMES[view.contrast]}: a gradient-based baseline map")
        return "\n".join(line for line in lines if line)

    def _panel_note(self, view: View) -> str:
        """What the neuron panel shows when the header shows a baseline."""
        if view.contrast in LRP_CONTRASTS:
            return ""
        return (
            f" (the map above is {CONTRAST_NAMES[view.contrast]}, which has no layer "
            "decomposition: the neuron panel shows CLRP1)"
        )

    def _show_bars(self, view: View, layer: Any, units: UnitNames) -> None:
        rel = layer["neuron_relevance"]
        shown = top_channels(rel.sel(kind=view.kind).values, n=20)
        series = {k: rel.sel(kind=k).values[shown] for k in rel["kind"].values}
        mean = self._dataset_mean(view)
        if mean is not None:
            series["data-set mean"] = mean[shown]
        if view.kind == "target":
            what = "LRP"
        elif view.panel_contrast == "pairwise":
            what = f"contrast against {self.class_names[view.class_b]}"
        else:
            what = f"{view.panel_contrast.upper()} contrast"
        self.bars.show(
            shown,
            series,
            f"{view.layer} ({self._layer_types.get(view.layer, '')}): {units.plural()} by {what}"
            f"{self._panel_note(view)} (click: conditional map)",
            layer=view.layer,
            labels=[units.label(int(c)) for c in shown],
            unit=units.kind,
        )

    def _dataset_mean(self, view: View) -> np.ndarray | None:
        """The data-set mean relevance per channel of the view's class, layer and contrast."""
        stats = self.dataset_stats
        where = {"contrast": view.panel_contrast, "class": view.target, "layer": view.layer}
        if stats is None or any(v not in stats[k].values for k, v in where.items()):
            return None
        one = stats["mean"].sel(where)
        if "n_channels" in stats.coords:  # narrower layers are NaN-padded to the widest
            one = one.isel(channel=slice(0, int(stats["n_channels"].sel(layer=view.layer))))
        return np.asarray(one)

    def _show_pixel(self, view: View, layer: Any, units: UnitNames) -> None:
        self._pixel_layer = view.layer
        self.heatmap.neuron_noun = units.plural()
        if view.pixel is None:
            self.heatmap.pixel = []
            self.heatmap.pixel_neurons = []
            self.heatmap.neuron_list_title = ""
            return
        y, x = view.pixel
        rel = layer["relevance"].sel(kind=view.kind)
        kind = view.kind
        with self.heatmap.hold_sync():
            self.heatmap.pixel = [y, x]
            grid = patch_grid(layer, kind) if rel.ndim != 3 else None  # tokens on patches
            if rel.ndim != 3 and grid is None:
                self.heatmap.pixel_neurons = []
                self.heatmap.neuron_list_title = (
                    f"{view.layer} has no spatial map; pick a convolution"
                )
                return
            cells = rel.values if grid is None else grid[0]
            chans, values = neurons_at(cells, y, x, self._image.shape[:2])
            self.heatmap.pixel_neurons = [
                {
                    "channel": int(c),
                    "label": units.label(int(c)),
                    "value": float(v),
                    "layer": view.layer,
                }
                for c, v in zip(chans, values, strict=True)
                if v > 0
            ]
            self.heatmap.neuron_list_title = (
                f"{view.layer}: {units.plural()} with the most {kind} relevance at y={y}, x={x}"
                if self.heatmap.pixel_neurons
                else f"{view.layer}: no {units.singular()} has positive {kind} relevance "
                f"at y={y}, x={x}"
            )

    def _show_neurons(self, view: View, maps: list[np.ndarray]) -> None:
        """The selected neurons' maps, titles and caption in one front-end update (unless
        shown already)."""
        if not self._changed("neurons", (view.decision(), view.channels, view.neuron_mode)):
            return
        with self.neuron_view.hold_sync():
            self._draw_neurons(view, maps)

    def _draw_neurons(self, view: View, maps: list[np.ndarray]) -> None:
        units = self._units.get(view.layer) or self._units_of(view)
        names = [units.label(c) for c in view.channels]
        how = "against the rest of its layer" if view.neuron_mode == "neuron" else "conditional"
        if len(maps) == 2:
            a, b = maps
            self.neuron_view.set_maps(
                [a, b, a - b], [f"A: {names[0]}", f"B: {names[1]}", "A − B"], ["", "", "signed"]
            )
            self.neuron_view.panel_legends = ["", "", "red where A is stronger, blue where B is"]
            stats = compare(a, b)
            self.neuron_view.caption = (
                f"{names[0]} vs {names[1]} ({how}): correlation {stats['correlation']:+.2f}, "
                f"overlap of positive parts {stats['overlap']:.2f}{self._panel_note(view)}"
            )
        else:
            self.neuron_view.panel_legends = []
            titles = [f"{n} ({how})" for n in names]
            maps, titles = self._with_patch_grid(view, maps, titles)
            self.neuron_view.set_maps(maps, titles)
            self.neuron_view.caption = (
                f"{names[0]} of {view.layer}, {how}; click a second bar to compare"
                if maps
                else f"click a neuron bar, a thumbnail or a listed {units.singular()} to see "
                "its map"
            ) + self._panel_note(view)
        self.neuron_view.title = f"{units.plural()} of {view.layer}"
        self.neuron_view.help = self._help(view, neurons=True)
        self._snapshot(view, units)

    def _with_patch_grid(
        self, view: View, maps: list[np.ndarray], titles: list[str]
    ) -> tuple[list[np.ndarray], list[str]]:
        """One selected neuron of a token layer (conditional mode): the decision's relevance at
        the layer on that neuron, on the patch grid, joins its input map (the class token's
        share is in the title)."""
        if len(maps) != 1:
            return maps, titles
        panels = self._grid_panels(view, list(view.channels))
        if panels is None:
            return maps, titles
        images, grid_titles = panels
        return [*maps, images[0]], [*titles, grid_titles[0]]

    def _grid_panels(self, view: View, channels: list[int]) -> tuple[np.ndarray, list[str]] | None:
        """Patch-grid panels of ``channels`` at a token layer (images of the input's size and
        their titles), or None where the layer has no patch grid or the mode is not
        conditional."""
        shown = self._layer_shown
        if view.neuron_mode != "decision" or shown is None or shown[0] != view.decision():
            return None
        grid = patch_grid(shown[1], view.kind)
        if grid is None or not channels:
            return None
        cells, extra = grid
        gy, gx = cells.shape[1:]
        units = self._units.get(view.layer) or self._units_of(view)
        titles = []
        for c in channels:
            note = f", class token {extra[c].sum():+.3g}" if extra.shape[1] else ""
            titles.append(f"{units.label(c)} at the layer, {gy}×{gx} patch grid{note}")
        images = np.stack([to_image(cells[c], self._image.shape[:2]) for c in channels])
        return images, titles

    def _show_thumbs(
        self, view: View, top: list[int], maps: dict[int, np.ndarray], layer: Any
    ) -> None:
        if not self._changed("thumbs", (view.decision(), tuple(top))):
            return
        units = self._units.get(view.layer) or self._units_of(view)
        self._thumbs_layer = view.layer
        if not top:
            self.thumbs.title = (
                f"no {units.singular()} of {view.layer} carries positive relevance for this view"
            )
            self.thumbs.set_maps(np.zeros((1, 1, 3), np.uint8), np.zeros((0, 1, 1)), [], [])
        else:
            stack = downsample(np.stack([maps[c] for c in top]), 64)
            image = downsample(self._image.transpose(2, 0, 1).astype(np.float32), 64)
            self.thumbs.title = (
                f"top {len(top)} {units.plural()} of {view.layer} (positive relevance only): "
                f"conditional maps{self._panel_note(view)}"
            )
            self.thumbs.set_maps(
                image.transpose(1, 2, 0).round().astype(np.uint8),
                stack,
                top,
                [units.label(c) for c in top],
            )
        self.thumbs.state = {"layer": view.layer, "map_version": self.map_version}
        self._snapshot(view, units)

    def _snapshot(self, view: View, units: UnitNames) -> None:
        """Embed the maps the exported HTML needs for offline clicks: the thumbnails' channels
        and the selected ones (all conditional maps of the shown decision, cached)."""
        thumbs_shown = self._shown.get("thumbs", (None,))[0] == view.decision()
        top = list(self.thumbs.channels) if thumbs_shown else []
        embedded = top + [c for c in view.channels if c not in top]
        if not thumbs_shown or not embedded:
            return
        maps = self.session.conditional(view, embedded) or {}
        grids = self._grid_panels(view, embedded)  # token layers: each one's patch-grid panel
        self.neuron_view.set_snapshot(
            view.layer,
            embedded,
            np.stack([maps[c] for c in embedded]),
            labels=[units.label(c) for c in embedded],
            bar_channels=list(self.bars.channels),
            grids=grids,
        )
