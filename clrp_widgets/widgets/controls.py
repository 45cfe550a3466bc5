"""The Explorer's controls: its pickers, class search, top-k box, status line, progress bar,
cancel, export and upload buttons (a part composed into ``Explorer``).

The controls decide nothing. A user's pick goes to ``on_pick(name, value)`` (the Explorer runs
it through the state machine, ``state.py``), and :meth:`Controls.show` brings every picker to the
state the Explorer holds without echoing that back as a pick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import ipywidgets as w

NEURON_MODES = [("conditional (decision)", "decision"), ("neuron vs its layer", "neuron")]
STYLE = {"description_width": "70px"}
WIDE = {"width": "auto", "max_width": "330px"}


class Controls:
    """The pickers and buttons of the Explorer's header.

    Parameters
    ----------
    contrasts : sequence of (label, value)
        The contrast picker's options.
    rules : sequence of str
        The rules picker's options.
    top_k : int
        The top-k box's first value.
    on_pick : callable
        ``on_pick(name, value)`` for a user's pick: ``name`` is a view setting (``target``,
        ``contrast``, ``class_b``, ``rules``, ``layer``, ``neuron_mode``) or ``top_k``.
    on_cancel, on_export, on_upload : callable
        The cancel button; ``on_export(".nc" or ".png", name)`` for the save buttons;
        ``on_upload(file_name, content)`` with the uploaded file's bytes.
    """

    def __init__(
        self,
        contrasts: Sequence[tuple[str, str]],
        rules: Sequence[str],
        top_k: int,
        *,
        on_pick: Callable[[str, Any], None],
        on_cancel: Callable[[], None],
        on_export: Callable[[str, str], None],
        on_upload: Callable[[str, bytes], None],
    ) -> None:
        self._on_pick, self._on_upload = on_pick, on_upload
        self._quiet = False
        self.search_index: dict[str, int] = {}
        self.top_k_picker = w.BoundedIntText(
            value=top_k, min=1, max=50, description="top-k", style=STYLE, layout={"width": "150px"}
        )
        self.class_search = w.Combobox(
            placeholder="search a class…",
            ensure_option=True,
            description="find",
            style=STYLE,
            layout=WIDE,
        )
        self.class_search.observe(self._searched, names="value")
        self.target_picker = w.Dropdown(description="target", style=STYLE, layout=WIDE)
        self.contrast_picker = w.Dropdown(
            options=list(contrasts), description="contrast", style=STYLE, layout=WIDE
        )
        self.class_b_picker = w.Dropdown(description="class B", style=STYLE, layout=WIDE)
        self.rules_picker = w.Dropdown(options=list(rules), description="rules", style=STYLE)
        self.layer_picker = w.Dropdown(description="layer", style=STYLE)
        self.mode_picker = w.ToggleButtons(options=NEURON_MODES)
        for picker, name in [
            (self.top_k_picker, "top_k"),
            (self.target_picker, "target"),
            (self.contrast_picker, "contrast"),
            (self.class_b_picker, "class_b"),
            (self.rules_picker, "rules"),
            (self.layer_picker, "layer"),
            (self.mode_picker, "neuron_mode"),
        ]:
            picker.observe(lambda ch, name=name: self._pick(name, ch["new"]), names="value")
        self.note = w.Label(value="")
        self.status = w.Label(value="")
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout={"width": "160px"})
        self.cancel_button = w.Button(
            description="cancel", icon="stop", tooltip="stop the current computation"
        )
        self.cancel_button.on_click(lambda _: on_cancel())
        self.export_name = w.Text(value="clrp_explorer", description="save as", style=STYLE)
        self.netcdf_button = w.Button(description="save netCDF on server…", icon="save")
        self.png_button = w.Button(description="save PNG on server…", icon="image")
        self.netcdf_button.on_click(lambda _: on_export(".nc", self.export_name.value))
        self.png_button.on_click(lambda _: on_export(".png", self.export_name.value))
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="explain my image")
        self.upload.observe(self._uploaded, names="value")
        for widget, name in [
            (self.cancel_button, "clrp-cancel"),
            (self.progress, "clrp-progress"),
            (self.note, "clrp-note"),
            (self.upload, "clrp-upload"),
        ]:
            widget.add_class(name)  # stable hooks for styling and browser tests

    def box(self) -> w.VBox:
        """The header's column of controls."""
        return w.VBox(
            [
                w.HBox([self.class_search, self.top_k_picker]),
                self.target_picker,
                self.contrast_picker,
                self.class_b_picker,
                self.note,
                self.rules_picker,
                w.HBox([self.progress, self.cancel_button]),
                self.status,
                w.HBox([self.export_name]),
                w.HBox([self.netcdf_button, self.png_button]),
            ]
        )

    # ---------------------------------------------------------------------------------- options
    @property
    def has_classes(self) -> bool:
        """Whether the class pickers have their options."""
        return bool(self.target_picker.options)

    def fill_classes(self, class_names: Sequence[str]) -> None:
        """The class pickers' and the search's options, labelled ``name (index)``."""
        classes = [(class_label(class_names, i), i) for i in range(len(class_names))]
        self.search_index = {label: i for label, i in classes}
        with self._quietly():
            self.target_picker.options = classes
            self.class_b_picker.options = classes
            self.class_search.options = [label for label, _ in classes]
            self.class_search.placeholder = f"search {len(classes)} classes…"

    def fill_layers(self, layers: Sequence[tuple[str, str]]) -> None:
        """The layer picker's (label, name) options."""
        with self._quietly():
            self.layer_picker.options = list(layers)

    # ------------------------------------------------------------------------------------ state
    def show(self, state: Mapping[str, Any], class_names: Sequence[str]) -> None:
        """Bring every picker to ``state`` (the Explorer's traits), without a pick."""
        with self._quietly():
            if state["target"] >= 0:
                self.target_picker.value = state["target"]
                self.class_search.value = class_label(class_names, state["target"])
            if state["class_b"] >= 0:
                self.class_b_picker.value = state["class_b"]
            self.contrast_picker.value = state["contrast"]
            pairwise = state["contrast"] == "pairwise"
            self.class_b_picker.layout.display = None if pairwise else "none"
            self.rules_picker.value = state["rules"]
            if state["layer"] in {v for _, v in self.layer_picker.options}:
                self.layer_picker.value = state["layer"]
            self.mode_picker.value = state["neuron_mode"]
            self.top_k_picker.value = state["top_k"]

    def show_busy(self, busy: bool, failed: bool) -> None:
        """Busy: the cancel button on and "computing…"; idle: the progress bar emptied."""
        self.cancel_button.disabled = not busy
        if busy:
            self.status.value = "computing…"
            self.progress.bar_style = ""
            return
        self.progress.value = 0.0
        if not failed and self.status.value.startswith("computing"):
            self.status.value = ""

    def show_stage(self, stage: str, done: float) -> None:
        """What the worker computes now and how far the request is (0 to 1)."""
        self.progress.value = done
        self.status.value = f"computing: {stage}…"

    def show_error(self, message: str) -> None:
        """A failed request: said in the status line, the progress bar red."""
        self.status.value = f"error: {message}"
        self.progress.bar_style = "danger"

    # ----------------------------------------------------------------------------------- events
    def _pick(self, name: str, value: Any) -> None:
        if not self._quiet:
            self._on_pick(name, value)

    def _searched(self, change: dict) -> None:
        index = self.search_index.get(change["new"])
        if index is not None:
            self._pick("target", index)

    def _uploaded(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        item = files[-1]
        name = str(item.get("name", "upload")) if isinstance(item, dict) else "upload"
        try:
            content = item["content"] if isinstance(item, dict) else item.content
            data = bytes(content)
        except Exception as exc:  # a front end's odd message: say why it cannot be used
            self.status.value = f"could not use {name}: {exc}"
            return
        self._on_upload(name, data)

    @contextmanager
    def _quietly(self) -> Iterator[None]:
        """Within it, picker changes are not picks (the pickers are being set from the state)."""
        was, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = was


def class_label(class_names: Sequence[str], c: int) -> str:
    """A class as the pickers show it: ``name (index)``."""
    return f"{class_names[c]} ({c})"
