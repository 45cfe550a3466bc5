"""``Explorer``: the composed widget (DESIGN §5), and ``demo()``.

Layout: a header (top-5 bars, target / contrast / class B / rules pickers, export), the decision
heatmap with the clicked pixel's neuron list, and the neuron panel (layer picker, neuron bars, the
selected neurons' maps side by side with their difference, and a thumbnail grid).

Every front-end event only records the new state and submits a request; a background worker
brings the widgets to the newest state (last request wins, see ``runner.py``). From Python, use
:meth:`Explorer.select`, which waits for the result, or set the traits and call :meth:`wait`.

DOM hooks (for styling and browser tests): the parts carry the classes ``clrp-top5``,
``clrp-main-map``, ``clrp-neuron-view``, ``clrp-neuron-bars`` and ``clrp-thumbnails``; the canvas
widgets set ``data-ready="1"`` once drawn and mirror the shown state as ``data-target``,
``data-contrast``, ``data-class-b``, ``data-rules``, ``data-layer``, ``data-channels``,
``data-pixel``, ``data-neuron-mode``, ``data-map-version`` (plus ``data-view`` = empty, single or
compare on the neuron view, ``data-pixel-neurons``, ``data-panels`` and ``data-busy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w
import numpy as np
import traitlets as t
from PIL import Image

from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.engine.presets import PRESETS
from clrp_widgets.widgets.charts import NeuronBarsChart, TopClassesChart
from clrp_widgets.widgets.heatmap import HeatmapView
from clrp_widgets.widgets.maps import (
    compare,
    display_image,
    downsample,
    neurons_at,
    render_rgb,
    side_by_side,
    top_channels,
)
from clrp_widgets.widgets.runner import Job, LatestRunner
from clrp_widgets.widgets.session import ExplainSession, View
from clrp_widgets.widgets.sources import as_input, default_layer, explainers
from clrp_widgets.widgets.thumbnails import ThumbnailGrid

CONTRASTS = [
    ("LRP", "lrp"),
    ("CLRP1 (rather than all other classes)", "clrp1"),
    ("CLRP2 (rather than not the class)", "clrp2"),
    ("SGLRP", "sglrp"),
    ("rather than class B", "pairwise"),
    ("gradient", "gradient"),
    ("gradient × input", "gradient_x_input"),
    ("DeConvNet", "deconvnet"),
    ("Guided BP", "guided_backprop"),
    ("Grad-CAM", "gradcam"),
]
RULES = list(PRESETS)
NEURON_MODES = [("conditional (decision)", "decision"), ("neuron vs its layer", "neuron")]
SIGNED_BY_DEFAULT = {"gradient", "gradient_x_input", "deconvnet", "guided_backprop"}
THUMBNAILS = 12
_VIEW_TRAITS = [
    "target",
    "contrast",
    "class_b",
    "rules",
    "layer",
    "channels",
    "pixel",
    "neuron_mode",
]


class Explorer(w.VBox):
    """Interactive CLRP explorer for one image.

    Parameters
    ----------
    bundle_or_explainer : ModelBundle, Explainer or torch.nn.Module
        The model to explain (``cw.load_model(...)``, a ``cw.Explainer`` or a plain module).
    image : tensor (C, H, W) or (1, C, H, W), xarray.DataArray, numpy array or PIL image
        The image, as model input (PIL and HWC arrays go through the bundle's ``preprocess``).
    target : int, optional
        The class to explain; default: the most probable one.
    contrast : str
        "lrp", "clrp1", "clrp2", "sglrp", "pairwise" (with ``class_b``), "gradient",
        "gradient_x_input", "deconvnet", "guided_backprop" or "gradcam".
    class_b : int, optional
        Class B of the "rather than class B" contrast; default: the second most probable class.
    rules : str
        A rules preset of the engine ("paper" by default).
    layer : str, optional
        The neuron panel's layer; default: the last convolution.
    display_size : int
        On-screen size in CSS pixels of the larger side of the maps.
    dataset_stats : xarray.Dataset, optional
        ``cw.scale.neuron_stats(store)``: its ``mean`` (contrast, class, layer, channel) of the
        current target class, layer and contrast is drawn as a fourth bar ("data-set mean") next
        to this image's bars, for the same channels.
    atlas : str or pathlib.Path, optional
        A ``cw.scale.explain_dataset`` store: the neuron atlas panel (``widgets/atlas.py``)
        shows the selected neuron's reference samples and sub-neurons. Needs ``data``.
    data : optional
        The data that store was written from.

    Notes
    -----
    The traits ``target``, ``contrast``, ``class_b``, ``rules``, ``layer``, ``channels``
    (up to two selected channels), ``pixel`` ([y, x] or []) and ``neuron_mode`` ("decision" or
    "neuron") hold the state; ``map_version`` counts the map updates shown.
    """

    target = t.Int()
    contrast = t.Unicode("clrp1")
    class_b = t.Int()
    rules = t.Unicode("paper")
    layer = t.Unicode()
    channels = t.List(t.Int())
    pixel = t.List(t.Int())
    neuron_mode = t.Unicode("decision")
    map_version = t.Int(0)
    busy = t.Bool(False)
    error = t.Unicode("")

    def __init__(
        self,
        bundle_or_explainer: Any,
        image: Any,
        *,
        target: int | str | None = None,
        contrast: str = "clrp1",
        class_b: int | None = None,
        rules: str | None = None,
        layer: str | None = None,
        display_size: int = 256,
        dataset_stats: Any = None,
        atlas: Any = None,
        data: Any = None,
    ) -> None:
        make, first, rules, bundle = explainers(bundle_or_explainer, rules)
        self.rules_options = RULES if rules in RULES else [rules, *RULES]
        self.session = ExplainSession(make, as_input(image, bundle), {rules: first})
        probs = self.session.probs(rules)
        names = first.class_names or [f"class {i}" for i in range(len(probs))]
        self.class_names = [str(n) for n in names]
        self.layer_names = list(first.layer_names)
        ranked = [int(c) for c in np.argsort(-probs)]
        target = self._class_index(ranked[0] if target is None else target)
        class_b = class_b if class_b is not None else next(c for c in ranked if c != target)
        self._check_choice(contrast, [v for _, v in CONTRASTS], "contrast")
        self._check_choice(rules, self.rules_options, "rules")
        layer = layer or default_layer(first)
        self._check_choice(layer, self.layer_names, "layer")
        self._image = display_image(self.session.x[0].numpy(), getattr(first, "input_bounds", None))
        self.dataset_stats = dataset_stats
        self._shown: dict[str, Any] = {}
        self._updating = False
        self._build(display_size, probs)
        # --- neuron atlas hook (the panel lives in widgets/atlas.py)
        self.atlas = None if atlas is None else _atlas_panel(first, atlas, data, self.session.x)
        atlas_part = [] if self.atlas is None else [self.atlas]
        # --- end of the neuron atlas hook
        super().__init__(children=[*self._layout(), *atlas_part])
        self.add_class("clrp-explorer")
        with self.hold_trait_notifications():
            self.set_trait("rules", rules)
            self.set_trait("target", target)
            self.set_trait("contrast", contrast)
            self.set_trait("class_b", int(class_b))
            self.set_trait("layer", layer)
        self.heatmap.mode = "signed" if contrast in SIGNED_BY_DEFAULT else "positive"
        self._sync_pickers()
        self.observe(self._on_trait, names=_VIEW_TRAITS)
        self._runner = LatestRunner(self._set_busy, self._show_error)
        self._submit()
        self.wait()
        if self._failure is not None:
            raise self._failure

    # ----------------------------------------------------------------------------------- state
    @property
    def view(self) -> View:
        """The current state as an immutable snapshot."""
        return View(
            target=self.target,
            contrast=self.contrast,
            class_b=self.class_b,
            rules=self.rules,
            layer=self.layer,
            channels=tuple(self.channels),
            pixel=(self.pixel[0], self.pixel[1]) if len(self.pixel) == 2 else None,
            neuron_mode=self.neuron_mode,
        )

    def select(self, timeout: float | None = 120.0, **state: Any) -> Explorer:
        """Set several state traits at once, e.g. ``select(target=2, channels=[5, 9])``, and wait.

        Class names work for ``target`` and ``class_b``. Returns the Explorer (it displays itself).
        """
        unknown = set(state) - set(_VIEW_TRAITS)
        if unknown:
            raise ConfigError(f"unknown state {sorted(unknown)}; choose from {_VIEW_TRAITS}")
        for key in ("target", "class_b"):
            if key in state:
                state[key] = self._class_index(state[key])
        self._update(**state)
        self.wait(timeout)
        return self

    def wait(self, timeout: float | None = 120.0) -> None:
        """Block until the widgets show the newest state."""
        if not self._runner.wait(timeout):
            raise TimeoutError(f"the Explorer did not finish within {timeout} s")

    def _update(self, **state: Any) -> None:
        if "contrast" in state:
            self._check_choice(state["contrast"], [v for _, v in CONTRASTS], "contrast")
        if "rules" in state:
            self._check_choice(state["rules"], self.rules_options, "rules")
        if "layer" in state:
            self._check_choice(state["layer"], self.layer_names, "layer")
            if state["layer"] != self.layer:
                state.setdefault("channels", [])
        if state.get("contrast", self.contrast) != self.contrast:
            self.heatmap.mode = "signed" if state["contrast"] in SIGNED_BY_DEFAULT else "positive"
        self._updating = True
        try:
            with self.hold_trait_notifications():
                for key, value in state.items():
                    setattr(self, key, list(value) if key in ("channels", "pixel") else value)
        finally:
            self._updating = False
        self._sync_pickers()
        self._submit()

    def _on_trait(self, change: dict) -> None:
        if self._updating:
            return
        if change["name"] == "layer" and change["old"] != change["new"]:
            self.set_trait("channels", [])
        self._sync_pickers()
        self._submit()

    def _class_index(self, value: int | str) -> int:
        if isinstance(value, str):
            if value not in self.class_names:
                raise ConfigError(f"unknown class {value!r}; choose from {self.class_names}")
            return self.class_names.index(value)
        if not 0 <= int(value) < len(self.class_names):
            raise ConfigError(
                f"class index {value} is out of range; use 0..{len(self.class_names) - 1}"
            )
        return int(value)

    @staticmethod
    def _check_choice(value: str, choices: Sequence[str], what: str) -> None:
        if value not in choices:
            raise ConfigError(f"unknown {what} {value!r}; choose from {list(choices)}")

    def toggle_channel(self, channel: int) -> None:
        """Select a channel (keeping at most the last two); a selected one is deselected."""
        chans = [c for c in self.channels if c != channel]
        if len(chans) == len(self.channels):
            chans = [*chans, int(channel)][-2:]
        self._update(channels=chans)

    # ---------------------------------------------------------------------------------- widgets
    def _build(self, display_size: int, probs: np.ndarray) -> None:
        names = self.class_names
        classes = [(f"{n} ({i})", i) for i, n in enumerate(names)]
        self.top5 = TopClassesChart()
        self.top5.show(probs, names, int(np.argmax(probs)))
        self.top5.on_click(lambda c: self._update(target=c))
        layout = {"width": "330px"}
        style = {"description_width": "70px"}
        self.target_picker = w.Dropdown(
            options=classes, description="target", layout=layout, style=style
        )
        self.contrast_picker = w.Dropdown(
            options=CONTRASTS, description="contrast", layout=layout, style=style
        )
        self.class_b_picker = w.Dropdown(
            options=classes, description="class B", layout=layout, style=style
        )
        self.rules_picker = w.Dropdown(
            options=self.rules_options, description="rules", layout=layout, style=style
        )
        self.layer_picker = w.Dropdown(options=self.layer_names, description="layer", style=style)
        self.mode_picker = w.ToggleButtons(options=NEURON_MODES, style={"button_width": "190px"})
        for picker, name in [
            (self.target_picker, "target"),
            (self.contrast_picker, "contrast"),
            (self.class_b_picker, "class_b"),
            (self.rules_picker, "rules"),
            (self.layer_picker, "layer"),
            (self.mode_picker, "neuron_mode"),
        ]:
            picker.observe(lambda ch, name=name: self._picked(name, ch["new"]), names="value")
        self.status = w.Label(value="")
        self.export_name = w.Text(value="clrp_explorer", description="save as", style=style)
        self.netcdf_button = w.Button(description="save netCDF", icon="save")
        self.png_button = w.Button(description="save PNG", icon="image")
        self.netcdf_button.on_click(lambda _: self._export(self.save_netcdf, ".nc"))
        self.png_button.on_click(lambda _: self._export(self.save_png, ".png"))

        self.heatmap = HeatmapView(display_size=display_size, pixel_clicks=True)
        self.heatmap.set_image(self._image)
        self.heatmap.on_pixel(lambda y, x: self._update(pixel=[y, x]))
        self.heatmap.on_neuron(self.toggle_channel)
        self.neuron_view = HeatmapView(display_size=int(display_size * 0.6), show_toolbar=False)
        self.neuron_view.set_image(self._image)
        self.heatmap.observe(self._follow_display, names=["mode", "opacity", "show_image"])
        self.bars = NeuronBarsChart()
        self.bars.on_click(self.toggle_channel)
        self.thumbs = ThumbnailGrid()
        self.thumbs.on_click(self.toggle_channel)

    def _layout(self) -> list[w.Widget]:
        for widget, name in [
            (self.top5.figure, "clrp-top5"),
            (self.bars.figure, "clrp-neuron-bars"),
            (self.heatmap, "clrp-main-map"),
            (self.neuron_view, "clrp-neuron-view"),
            (self.thumbs, "clrp-thumbnails"),
        ]:
            widget.add_class(name)  # stable hooks for styling and browser tests
        pickers = w.VBox(
            [
                self.target_picker,
                self.contrast_picker,
                self.class_b_picker,
                self.rules_picker,
                w.HBox([self.export_name]),
                w.HBox([self.netcdf_button, self.png_button]),
                self.status,
            ]
        )
        header = w.HBox([self.top5.figure, pickers])
        small = self.neuron_view.display_size
        self.heatmap.layout.width = f"{max(self.heatmap.display_size + 40, 340)}px"
        self.neuron_view.layout.min_width = f"{3 * (small + 12)}px"  # A, B and A − B in a row
        self.neuron_view.layout.margin = "0 0 0 24px"
        maps = w.HBox([self.heatmap, self.neuron_view])
        layer = w.HBox([self.layer_picker, self.mode_picker])
        return [header, maps, layer, self.bars.figure, self.thumbs]

    def _picked(self, name: str, value: Any) -> None:
        if getattr(self, name) != value:
            self._update(**{name: value})

    def _sync_pickers(self) -> None:
        self.target_picker.value = self.target
        self.contrast_picker.value = self.contrast
        self.class_b_picker.value = self.class_b
        self.class_b_picker.layout.display = None if self.contrast == "pairwise" else "none"
        self.rules_picker.value = self.rules
        self.layer_picker.value = self.layer
        self.mode_picker.value = self.neuron_mode

    def _follow_display(self, change: dict) -> None:
        setattr(self.neuron_view, change["name"], change["new"])
        if change["name"] == "mode":
            self.thumbs.mode = change["new"]

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for widget in (self.heatmap, self.neuron_view, self.thumbs):
            widget.busy = busy
        if busy:
            self.status.value = "computing…"
        elif not self.error:
            self.status.value = ""

    def _show_error(self, exc: Exception) -> None:
        self._failure = exc
        self.error = f"{type(exc).__name__}: {exc}"
        self.status.value = f"error: {self.error}"

    # --------------------------------------------------------------------------------- requests
    def _submit(self) -> None:
        view = self.view
        self.error, self._failure = "", None
        self._runner.submit(lambda job: self._render(view, job))

    def _render(self, view: View, job: Job) -> None:
        """Compute what ``view`` needs (cached parts are free) and publish it if still current."""
        s = self.session
        main = s.decision_map(view)
        layer = s.layer(view)
        chan_maps = s.channel_maps(view)
        kind = view.kind
        job.publish(lambda: self._show_main(view, main, layer, kind, chan_maps))
        if not job.current():
            return
        strength = layer["neuron_relevance"].sel(kind=kind).values
        top = [int(c) for c in np.argsort(-strength, kind="stable")[:THUMBNAILS]]
        maps = s.conditional(view, top)
        job.publish(lambda: self._show_thumbs(view, top, maps))
        if self.atlas is not None and job.current():  # neuron atlas hook: follow the selection
            channel = view.channels[-1] if view.channels else None
            contrast = view.class_b if view.contrast == "pairwise" else view.contrast
            self.atlas.follow(view.layer, channel, view.target, contrast)

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
            "map_version": version,
        }

    def _changed(self, part: str, key: Any) -> bool:
        if self._shown.get(part) == key:
            return False
        self._shown[part] = key
        return True

    def _show_main(
        self, view: View, main: np.ndarray, layer: Any, kind: str, chan_maps: list[np.ndarray]
    ) -> None:
        name = self.class_names[view.target]
        versioned = False
        if self._changed("main", (view.rules, view.target, view.contrast, view.class_b)):
            label = dict((v, k) for k, v in CONTRASTS)[view.contrast]
            if view.contrast == "pairwise":
                label = f"{name} rather than {self.class_names[view.class_b]}"
            self.heatmap.set_maps([main], [f"{label}: {name}"])
            versioned = True
        self.top5.highlight(view.target)
        decision = view.decision()
        if self._changed("bars", decision):
            self._show_bars(view, layer, kind)
        self.bars.select(view.channels)
        if self._changed("pixel", (decision, view.pixel)):
            self._show_pixel(view, layer, kind)
        if self._changed("neurons", (decision, view.channels, view.neuron_mode)):
            self._show_neurons(view, chan_maps)
            versioned = True
        version = self.map_version + int(versioned)
        state = self._state(view, version)
        self.heatmap.state = state
        self.neuron_view.state = {**state, "view": ["empty", "single", "compare"][len(chan_maps)]}
        self.thumbs.selected = list(view.channels)
        self.map_version = version  # last: observers of map_version see the finished view

    def _show_bars(self, view: View, layer: Any, kind: str) -> None:
        rel = layer["neuron_relevance"]
        shown = top_channels(rel.sel(kind=kind).values, n=20)
        series = {k: rel.sel(kind=k).values[shown] for k in rel["kind"].values}
        mean = self._dataset_mean(view)
        if mean is not None:
            series["data-set mean"] = mean[shown]
        what = "LRP" if kind == "target" else f"{view.panel_contrast} contrast"
        self.bars.show(shown, series, f"{view.layer}: channels by {what} (click: conditional map)")

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

    def _show_pixel(self, view: View, layer: Any, kind: str) -> None:
        if view.pixel is None:
            self.heatmap.pixel = []
            self.heatmap.pixel_neurons = []
            self.heatmap.neuron_list_title = ""
            return
        y, x = view.pixel
        rel = layer["relevance"].sel(kind=kind)
        with self.heatmap.hold_sync():
            self.heatmap.pixel = [y, x]
            if rel.ndim != 3:
                self.heatmap.pixel_neurons = []
                self.heatmap.neuron_list_title = (
                    f"{view.layer} has no spatial map; pick a convolution"
                )
                return
            chans, values = neurons_at(rel.values, y, x, self._image.shape[:2])
            self.heatmap.pixel_neurons = [
                {"channel": int(c), "label": f"c{int(c)}", "value": float(v)}
                for c, v in zip(chans, values, strict=True)
                if v > 0
            ]
            self.heatmap.neuron_list_title = (
                f"{view.layer}: channels with the most {kind} relevance at y={y}, x={x}"
                if self.heatmap.pixel_neurons
                else f"{view.layer}: no channel has positive {kind} relevance at y={y}, x={x}"
            )

    def _show_neurons(self, view: View, maps: list[np.ndarray]) -> None:
        names = [f"c{c}" for c in view.channels]
        how = "against the rest of its layer" if view.neuron_mode == "neuron" else "conditional"
        if len(maps) == 2:
            a, b = maps
            self.neuron_view.set_maps(
                [a, b, a - b], [f"A: {names[0]}", f"B: {names[1]}", "A − B"], ["", "", "signed"]
            )
            stats = compare(a, b)
            self.neuron_view.caption = (
                f"{names[0]} vs {names[1]} ({how}): correlation {stats['correlation']:+.2f}, "
                f"overlap of positive parts {stats['overlap']:.2f}"
            )
        else:
            self.neuron_view.set_maps(maps, [f"{n} ({how})" for n in names])
            self.neuron_view.caption = (
                f"{names[0]} of {view.layer}, {how}; click a second bar to compare"
                if maps
                else "click a neuron bar, a thumbnail or a listed neuron to see its map"
            )
        self.neuron_view.title = f"neurons of {view.layer}"

    def _show_thumbs(self, view: View, top: list[int], maps: dict[int, np.ndarray]) -> None:
        if not self._changed("thumbs", (view.decision(), tuple(top))):
            return
        stack = downsample(np.stack([maps[c] for c in top]), 64)
        image = downsample(self._image.transpose(2, 0, 1).astype(np.float32), 64)
        self.thumbs.title = f"top {len(top)} channels of {view.layer}: conditional maps"
        self.thumbs.set_maps(
            image.transpose(1, 2, 0).round().astype(np.uint8), stack, top, [f"c{c}" for c in top]
        )
        self.thumbs.state = {"layer": view.layer, "map_version": self.map_version}

    # ----------------------------------------------------------------------------------- export
    def save_netcdf(self, path: str | Path) -> Path:
        """Save the neuron panel's result tree (DESIGN §3) as netCDF; reopen with ``open_tree``."""
        path = Path(path)
        self.session.tree(self.view).to_netcdf(path)
        return path

    def save_png(self, path: str | Path) -> Path:
        """Save the decision map over the image (and the selected neurons' maps) as one PNG."""
        path = Path(path)
        view = self.view
        image = self._image if self.heatmap.show_image else None
        mode, opacity = self.heatmap.mode, self.heatmap.opacity
        maps = self.session.channel_maps(view)
        panels = [
            render_rgb(m, image, mode, opacity) for m in [self.session.decision_map(view), *maps]
        ]
        if len(maps) == 2:
            panels.append(render_rgb(maps[0] - maps[1], None, "signed"))
        Image.fromarray(side_by_side(panels)).save(path)
        return path

    def _export(self, save: Any, suffix: str) -> None:
        try:
            path = save(Path(self.export_name.value).with_suffix(suffix))
            self.status.value = f"saved {path.resolve()}"
        except Exception as exc:  # shown to the user, who can fix the path
            self.status.value = f"could not save: {exc}"


def _atlas_panel(explainer: Any, store: Any, data: Any, x: Any) -> Any:
    """The neuron atlas panel of ``Explorer(..., atlas=store, data=data)``."""
    from clrp_widgets.widgets.atlas import AtlasPanel

    if data is None:
        raise ConfigError(
            "atlas needs data: pass data= with the images and targets the store was written "
            "from (the same argument as cw.scale.explain_dataset's)"
        )
    return AtlasPanel(explainer, store, data, x)


def demo(seed: int = 0, **kwargs: Any) -> Explorer:
    """The Explorer on the shipped "shapes" model and a generated two-object scene (offline)."""
    from clrp_widgets.models.loaders import load_model
    from clrp_widgets.models.scenes import scenes

    bundle = load_model("shapes")
    images = scenes(1, seed=seed, min_objects=2, max_objects=2).tensor()
    return Explorer(bundle, images[0], **kwargs)
