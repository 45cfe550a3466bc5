"""Explorer latency in a real browser: click -> canvas changed, in JupyterLab + Debian chromium.

Run: ``python bench/widgets.py --browser [--models shapes vgg16] [--clicks 7]``. One JupyterLab
(temporary dirs, 127.0.0.1) runs a notebook with one Explorer per model (``bench/widgets.py``'s
models: the shipped "shapes", VGG16 with random weights, both on CPU). Each action is timed in the
page, from the dispatched click (``performance.now()``) to the moment the watched part shows
different pixels (the canvases' data URLs differ) or, for a pixel, a different neuron list:

- ``bar``: a neuron bar whose channel has no thumbnail (its map is not cached: one backward pass
  from the layer, forward cached), a different one each time;
- ``thumbnail``: a thumbnail (its map is cached);
- ``pixel``: a pixel of the main map -> its neuron list;
- ``target``: a top-5 row of a class not explained before -> the new target's main map;
- ``contrast``: the contrast picker (CLRP2, SGLRP, LRP, CLRP1; never the current one) -> the new
  main map (for the target just picked, so it is not cached either).

Plus ``first paint`` (the main map's placeholder on screen) and ``first map`` (its first relevance
map), both from "run all cells" in a fresh kernel: imports and the model's construction included.

Between clicks the kernel is reset (no channels selected) with an untimed kernel request.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))
from conftest import CHROMIUM, CHROMIUM_ARGS, lab  # noqa: E402  (the tests' server recipe)

ACTIONS = ["bar", "thumbnail", "pixel", "target", "contrast"]
SETUP = """
import sys
sys.path.insert(0, {bench!r})
from widgets import _model
from clrp_widgets.widgets.explorer import Explorer
explainer, image, _ = _model({name!r})
explorer = Explorer(explainer, image)
explorer.add_class("bench")
explorer
"""
KERNEL_IDLE = """(path) => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === "idle" && w.context.path === path;
}"""
RUN_IN_KERNEL = """async (code) => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  await k.requestExecute({ code, silent: true }).done;
}"""
# One timed action: dispatch the click, resolve when the watched part shows different content.
TIMED = r"""async ({ action, i }) => {
  const ex = document.querySelector(".bench");
  const q = (s) => ex.querySelector(s);
  const MAIN = ".clrp-main-map .clrp-panels";
  const pixels = (s) => [...ex.querySelectorAll(s + " canvas")].map((c) => c.toDataURL()).join("|");
  const watch = {
    bar: () => pixels(".clrp-neuron-view .clrp-panels"),
    thumbnail: () => pixels(".clrp-neuron-view .clrp-panels"),
    pixel: () => q(".clrp-main-map .clrp-neurons").textContent,
    // a map of an absent class can be blank like the one before: its title changes, though
    target: () => pixels(MAIN) + q(MAIN).textContent,
    contrast: () => pixels(MAIN) + q(MAIN).textContent,
  }[action];
  const click = (el) => el.dispatchEvent(new MouseEvent("click", { bubbles: true }));
  const before = watch();
  const t0 = performance.now();
  if (action === "bar") {
    // a bar whose channel has no thumbnail (its map is not cached), a different one each time
    const thumbs = new Set([...ex.querySelectorAll(".clrp-thumb span")].map((s) => s.textContent));
    const names = [...ex.querySelectorAll(".clrp-neuron-bars .axis .tick text")]
      .map((t) => t.textContent)
      .filter((t) => t && !/^[-−\d.]/.test(t));
    const free = names.map((n, k) => (thumbs.has(n) ? -1 : k)).filter((k) => k >= 0);
    const groups = ex.querySelectorAll(".clrp-neuron-bars .bargroup");
    click(groups[free[i % free.length]].querySelector("rect.bar"));
  } else if (action === "thumbnail") {
    const cells = ex.querySelectorAll(".clrp-thumbnails .clrp-thumb"); // positive channels only
    if (cells.length === 0) return null; // a target with no positive channel: nothing to click
    click(cells[i % cells.length]);
  } else if (action === "pixel") {
    const wrap = q(".clrp-main-map .clrp-canvas-wrap");
    const r = wrap.getBoundingClientRect();
    const f = [0.3, 0.5, 0.7, 0.4, 0.6, 0.35, 0.65][i % 7];
    wrap.dispatchEvent(new MouseEvent("click", {
      bubbles: true, clientX: r.left + r.width * f, clientY: r.top + r.height * (1 - f),
    }));
  } else if (action === "target") {
    const n = ex.querySelectorAll(".clrp-top5 .bargroup").length;
    const rows = ex.querySelectorAll(".clrp-top5 .bargroup");
    click(rows[(1 + i) % n].querySelector("rect.bar")); // a class not explained before
  } else if (action === "contrast") {
    const sel = [...ex.querySelectorAll("select")].find((s) =>
      [...s.options].some((o) => o.textContent.startsWith("CLRP2")));
    const cycle = ["CLRP2", "SGLRP", "LRP", "CLRP1"]; // the current contrast is never picked
    const now = sel.options[sel.selectedIndex].textContent;
    const next = cycle.filter((c) => !now.startsWith(c))[i % 3];
    const want = [...sel.options].find((o) => o.textContent.startsWith(next));
    sel.value = want.value;
    sel.dispatchEvent(new Event("change", { bubbles: true }));
  }
  return await new Promise((resolve) => {
    const check = () => {
      if (watch() !== before) { done(performance.now() - t0); return true; }
      if (performance.now() - t0 > 120000) { done(-1); return true; }
      return false;
    };
    const obs = new MutationObserver(check);
    const timer = setInterval(check, 25);
    const done = (ms) => { obs.disconnect(); clearInterval(timer); resolve(ms); };
    obs.observe(ex, { childList: true, subtree: true, characterData: true });
  });
}"""
RESET = {
    "bar": "explorer.select(channels=[])",
    "thumbnail": "explorer.select(channels=[])",
    "pixel": "explorer.wait()",
    "target": "explorer.wait()",
    "contrast": "explorer.wait()",
}


def _kernel_env() -> dict[str, str]:
    """The environment of the lab and its kernels: this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def bench_browser(models: list[str], clicks: int) -> dict[str, dict[str, float]]:
    """Median ms per action and model (plus the maximum), measured in chromium."""
    from playwright.sync_api import sync_playwright

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with lab(tmp, _kernel_env()) as server, sync_playwright() as pw:
            base, token = server.base, server.token
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for name in models:
                nb = nbformat.v4.new_notebook()
                code = SETUP.format(bench=str(ROOT / "bench"), name=name)
                nb.cells = [nbformat.v4.new_code_cell(code)]
                nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
                nbformat.write(nb, tmp / "root" / f"bench_{name}.ipynb")
                page = browser.new_page(viewport={"width": 1400, "height": 1800})
                # a workspace of its own: Lab must not restore (and run) the previous notebook
                page.goto(f"{base}/lab/workspaces/{name}/tree/bench_{name}.ipynb?token={token}")
                page.wait_for_function(KERNEL_IDLE, arg=f"bench_{name}.ipynb", timeout=120_000)
                page.evaluate(
                    "() => { window.benchT0 = performance.now();"
                    " window.jupyterapp.commands.execute('notebook:run-all-cells'); }"
                )
                since = "() => performance.now() - window.benchT0"
                main = ".bench .clrp-main-map .clrp-heatmap"
                page.locator(f"{main}[data-ready='1']").wait_for(timeout=900_000)
                paint = page.evaluate(since)
                shown = f"{main}[data-placeholder='0'][data-panels='1']"
                page.locator(shown).wait_for(timeout=900_000)
                main_map = page.evaluate(since)
                thumbs = ".bench .clrp-thumbnails .clrp-thumbs[data-count]:not([data-count='0'])"
                page.locator(thumbs).wait_for(timeout=900_000)
                page.evaluate(RUN_IN_KERNEL, "explorer.wait(900)")
                times: dict[str, list[float]] = {a: [] for a in ACTIONS}
                for i in range(clicks):
                    for action in ACTIONS:  # interleaved: load drifts hit every action alike
                        page.evaluate(RUN_IN_KERNEL, RESET[action])
                        page.wait_for_timeout(150)
                        ms = page.evaluate(TIMED, {"action": action, "i": i})
                        if ms is None:
                            continue
                        if ms < 0:
                            raise RuntimeError(f"{name}: {action} never changed the page")
                        times[action].append(ms)
                page.close()
                row: dict[str, float] = {"first_paint_ms": paint, "first_map_ms": main_map}
                for action, values in times.items():
                    row[f"{action}_ms"] = statistics.median(values) if values else float("nan")
                    row[f"{action}_max_ms"] = max(values, default=float("nan"))
                    row[f"{action}_n"] = len(values)
                results[name] = row
                print(
                    f"{name:7s} (browser, click -> canvas changed, median of {clicks}) "
                    + " | ".join(f"{a} {row[f'{a}_ms']:7.1f} ms" for a in ACTIONS)
                    + f" | first paint {paint:7.0f} ms, first map {main_map:7.0f} ms"
                    " (from run-all, imports and model build included)",
                    flush=True,
                )
            browser.close()
    return results
