// Heatmap view: one or more relevance maps over the image, on canvases.
// Hover reads values, a click selects a pixel (sent to Python) and the pixel's neuron list is
// clickable. State is mirrored on data-* attributes for tests; data-ready="1" once drawn.
import { mapScale } from "./lib/colormap.js";
import { busyIndicator, h, mirrorState, toFloat32, toUint8 } from "./lib/dom.js";
import { formatValue, markerBox, pixelAt, valueAt } from "./lib/hit.js";
import { composite } from "./lib/overlay.js";

function panelMode(model, i) {
  const forced = (model.get("panel_modes") || [])[i];
  return forced || model.get("mode");
}

function render({ model, el }) {
  const root = h("div", { class: "clrp-heatmap" });
  const title = h("div", { class: "clrp-title" });
  const toolbar = h("div", { class: "clrp-toolbar" });
  const opacity = h("input", { type: "range", min: 0, max: 1, step: 0.05, title: "overlay opacity" });
  const signed = h("input", { type: "checkbox", class: "clrp-signed" });
  const showImage = h("input", { type: "checkbox", class: "clrp-show-image" });
  const png = h("button", { class: "clrp-png", title: "download the first map as PNG" }, "PNG");
  const labelled = (text, input) => {
    const l = h("label", {}, text);
    l.prepend(input);
    return l;
  };
  toolbar.append(
    labelled("opacity ", opacity),
    labelled(" signed", signed),
    labelled(" image", showImage),
    png,
  );
  const progress = h("div", { class: "clrp-progress", hidden: "" });
  const panels = h("div", { class: "clrp-panels" });
  const readout = h("div", { class: "clrp-readout" }, "hover over a map to read values");
  const caption = h("div", { class: "clrp-caption" });
  const neurons = h("div", { class: "clrp-neurons" });
  root.append(title, toolbar, progress, panels, readout, caption, neurons);
  el.appendChild(root);

  let maps = [];
  let canvases = [];

  const setBusy = busyIndicator(root, progress);

  function decode() {
    const H = model.get("height");
    const W = model.get("width");
    const all = toFloat32(model.get("maps"));
    const n = H * W > 0 ? Math.floor(all.length / (H * W)) : 0;
    maps = Array.from({ length: n }, (_, i) => all.subarray(i * H * W, (i + 1) * H * W));
  }

  function cssSize() {
    const H = model.get("height");
    const W = model.get("width");
    const s = model.get("display_size") / Math.max(H, W, 1);
    return [Math.round(W * s), Math.round(H * s)];
  }

  function drawMarker() {
    const [cw, ch] = cssSize();
    const px = model.get("pixel") || [];
    for (const { marker } of canvases) {
      if (px.length !== 2) {
        marker.hidden = true;
        continue;
      }
      const b = markerBox(px[0], px[1], cw, ch, model.get("width"), model.get("height"));
      Object.assign(marker.style, {
        left: `${b.left}px`,
        top: `${b.top}px`,
        width: `${b.width}px`,
        height: `${b.height}px`,
      });
      marker.hidden = false;
    }
  }

  function drawPanels() {
    decode();
    const H = model.get("height");
    const W = model.get("width");
    const image = toUint8(model.get("image"));
    const titles = model.get("panel_titles") || [];
    const [cw, ch] = cssSize();
    panels.replaceChildren();
    canvases = maps.map((map, i) => {
      const mode = panelMode(model, i);
      const scale = mapScale(map, mode);
      const fig = h("figure", { class: "clrp-panel", "data-mode": mode });
      const wrap = h("div", { class: "clrp-canvas-wrap" });
      wrap.style.width = `${cw}px`;
      wrap.style.height = `${ch}px`;
      const canvas = h("canvas", { width: W, height: H });
      canvas.style.width = `${cw}px`;
      canvas.style.height = `${ch}px`;
      const rgba = composite({
        map,
        image,
        mode,
        opacity: model.get("opacity"),
        showImage: model.get("show_image"),
        scale,
      });
      if (W > 0 && H > 0) canvas.getContext("2d").putImageData(new ImageData(rgba, W, H), 0, 0);
      const marker = h("div", { class: "clrp-marker", hidden: "" });
      wrap.append(canvas, marker);
      wrap.addEventListener("mousemove", (e) => hover(e, wrap));
      wrap.addEventListener("click", (e) => click(e, wrap));
      const blank = !map.some((v) => (mode === "signed" ? v !== 0 : v > 0));
      const range = mode === "signed" ? `±${formatValue(scale)}` : `0 … ${formatValue(scale)}`;
      fig.append(h("figcaption", {}, titles[i] ?? `map ${i + 1}`), wrap);
      const note = blank ? `${mode}: no ${mode === "signed" ? "nonzero" : "positive"} values` : `${mode}, colour range ${range}`;
      fig.append(h("div", { class: "clrp-range" }, note));
      panels.append(fig);
      return { canvas, marker };
    });
    drawMarker();
  }

  function locate(e, wrap) {
    const r = wrap.getBoundingClientRect();
    return pixelAt(
      e.clientX - r.left,
      e.clientY - r.top,
      r.width,
      r.height,
      model.get("width"),
      model.get("height"),
    );
  }

  function hover(e, wrap) {
    const p = locate(e, wrap);
    if (!p) return;
    const titles = model.get("panel_titles") || [];
    const parts = maps.map(
      (m, i) => `${titles[i] ?? `map ${i + 1}`}: ${formatValue(valueAt(m, model.get("width"), p.y, p.x))}`,
    );
    readout.textContent = `y=${p.y} x=${p.x} · ${parts.join(" · ")}`;
    root.dataset.hover = JSON.stringify([p.y, p.x]);
  }

  function click(e, wrap) {
    if (!model.get("pixel_clicks")) return;
    const p = locate(e, wrap);
    if (!p) return;
    model.send({ event: "pixel", y: p.y, x: p.x });
  }

  function drawNeurons() {
    const items = model.get("pixel_neurons") || [];
    neurons.replaceChildren();
    root.dataset.pixelNeurons = String(items.length);
    const head = model.get("neuron_list_title");
    if (!head && items.length === 0) return;
    neurons.append(h("div", { class: "clrp-neurons-title" }, head));
    const list = h("ol", {});
    for (const item of items) {
      const b = h("button", { class: "clrp-neuron", "data-channel": item.channel }, item.label);
      b.append(h("span", { class: "clrp-value" }, ` ${formatValue(item.value)}`));
      b.addEventListener("click", () => model.send({ event: "neuron", channel: item.channel }));
      const li = h("li", {});
      li.append(b);
      list.append(li);
    }
    neurons.append(list);
  }

  function syncControls() {
    opacity.value = String(model.get("opacity"));
    signed.checked = model.get("mode") === "signed";
    showImage.checked = model.get("show_image");
    opacity.disabled = !model.get("show_image");
    title.textContent = model.get("title");
    caption.textContent = model.get("caption");
    toolbar.hidden = !model.get("show_toolbar");
  }

  function drawAll() {
    readout.textContent = "hover over a map to read values";
    syncControls();
    drawPanels();
    drawNeurons();
    mirrorState(root, model.get("state"));
    root.dataset.panels = String(maps.length);
    root.dataset.ready = "1";
  }

  const set = (name, value) => {
    model.set(name, value);
    model.save_changes();
  };
  opacity.addEventListener("input", () => set("opacity", Number(opacity.value)));
  signed.addEventListener("change", () => set("mode", signed.checked ? "signed" : "positive"));
  showImage.addEventListener("change", () => set("show_image", showImage.checked));
  png.addEventListener("click", () => {
    if (!canvases.length) return;
    const a = h("a", { href: canvases[0].canvas.toDataURL("image/png"), download: "clrp-map.png" });
    a.click();
  });

  const redraw = () => drawAll();
  const events =
    "change:maps change:image change:width change:height change:mode change:opacity " +
    "change:show_image change:panel_titles change:panel_modes change:display_size";
  model.on(events, redraw);
  model.on("change:pixel", drawMarker);
  model.on("change:pixel_neurons change:neuron_list_title", drawNeurons);
  model.on("change:state", () => mirrorState(root, model.get("state")));
  model.on("change:title change:caption change:show_toolbar", syncControls);
  model.on("change:busy", () => setBusy(model.get("busy")));
  drawAll();
  setBusy(model.get("busy"));
  return () => setBusy(false);
}

export default { render };
