"""``Explorer``: the composed widget (DESIGN §5), and ``demo()``.

Layout: a header (top-k bars, a searchable target picker, contrast / class B / rules pickers,
progress and cancel), the image set's gallery strip with an upload button, the decision heatmap
with the clicked pixel's neuron list, and the neuron panel (layer picker, neuron bars, the selected
neurons' maps side by side with their difference, and a thumbnail grid).

The Explorer displays at once: the model is built, the image predicted and every map computed by
a background worker that fills the widgets in as results arrive (last request wins, see
``runner.py``). Every front-end event only records the new state and submits a request; a newer
request stops an older one at its next tensor operation (``engine/interrupt.py``), and so does
the cancel button. From Python, use :meth:`Explorer.select`, which waits for the result, or
set the traits and call :meth:`wait`. :attr:`Explorer.result` is the view on screen as a DataTree.

The parts: the traits hold the state and every request goes through the state machine
(``state.next_view``, which holds every reset rule); ``Controls`` (``controls.py``) are the
pickers and buttons, which only report picks; the ``Pipeline`` (``pipeline.py``) computes a view
in the worker and hands each finished part to ``Job.publish``, the only place that writes synced
state, where the panels (``panels.py``) draw it.

Every request carries the view it was made for (layer included): clicks on neuron bars,
thumbnails or listed neurons of a layer that is no longer shown are ignored, channels are checked
against the layer, and a failed request is shown in the widget and leaves the state of the last
view that worked, so it never poisons the next one.

DOM hooks (for styling and browser tests): the parts carry the classes ``clrp-top5``,
``clrp-main-map``, ``clrp-neuron-view``, ``clrp-neuron-bars``, ``clrp-thumbnails``,
``clrp-gallery``, ``clrp-upload``, ``clrp-note``, ``clrp-cancel`` and ``clrp-progress``; the canvas
widgets set ``data-ready="1"``
once drawn and mirror the shown state (``state``: target, contrast, class_b, rules, layer,
channels, pixel, neuron_mode, image, map_version, stage, error).
"""

from __future__ import annotations

import io
import weakref
from pathlib import Path
from typing import Any

import ipywidgets as w
import numpy as np
import traitlets as t
from PIL import Image

from clrp_widgets.engine.errors import ConfigError, InputError
from clrp_widgets.engine.presets import PRESETS
from clrp_widgets.widgets.charts import NeuronBarsChart, TopClassesChart
from clrp_widgets.widgets.controls import Controls
from clrp_widgets.widgets.exports import ExportMixin
from clrp_widgets.widgets.gallery import GalleryStrip, png_thumbnail
from clrp_widgets.widgets.heatmap import HeatmapView
from clrp_widgets.widgets.labels import CONTRASTS, UnitNames
from clrp_widgets.widgets.maps import display_image
from clrp_widgets.widgets.panels import PanelsMixin
from clrp_widgets.widgets.pipeline import THUMBNAILS, Pipeline
from clrp_widgets.widgets.runner import LatestRunner
from clrp_widgets.widgets.session import ExplainSession, View
from clrp_widgets.widgets.sources import as_input, explainers, image_set, layer_type
from clrp_widgets.widgets.state import VIEW_KEYS, Choices, check_choice, next_view, toggled
from clrp_widgets.widgets.thumbnails import ThumbnailGrid

__all__ = ["CONTRASTS", "RULES", "THUMBNAILS", "Explorer", "demo", "wait_for_explorers"]

RULES = [p for p in PRESETS if p != "lrp0"]  # lrp0 is the autograd oracle, not for maps
SIGNED_BY_DEFAULT = {"gradient", "gradient_x_input", "deconvnet", "guided_backprop"}
_LIVE: weakref.WeakSet[Explorer] = weakref.WeakSet()


def wait_for_explorers(timeout: float = 600.0, resend: bool = True) -> None:
    """Block until every Explorer of this kernel is idle (used by the HTML exporter).

    With ``resend``, every widget of the kernel then sends its whole state once more, so a
    front end that missed updates sent between two cells (nbclient keeps only the messages of
    the running cell) ends up with the finished views.
    """
    for explorer in list(_LIVE):
        explorer._runner.wait(timeout)
    if resend:
        from ipywidgets.widgets.widget import _instances

        for widget in list(_instances.values()):
            if widget.comm is not None:
                widget.send_state()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Explorer(PanelsMixin, ExportMixin, w.VBox):
    """Interactive CLRP explorer for an image or a set of images.

    Parameters
    ----------
    bundle_or_explainer : ModelBundle, Explainer or torch.nn.Module
        The model to explain (``cw.load_model(...)``, a ``cw.Explainer`` or a plain module).
    images : image or image set
        One image (tensor (C, H, W) or (1, C, H, W), numpy array, DataArray or PIL image) or a
        set to page through: a batch tensor (N, C, H, W), ``cw.scenes(...)``, an xarray
        DataArray with a ``sample`` axis or a Dataset with ``images`` and ``labels``, a folder
        of image files, or a list of images. PIL images and files go through the bundle's
        ``preprocess``.
    target : int or str, optional
        The class to explain; default: the most probable one (of each image, when paging).
    contrast : str
        "lrp", "clrp1", "clrp2", "sglrp", "pairwise" (with ``class_b``), "gradient",
        "gradient_x_input", "deconvnet", "guided_backprop" or "gradcam".
    class_b : int or str, optional
        Class B of the "rather than class B" contrast (never the target); default: the most
        probable other class.
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
    top_k : int
        How many classes the prediction chart shows (change it with its "top-k" box).
    image : int
        Which image of the set to show first.
    atlas : str or pathlib.Path, optional
        A ``cw.scale.explain_dataset`` store: the neuron atlas panel (``widgets/atlas.py``)
        shows the selected neuron's reference samples and sub-neurons. Needs ``data``.
    data : optional
        The data that store was written from.

    Notes
    -----
    The traits ``target``, ``contrast``, ``class_b``, ``rules``, ``layer``, ``channels``
    (up to two selected channels), ``pixel`` ([y, x] or []), ``neuron_mode`` ("decision" or
    "neuron") and ``image`` (index in the set) hold the state; ``map_version`` counts the map
    updates shown, ``busy`` and ``stage`` say what the worker does, ``error`` the last failure.
    :attr:`result` is the view on screen as an ``xarray.DataTree``.
    """

    target = t.Int(-1)
    contrast = t.Unicode("clrp1")
    class_b = t.Int(-1)
    rules = t.Unicode("paper")
    layer = t.Unicode("")
    channels = t.List(t.Int())
    pixel = t.List(t.Int())
    neuron_mode = t.Unicode("decision")
    image = t.Int(0)
    top_k = t.Int(5)
    map_version = t.Int(0)
    busy = t.Bool(False)
    stage = t.Unicode("")
    error = t.Unicode("")

    def __init__(
        self,
        bundle_or_explainer: Any,
        images: Any,
        *,
        target: int | str | None = None,
        contrast: str = "clrp1",
        class_b: int | str | None = None,
        rules: str | None = None,
        layer: str | None = None,
        display_size: int = 256,
        dataset_stats: Any = None,
        top_k: int = 5,
        image: int = 0,
        atlas: Any = None,
        data: Any = None,
    ) -> None:
        make, built, rules, bundle = explainers(bundle_or_explainer, rules)
        self.bundle = bundle
        self.images = image_set(images, bundle)
        if not 0 <= image < len(self.images.xs):
            raise ConfigError(f"image {image} is out of range; use 0..{len(self.images.xs) - 1}")
        self.rules_options = RULES if rules in RULES else [rules, *RULES]
        check_choice(contrast, [v for _, v in CONTRASTS], "contrast")
        check_choice(rules, self.rules_options, "rules")
        self.session = ExplainSession(make, self.images.xs, built)
        source = next(iter(built.values()), bundle)
        names = getattr(source, "class_names", None)
        self.class_names: list[str] = [str(n) for n in names] if names else []
        self._bounds = getattr(source, "input_bounds", None)
        self._independent = getattr(source, "output_activation", "softmax") == "sigmoid"
        self.layer_names: list[str] = []
        self._layer_types: dict[str, str] = {}
        self._asked = {"target": target, "class_b": class_b}
        self._image = self._display(image)
        self.dataset_stats = dataset_stats
        self._shown: dict[Any, Any] = {}
        self._shown_view: View | None = None
        self._units: dict[str, UnitNames] = {}
        self._thumbs_layer: str | None = None
        self._pixel_layer: str | None = None
        self._layer_shown: tuple[View, Any] | None = None  # the decision and its layer node
        self._updating = False
        self._failure: Exception | None = None
        self.controls = Controls(
            CONTRASTS,
            self.rules_options,
            top_k,
            on_pick=self._picked,
            on_cancel=self.cancel,
            on_export=self._export,
            on_upload=self._uploaded,
        )
        self._build(display_size, top_k)
        # --- neuron atlas hook (the panel lives in widgets/atlas.py)
        self.atlas = None
        if atlas is not None:
            ex = self.session.explainer(rules)
            self.atlas = _atlas_panel(ex, atlas, data, self.images.xs[image], self.session.lock)
        atlas_part = [] if self.atlas is None else [self.atlas]
        # --- end of the neuron atlas hook
        super().__init__(children=[*self._layout(), *atlas_part])
        self.add_class("clrp-explorer")
        with self.hold_trait_notifications():
            self.set_trait("rules", rules)
            self.set_trait("contrast", contrast)
            self.set_trait("image", image)
            self.set_trait("top_k", top_k)
            if self.class_names:
                self.controls.fill_classes(self.class_names)
                self._set_classes(target, class_b)
        self.heatmap.mode = "signed" if contrast in SIGNED_BY_DEFAULT else "positive"
        self._sync_pickers()
        self.observe(self._on_trait, names=list(VIEW_KEYS))
        self.observe(lambda _: self._show_top(), names="top_k")
        self.pipeline = Pipeline(self.session, self, layer)
        self._runner = LatestRunner(self._set_busy, self._show_error)
        _LIVE.add(self)
        self._submit()

    def _set_classes(self, target: Any, class_b: Any) -> None:
        """Check the constructor's target and class B as soon as the class names are known."""
        if target is not None:
            self.set_trait("target", self._class_index(target))
        if class_b is not None:
            self.set_trait("class_b", self._class_index(class_b))
        if target is not None and class_b is not None and self.target == self.class_b:
            raise ConfigError(
                f"class B must differ from the target ({self.class_names[self.target]}); "
                "pick another class_b"
            )

    def _display(self, index: int) -> np.ndarray:
        return display_image(self.images.xs[index][0].numpy(), self._bounds)

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
            image=self.image,
        )

    def select(self, timeout: float | None = 120.0, **state: Any) -> Explorer:
        """Set several state traits at once, e.g. ``select(target=2, channels=[5, 9])``, and wait.

        Class names work for ``target`` and ``class_b``. Returns the Explorer (it displays
        itself). Raises the error of the request, if it failed (the widget keeps the last view
        that worked).
        """
        unknown = set(state) - set(VIEW_KEYS)
        if unknown:
            raise ConfigError(f"unknown state {sorted(unknown)}; choose from {list(VIEW_KEYS)}")
        if not self._runner.wait(timeout):  # the model and class names are known from here on
            raise TimeoutError(f"the Explorer did not finish within {timeout} s")
        for key in ("target", "class_b"):
            if key in state:
                state[key] = self._class_index(state[key])
        if state.get("class_b", -2) == state.get("target", self.target):
            raise ConfigError(
                f"class B must differ from the target ({self.class_names[self.target]}); "
                "pick another class_b"
            )
        self._update(**state)
        self.wait(timeout)
        return self

    def wait(self, timeout: float | None = 120.0) -> Explorer:
        """Block until the widgets show the newest state; raises the error it ended with."""
        if not self._runner.wait(timeout):
            raise TimeoutError(f"the Explorer did not finish within {timeout} s")
        if self._failure is not None:
            raise self._failure
        return self

    def cancel(self) -> None:
        """Stop the current computation; the widgets keep the last view they finished."""
        if self._runner.cancel():
            self._revert()
            self.controls.status.value = "cancelled: showing the last finished view"

    def _update(self, **request: Any) -> None:
        """Apply a request through the state machine (:func:`.state.next_view`), then compute."""
        step = next_view(self._current(), request, self._choices())
        self.controls.note.value = step.note
        if step.refused_b:
            self._sync_pickers()
        state = step.changes
        if not state:
            return
        if state.get("contrast", self.contrast) != self.contrast:
            self.heatmap.mode = "signed" if state["contrast"] in SIGNED_BY_DEFAULT else "positive"
        self._set_state(state)
        self._sync_pickers()
        self._submit()

    def _current(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in VIEW_KEYS}

    def _choices(self) -> Choices:
        return Choices(
            contrasts=[v for _, v in CONTRASTS],
            rules=self.rules_options,
            layers=self.layer_names,
            n_images=len(self.images.xs),
            class_names=self.class_names,
            n_units=self._n_units,
            probs=self.session.cached_probs(self.rules, self.image),
        )

    def _set_state(self, state: dict[str, Any]) -> None:
        self._updating = True
        try:
            with self.hold_trait_notifications():
                for key, value in state.items():
                    setattr(self, key, list(value) if key in ("channels", "pixel") else value)
        finally:
            self._updating = False

    def _on_trait(self, change: dict) -> None:
        if self._updating:
            return
        name, new = change["name"], change["new"]
        self._set_state({name: change["old"]})  # validated and applied like a picker change
        try:
            self._update(**{name: new})
        except ConfigError as exc:  # shown in the widget, the state left as it was
            self._complain(exc)

    def _class_index(self, value: Any) -> int:
        if isinstance(value, str):
            if value not in self.class_names:
                raise ConfigError(f"unknown class {value!r}; choose from {self.class_names}")
            return self.class_names.index(value)
        if not 0 <= int(value) < len(self.class_names):
            raise ConfigError(
                f"class index {value} is out of range; use 0..{len(self.class_names) - 1}"
            )
        return int(value)

    def _n_units(self, layer: str) -> int | None:
        """Units of ``layer`` if its tree has been computed (never computes)."""
        return self._shown.get(("units", layer))

    def toggle_channel(self, channel: int, layer: str | None = None) -> None:
        """Select a channel (keeping at most the last two); a selected one is deselected.

        ``layer`` is the layer the click was made on: a click on a layer that is no longer
        shown is ignored.
        """
        if layer is not None and layer != self.layer:
            return
        try:
            self._update(channels=toggled(self.channels, channel))
        except ConfigError as exc:
            self._complain(exc)

    # ---------------------------------------------------------------------------------- widgets
    def _build(self, display_size: int, top_k: int) -> None:
        self.top5 = TopClassesChart(k=top_k)
        self.top5.on_click(lambda c: self._picked("target", c))
        self.gallery = GalleryStrip(lambda i: png_thumbnail(self._display(i)))
        self.gallery.set_images(self.images.labels, self.image)
        self.gallery.on_select(lambda i: self._picked("image", i))

        self.heatmap = HeatmapView(display_size=display_size, pixel_clicks=True)
        self.heatmap.set_image(self._image)
        self.heatmap.set_maps([], ["computing…"])
        self.heatmap.on_pixel(lambda y, x: self._picked("pixel", [y, x]))
        self.heatmap.on_msg(self._heatmap_event)
        self.heatmap.on_download("netcdf", self._netcdf_download)
        self.neuron_view = HeatmapView(display_size=int(display_size * 0.6), show_toolbar=False)
        self.neuron_view.set_image(self._image)
        self.neuron_view.on_msg(self._heatmap_event)
        self.heatmap.observe(
            self._follow_display, names=["mode", "opacity", "show_image", "image_colour"]
        )
        self.bars = NeuronBarsChart()
        self.bars.on_click(self.toggle_channel)
        self.thumbs = ThumbnailGrid()
        self.thumbs.on_msg(self._thumb_event)

    def _layout(self) -> list[w.Widget]:
        for widget, name in [
            (self.top5.figure, "clrp-top5"),
            (self.bars.figure, "clrp-neuron-bars"),
            (self.heatmap, "clrp-main-map"),
            (self.neuron_view, "clrp-neuron-view"),
            (self.thumbs, "clrp-thumbnails"),
        ]:
            widget.add_class(name)  # stable hooks for styling and browser tests
        header = w.HBox([self.top5.figure, self.controls.box()])
        self.heatmap.layout.min_width = f"{min(self.heatmap.display_size + 40, 340)}px"
        self.neuron_view.layout.margin = "0 0 0 24px"
        maps = w.HBox([self.heatmap, self.neuron_view])
        images = w.HBox([self.gallery, self.controls.upload])
        layer = w.HBox([self.controls.layer_picker, self.controls.mode_picker])
        return [header, images, maps, layer, self.bars.figure, self.thumbs]

    def _picked(self, name: str, value: Any) -> None:
        """A user's pick (a picker, a bar, a thumbnail, the gallery): through the state machine;
        a refused one is said and the pickers show the state again."""
        if name == "top_k":
            self.top_k = value
            return
        if getattr(self, name) == value or value is None:
            return
        try:
            self._update(**{name: value})
        except ConfigError as exc:
            self._complain(exc)
            self._sync_pickers()

    def _sync_pickers(self) -> None:
        self.controls.show({**self._current(), "top_k": self.top_k}, self.class_names)
        if self.gallery.selected != self.image:
            self.gallery.select(self.image)

    def _follow_display(self, change: dict) -> None:
        setattr(self.neuron_view, change["name"], change["new"])
        if change["name"] == "mode":
            self.thumbs.mode = change["new"]

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for widget in (self.heatmap, self.neuron_view, self.thumbs):
            widget.busy = busy
        self.controls.show_busy(busy, failed=bool(self.error))
        if not busy:
            self.stage = ""
            if self.heatmap.state.get("stage"):
                self.heatmap.state = {**self.heatmap.state, "stage": ""}

    def _complain(self, exc: Exception) -> None:
        """A refused front-end request: said in the widget, nothing changed."""
        self.error = f"{type(exc).__name__}: {exc}"
        self.controls.status.value = f"not done: {exc}"

    def _show_error(self, exc: Exception) -> None:
        """A failed request (from the worker): shown, and the state goes back to the shown view."""
        self._failure = exc
        self.error = f"{type(exc).__name__}: {exc}"
        self.controls.show_error(self.error)
        self._revert()
        self.heatmap.state = {**self.heatmap.state, "error": self.error}

    def _revert(self) -> None:
        """Bring the state traits and pickers back to the view the widgets show."""
        shown = self._shown_view
        if shown is None:
            return
        self._set_state(
            {
                "target": shown.target,
                "contrast": shown.contrast,
                "class_b": shown.class_b,
                "rules": shown.rules,
                "layer": shown.layer,
                "channels": list(shown.channels),
                "pixel": list(shown.pixel) if shown.pixel else [],
                "neuron_mode": shown.neuron_mode,
                "image": shown.image,
            }
        )
        self._sync_pickers()

    # ------------------------------------------------------------------------- front-end events
    def _heatmap_event(self, _: Any, content: Any, buffers: Any) -> None:
        """Events of the map views: listed-neuron clicks (with their layer) and paging keys."""
        if not isinstance(content, dict):
            return
        event = content.get("event")
        if event == "neuron":
            channel, layer = _int(content.get("channel")), content.get("layer", self._pixel_layer)
            listed = {n.get("channel") for n in self.heatmap.pixel_neurons}
            if channel is not None and channel in listed and layer == self._pixel_layer:
                self.toggle_channel(channel, layer=layer)
        elif event == "page":
            step = _int(content.get("step"))
            if step in (-1, 1) and len(self.images.xs) > 1:
                self._picked("image", (self.image + step) % len(self.images.xs))

    def _thumb_event(self, _: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("event") != "thumb":
            return
        channel = _int(content.get("channel"))
        layer = content.get("layer", self._thumbs_layer)
        if channel is not None and channel in self.thumbs.channels and layer == self._thumbs_layer:
            self.toggle_channel(channel, layer=layer)

    def _uploaded(self, name: str, content: bytes) -> None:
        """An uploaded image file joins the set and is shown (a file that cannot be is said)."""
        try:
            with Image.open(io.BytesIO(content)) as img:
                x = as_input(img.convert("RGB"), self.bundle)
            if self.images.xs and x.shape[1:] != self.images.xs[0].shape[1:]:
                raise InputError(
                    f"{name} became input of shape {tuple(x.shape[1:])}, the model's images are "
                    f"{tuple(self.images.xs[0].shape[1:])}; use a bundle whose preprocess resizes"
                )
        except Exception as exc:  # a user's file: say why it cannot be shown
            self.controls.status.value = f"could not use {name}: {exc}"
            return
        index = self.images.add(x, f"upload: {Path(name).stem}")
        self.gallery.set_images(self.images.labels, self.image)
        self._picked("image", index)

    # --------------------------------------------------------------------------------- requests
    def _submit(self) -> None:
        view = self.view
        self.error, self._failure = "", None
        self._runner.submit(lambda job: self.pipeline.run(view, job))

    # ---------------------------------------------- the pipeline's publish steps (its Screen)
    def _has_classes(self) -> bool:
        return self.controls.has_classes

    def _show_stage(self, stage: str, done: float) -> None:
        self.stage = stage
        self.controls.show_stage(stage, done)
        self.heatmap.state = {**self.heatmap.state, "stage": stage}

    def _adopt_layers(self, ex: Any) -> None:
        """The model's layers (known after its first forward pass) in the layer picker."""
        self.layer_names = list(ex.layer_names)
        self._layer_types = {n: layer_type(ex, n) for n in self.layer_names}
        self.controls.fill_layers([(f"{n} ({self._layer_types[n]})", n) for n in self.layer_names])

    def _adopt_class_names(self, names: list[str]) -> None:
        self.class_names = names

    def _adopt_classes(self) -> None:
        """The class pickers' options, and the constructor's target and class B checked."""
        self.controls.fill_classes(self.class_names)
        self._updating = True
        try:
            self._set_classes(self._asked["target"], self._asked["class_b"])
        finally:
            self._updating = False

    def _adopt_defaults(self, target: int, class_b: int, layer: str) -> None:
        """The view's defaults, resolved once the image is predicted, become the state."""
        self._set_state({"target": target, "class_b": class_b, "layer": layer})
        self._sync_pickers()

    def _set_units(self, layer: str, n_units: int) -> None:
        self._shown[("units", layer)] = n_units


def _atlas_panel(explainer: Any, store: Any, data: Any, x: Any, lock: Any) -> Any:
    """The neuron atlas panel of ``Explorer(..., atlas=store, data=data)``."""
    from clrp_widgets.widgets.atlas import AtlasPanel

    if data is None:
        raise ConfigError(
            "atlas needs data: pass data= with the images and targets the store was written "
            "from (the same argument as cw.scale.explain_dataset's)"
        )
    return AtlasPanel(explainer, store, data, x, lock=lock)


def demo(seed: int = 0, **kwargs: Any) -> Explorer:
    """The Explorer on the shipped "shapes" model and a generated two-object scene (offline)."""
    from clrp_widgets.models.loaders import load_model
    from clrp_widgets.models.scenes import scenes

    bundle = load_model("shapes")
    images = scenes(1, seed=seed, min_objects=2, max_objects=2).tensor()
    return Explorer(bundle, images[0], **kwargs)
