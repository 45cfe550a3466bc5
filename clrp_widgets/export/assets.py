"""The JavaScript an exported notebook inlines, so its widgets render with no network at all.

Three parts, in page order:

1. require.js, vendored from npm ``requirejs`` by ``npm run build`` into ``static/vendor/``.
2. The AMD bundle of every non-base widget module in the saved widget state (``bqplot``,
   ``bqscales``, ``anywidget``, ...), read from ``share/jupyter/nbextensions/<module>/index.js``
   and wrapped so that its anonymous ``define(...)`` registers under the module's name.
3. ``@jupyter-widgets/html-manager``'s ``embed-amd.js`` (vendored too), whose icon-font URLs
   become data URLs.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_path

from clrp_widgets.engine.errors import ConfigError

VENDOR_DIR = Path(__file__).resolve().parents[1] / "static" / "vendor"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
BASE_MODULE_PREFIX = "@jupyter-widgets/"

_SOURCE_MAP_COMMENT = re.compile(r"^//# sourceMappingURL=\S+;?[ \t]*$", re.MULTILINE)
# webpack's asset modules: ``n.p+"<hash>.woff2"`` (public path + file name)
_WEBPACK_ASSET = re.compile(r'\b[A-Za-z_$][\w$]*\.p\+"([0-9a-f]{20}\.(?:woff2|woff|ttf|eot|svg))"')
_FONT_MIME = {"woff2": "font/woff2"}
_BUILD_HINT = "run `npm install && npm run build` in the clrp-widgets checkout (or reinstall it)"


def script_safe(code: str) -> str:
    """Make JavaScript safe to place between ``<script>`` tags (no early end, no comment state)."""
    code = re.sub(r"</(script)", r"\\x3C/\1", code, flags=re.IGNORECASE)
    return code.replace("<!--", "\\x3C!--")


def _read_vendor(relative: str) -> str:
    path = VENDOR_DIR / relative
    if not path.is_file():
        raise ConfigError(f"The offline export needs {path}, which is missing: {_BUILD_HINT}.")
    return path.read_text(encoding="utf-8")


def require_js() -> str:
    """Vendored require.js, ready to inline."""
    return script_safe(_read_vendor("require.js"))


def html_manager_js() -> str:
    """Vendored ``embed-amd.js`` with its icon fonts as data URLs and no source-map comments.

    The woff2 fonts are inlined; the legacy formats listed after them in the same
    ``@font-face`` rule (woff, ttf, eot, svg) become empty data URLs, since every browser that
    runs the html-manager picks woff2 first. Either way nothing is fetched.
    """
    code = _read_vendor("html-manager/embed-amd.js")

    def to_data_url(match: re.Match[str]) -> str:
        name = match.group(1)
        extension = name.rsplit(".", 1)[1]
        font = VENDOR_DIR / "html-manager" / name
        if extension not in _FONT_MIME or not font.is_file():
            return '"data:,"'
        payload = base64.b64encode(font.read_bytes()).decode("ascii")
        return json.dumps(f"data:{_FONT_MIME[extension]};base64,{payload}")

    code = _WEBPACK_ASSET.sub(to_data_url, code)
    return script_safe(_SOURCE_MAP_COMMENT.sub("", code))


def widget_modules(metadata: Mapping[str, Any]) -> list[str]:
    """Names of the non-base widget modules that a notebook's saved widget state uses."""
    state = metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    modules = set()
    for model in state.values():
        modules.add(model.get("model_module", ""))
        modules.add(model.get("state", {}).get("_view_module") or "")
    return sorted(m for m in modules if m and not m.startswith(BASE_MODULE_PREFIX))


def find_nbextension(module: str) -> Path:
    """The AMD bundle ``nbextensions/<module>/index.js`` that the module's pip package installs."""
    for root in jupyter_path("nbextensions"):
        candidate = Path(root) / module / "index.js"
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"The notebook's widgets use the front-end module {module!r}, but no "
        f"nbextensions/{module}/index.js was found in {jupyter_path('nbextensions')}: install "
        f"the Python package that provides {module!r} into this environment."
    )


def named_amd_module(module: str, code: str) -> str:
    """Wrap an AMD bundle so that its anonymous ``define(...)`` registers as ``module``."""
    name = json.dumps(module)
    return (
        "(function () {\n"
        "  var define = function () {\n"
        "    var args = Array.prototype.slice.call(arguments);\n"
        f"    if (typeof args[0] !== 'string') args.unshift({name});\n"
        "    return window.define.apply(this, args);\n"
        "  };\n"
        "  define.amd = window.define.amd;\n"
        f"{script_safe(_SOURCE_MAP_COMMENT.sub('', code))}\n"
        "})();"
    )


def widget_module_scripts(metadata: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(module name, wrapped AMD bundle)`` for every non-base module in the widget state."""
    return [
        (module, named_amd_module(module, find_nbextension(module).read_text(encoding="utf-8")))
        for module in widget_modules(metadata)
    ]
