"""The Explorer's results and files: ``result`` (a DataTree), netCDF and PNG (mixed in)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from PIL import Image

from clrp_widgets.engine.errors import InputError
from clrp_widgets.widgets.maps import render_rgb, side_by_side
from clrp_widgets.widgets.session import View


class ExportMixin:
    """``result``, ``save_netcdf``, ``save_png`` and the browser download of the
    :class:`~clrp_widgets.widgets.explorer.Explorer`."""

    # Provided by the Explorer.
    heatmap: Any
    session: Any
    controls: Any
    class_names: list[str]
    map_version: int
    _image: np.ndarray
    _shown_view: View | None
    _state: Callable[[View, int], dict[str, Any]]
    wait: Callable[..., Any]

    if TYPE_CHECKING:

        @property
        def view(self) -> View: ...

    @property
    def result(self) -> xr.DataTree:
        """The view on screen as an ``xarray.DataTree``.

        The neuron panel's result tree (DESIGN §3: ``logits``, ``probs``, ``/input``,
        ``/layers/<layer>``) of the shown image, target, contrast and layer, plus a ``/view``
        node: ``decision_map`` (y, x), the header's map (a baseline's when one is shown),
        ``channel_maps`` (channel, y, x) of the selected channels as the neuron panel shows
        them, and the view's state as attributes (``target``, ``target_name``, ``contrast``,
        ``class_b``, ``rules``, ``layer``, ``channels``, ``pixel``, ``neuron_mode``, ``image``).
        Waits for the shown view to be finished.
        """
        self.wait()
        view = self._shown_view
        if view is None:
            raise InputError("the Explorer shows no view yet: wait() for it")
        tree = self.session.tree(view).copy(deep=True)
        maps = self.session.channel_maps(view)
        h, w_ = self._image.shape[:2]
        state = {
            k: (list(v) if isinstance(v, (tuple, list)) else v)
            for k, v in self._state(view, self.map_version).items()
            if k not in ("stage", "error", "map_version")
        }
        state["pixel"] = list(view.pixel) if view.pixel else []
        stack = np.stack(maps) if maps else np.zeros((0, h, w_), np.float32)
        node = xr.Dataset(
            {
                "decision_map": (("y", "x"), self.session.decision_map(view)),
                "channel_maps": (("channel", "y", "x"), stack),
            },
            coords={"channel": list(view.channels)},
            attrs={k: (np.asarray(v) if isinstance(v, list) else v) for k, v in state.items()},
        )
        tree["view"] = xr.DataTree(node)
        return tree

    # ----------------------------------------------------------------------------------- export
    def _netcdf_download(self) -> tuple[str, bytes]:
        view = self._shown_view
        if view is None:
            raise InputError("nothing is shown yet")
        with tempfile.TemporaryDirectory() as folder:
            path = self.save_netcdf(Path(folder) / "view.nc")
            data = path.read_bytes()
        name = self.class_names[view.target].replace("/", "_")
        return f"clrp_{name}_{view.contrast}.nc", data

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

    def _export(self, suffix: str, name: str) -> None:
        """A save button: the view as ``name`` with ``suffix`` (".nc" or ".png") on the server."""
        save = self.save_netcdf if suffix == ".nc" else self.save_png
        try:
            path = save(Path(name).with_suffix(suffix))
            self.controls.status.value = f"saved {path.resolve()}"
        except Exception as exc:  # shown to the user, who can fix the path
            self.controls.status.value = f"could not save: {exc}"
