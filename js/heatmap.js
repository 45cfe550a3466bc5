// Heatmap view: one or more relevance maps over the image, on canvases, each with a colour bar.
// Hover reads values; a click (or arrow keys + Enter) selects a pixel (sent to Python); the pixel's
// neuron list is clickable. PNG downloads are made here; netCDF bytes come from the kernel. In an
// exported snapshot (no kernel) a neuron view draws the embedded channel maps itself.
// State is mirrored on data-* attributes for tests; data-ready="1" once drawn.
import { colourBarLabels, gradientPixels } from "./lib/colorbar.js";
import { mapScale } from "./lib/colormap.js";
import { busyIndicator, h, mirrorState, toFloat32, toUint8 } from "./lib/dom.js";
import { fileName, saveBlob } from "./lib/download.js";
import { formatValue, markerRing, pixelAt, valueAt } from "./lib/hit.js";
import { moveCursor } from "./lib/keys.js";
import { composite } from "./lib/overlay.js";
import { renderPng } from "./lib/png.js";
import { isSnapshot } from "./lib/snapshot.js";
import { disableKernelControls, snapshotBanner, snapshotNeurons } from "./lib/snapshot_dom.js";

const KEY_HELP = "arrow keys move the cursor (Shift: 8 px), Enter selects the pixel";

function panelMode(model, i) {
  const forced = (model.get("panel_modes") || [])[i];
  return forced || model.get("mode");
}

function colourBar(mode, scale, units, width, override) {
  const labels = colourBarLabels(mode, scale, units);
  const { ticks } = labels;
  const legend = override ? `${units ? `${units}: ` : ""}${override}` : labels.legend;
  const bar = h("canvas", { width: 128, height: 1, class: "clrp-colorbar-strip", "aria-hidden": "true" });
  bar.getContext("2d").putImageData(new ImageData(gradientPixels(mode, 128), 128, 1), 0, 0);
  bar.style.width = `${width}px`;
  const row = h("div", { class: "clrp-colorbar-ticks" });
  (width < 200 ? [ticks[0], ticks[2]] : ticks).forEach((t) => row.append(h("span", {}, t)));
  const box = h("div", { class: "clrp-colorbar", role: "img", "aria-label": `${ticks.join(" … ")}; ${legend}` });
  box.style.width = `${width}px`;
  box.append(bar, row, h("div", { class: "clrp-legend" }, legend));
  return box;
}

function render({ model, el }) {
  const snapshot = isSnapshot();
  const root = h("div", { class: "clrp-heatmap" });
  const title = h("div", { class: "clrp-title" });
  const toolbar = h("div", { class: "clrp-toolbar", role: "toolbar", "aria-label": "map display" });
  const opacity = h("input", { type: "range", min: 0, max: 1, step: 0.05, "aria-label": "overlay opacity" });
  const signed = h("input", { type: "checkbox", class: "clrp-signed" });
  const showImage = h("input", { type: "checkbox", class: "clrp-show-image" });
  const colour = h("input", { type: "checkbox", class: "clrp-image-colour" });
  const png = h("button", { class: "clrp-png", title: "download the maps as a PNG (titled, with colour bars)" }, "PNG");
  const netcdf = h("button", { class: "clrp-netcdf", title: "download the result tree as netCDF" }, "netCDF");
  const labelled = (text, input, tip) => {
    const l = h("label", { title: tip }, text);
    l.prepend(input);
    return l;
  };
  toolbar.append(
    labelled("opacity ", opacity, "opacity of the map over the image"),
    labelled(" signed", signed, "signed: red for, blue against; off: positive evidence only"),
    labelled(" image", showImage, "draw the map over the input image"),
    labelled(" colour", colour, "the image in colour instead of washed-out grey (opacity 0: the image alone)"),
    png,
    netcdf,
  );
  const shared = h("input", { type: "checkbox", class: "clrp-shared-scale" });
  const sharedLabel = labelled(" one colour scale for all panels", shared, "A and B (and A − B) drawn on one scale, so their strengths compare");
  sharedLabel.classList.add("clrp-shared-label");
  const panelPng = h("button", { class: "clrp-png clrp-panel-png", title: "download these maps as a PNG (titled, with colour bars)" }, "PNG");
  const under = h("div", { class: "clrp-under" });
  under.append(sharedLabel, panelPng);
  const progress = h("div", { class: "clrp-progress", hidden: "", role: "progressbar", "aria-label": "computing" });
  const panels = h("div", { class: "clrp-panels" });
  const readout = h("div", { class: "clrp-readout", "aria-live": "polite" }, "hover over a map to read values");
  const caption = h("div", { class: "clrp-caption" });
  const neurons = h("div", { class: "clrp-neurons" });
  const message = h("div", { class: "clrp-message", "aria-live": "polite" });
  const help = h("details", { class: "clrp-help" });
  const helpText = h("div", { class: "clrp-help-text" });
  help.append(h("summary", {}, "what do the colours and words mean?"), helpText);
  root.append(title, toolbar, progress, panels, under, readout, caption, message, help, neurons);
  el.appendChild(root);

  let maps = [];
  let canvases = [];
  let cursor = null; // keyboard cursor {y, x}
  let local = null; // snapshot mode: {maps, titles, modes, caption} drawn instead of the saved ones

  const setBusy = busyIndicator(root, progress);
  const send = (msg) => {
    if (!snapshot) model.send(msg);
  };
  const set = (name, value) => {
    model.set(name, value);
    if (!snapshot) model.save_changes();
  };

  function decode() {
    if (local) {
      maps = local.maps;
      return;
    }
    const H = model.get("height");
    const W = model.get("width");
    const all = toFloat32(model.get("maps"));
    const n = H * W > 0 ? Math.floor(all.length / (H * W)) : 0;
    maps = Array.from({ length: n }, (_, i) => all.subarray(i * H * W, (i + 1) * H * W));
  }

  /** Before the first result: the image alone, under the (placeholder) title. */
  function drawPlaceholder() {
    const H = model.get("height");
    const W = model.get("width");
    const [cw, ch] = cssSize();
    const image = toUint8(model.get("image"));
    const name = (model.get("panel_titles") || [])[0];
    if (!name || !(H > 0 && W > 0) || image.length < H * W * 3) return false;
    const rgba = new Uint8ClampedArray(H * W * 4);
    for (let i = 0; i < H * W; i++) rgba.set([image[i * 3], image[i * 3 + 1], image[i * 3 + 2], 255], i * 4);
    const canvas = h("canvas", { width: W, height: H, "aria-hidden": "true" });
    canvas.style.width = `${cw}px`;
    canvas.style.height = `${ch}px`;
    canvas.getContext("2d").putImageData(new ImageData(rgba, W, H), 0, 0);
    const wrap = h("div", { class: "clrp-canvas-wrap clrp-no-click clrp-placeholder", role: "img", "aria-label": `${name}: the input image` });
    wrap.style.width = `${cw}px`;
    wrap.style.height = `${ch}px`;
    wrap.append(canvas);
    const fig = h("figure", { class: "clrp-panel" });
    fig.append(h("figcaption", {}, name), wrap, h("div", { class: "clrp-range" }, "the input image; its map follows"));
    panels.append(fig);
    root.dataset.placeholder = "1";
    return true;
  }

  const titlesNow = () => (local ? local.titles : model.get("panel_titles") || []);
  const legendsNow = () => (local ? local.legends || [] : model.get("panel_legends") || []);
  const modeOf = (i) => (local ? local.modes[i] || model.get("mode") : panelMode(model, i));

  function cssSize() {
    const H = model.get("height");
    const W = model.get("width");
    const s = model.get("display_size") / Math.max(H, W, 1);
    return [Math.round(W * s), Math.round(H * s)];
  }

  function placeRing(ring, p, cw, ch) {
    if (!p) {
      ring.hidden = true;
      return;
    }
    const b = markerRing(p[0], p[1], cw, ch, model.get("width"), model.get("height"));
    Object.assign(ring.style, {
      left: `${b.cx - b.size / 2}px`,
      top: `${b.cy - b.size / 2}px`,
      width: `${b.size}px`,
      height: `${b.size}px`,
    });
    ring.hidden = false;
  }

  function drawMarker() {
    const [cw, ch] = cssSize();
    const px = model.get("pixel") || [];
    const selected = px.length === 2 ? px : null;
    for (const { marker, cross, wrap } of canvases) {
      placeRing(marker, selected, cw, ch);
      placeRing(cross, cursor ? [cursor.y, cursor.x] : null, cw, ch);
      if (selected) wrap.dataset.selectedPixel = JSON.stringify(selected);
      else delete wrap.dataset.selectedPixel;
    }
    root.dataset.cursor = cursor ? JSON.stringify([cursor.y, cursor.x]) : "";
  }

  function scales() {
    const own = maps.map((m, i) => mapScale(m, modeOf(i)));
    if (model.get("shared_scale") && own.length > 1) {
      const s = Math.max(...own);
      return own.map(() => s);
    }
    return own;
  }

  function drawPanels() {
    decode();
    const H = model.get("height");
    const W = model.get("width");
    const image = toUint8(model.get("image"));
    const titles = titlesNow();
    const tips = model.get("panel_tooltips") || [];
    const units = model.get("units");
    const [cw, ch] = cssSize();
    const panelScales = scales();
    const clickable = model.get("pixel_clicks") && !snapshot;
    panels.replaceChildren();
    canvases = maps.map((map, i) => {
      const mode = modeOf(i);
      const scale = panelScales[i];
      const name = titles[i] ?? `map ${i + 1}`;
      const fig = h("figure", { class: "clrp-panel", "data-mode": mode, "data-scale": scale });
      const wrap = h("div", { class: "clrp-canvas-wrap", tabindex: 0, role: "application" });
      wrap.setAttribute(
        "aria-label",
        `${name}: relevance map, ${W}×${H} pixels. ${clickable ? KEY_HELP : "Arrow keys read values"}`,
      );
      wrap.style.width = `${cw}px`;
      wrap.style.height = `${ch}px`;
      if (!clickable) wrap.classList.add("clrp-no-click");
      const canvas = h("canvas", { width: W, height: H, "aria-hidden": "true" });
      canvas.style.width = `${cw}px`;
      canvas.style.height = `${ch}px`;
      const rgba = composite({
        map,
        image,
        mode,
        opacity: model.get("opacity"),
        showImage: model.get("show_image"),
        colour: model.get("image_colour"),
        scale,
      });
      if (W > 0 && H > 0) canvas.getContext("2d").putImageData(new ImageData(rgba, W, H), 0, 0);
      const marker = h("div", { class: "clrp-marker", hidden: "" });
      const cross = h("div", { class: "clrp-cursor", hidden: "" });
      wrap.append(canvas, marker, cross);
      wrap.addEventListener("mousemove", (e) => hover(e, wrap));
      wrap.addEventListener("click", (e) => click(e, wrap));
      wrap.addEventListener("keydown", (e) => key(e));
      const blank = !map.some((v) => (mode === "signed" ? v !== 0 : v > 0));
      const cap = h("figcaption", { title: tips[i] || name }, name);
      fig.append(cap, wrap);
      if (blank) {
        fig.append(h("div", { class: "clrp-range" }, `${mode}: no ${mode === "signed" ? "nonzero" : "positive"} values`));
      } else {
        fig.append(colourBar(mode, scale, units, cw, legendsNow()[i]));
      }
      panels.append(fig);
      return { canvas, marker, cross, wrap, mode, scale, name };
    });
    root.dataset.placeholder = "0";
    if (maps.length === 0 && !local) drawPlaceholder();
    sharedLabel.hidden = maps.length < 2;
    panelPng.hidden = model.get("show_toolbar") || maps.length === 0;
    shared.checked = model.get("shared_scale");
    root.dataset.sharedScale = shared.checked ? "1" : "0";
    drawMarker();
  }

  function locate(e, wrap) {
    const r = wrap.getBoundingClientRect();
    return pixelAt(e.clientX - r.left, e.clientY - r.top, r.width, r.height, model.get("width"), model.get("height"));
  }

  function readAt(p) {
    const titles = titlesNow();
    const parts = maps.map((m, i) => `${titles[i] ?? `map ${i + 1}`}: ${formatValue(valueAt(m, model.get("width"), p.y, p.x))}`);
    readout.textContent = `y=${p.y} x=${p.x} · ${parts.join(" · ")}`;
  }

  function hover(e, wrap) {
    const p = locate(e, wrap);
    if (!p) return;
    readAt(p);
    root.dataset.hover = JSON.stringify([p.y, p.x]);
  }

  function click(e, wrap) {
    if (!model.get("pixel_clicks") || snapshot) return;
    const p = locate(e, wrap);
    if (!p) return;
    cursor = p;
    send({ event: "pixel", y: p.y, x: p.x });
  }

  function key(e) {
    if (e.key === "PageUp" || e.key === "PageDown" || (e.altKey && (e.key === "ArrowLeft" || e.key === "ArrowRight"))) {
      e.preventDefault();
      send({ event: "page", step: e.key === "PageUp" || e.key === "ArrowLeft" ? -1 : 1 });
      return;
    }
    const H = model.get("height");
    const W = model.get("width");
    if (!(H > 0 && W > 0)) return;
    const px = model.get("pixel") || [];
    const from = cursor || (px.length === 2 ? { y: px[0], x: px[1] } : { y: H >> 1, x: W >> 1 });
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      cursor = from;
      if (model.get("pixel_clicks") && !snapshot) send({ event: "pixel", y: from.y, x: from.x });
      drawMarker();
      readAt(from);
      return;
    }
    if (e.key === "Escape") {
      cursor = null;
      drawMarker();
      return;
    }
    const to = moveCursor(from, e.key, H, W, { shift: e.shiftKey });
    if (!to) return;
    e.preventDefault();
    cursor = to;
    drawMarker();
    readAt(to);
  }

  function drawNeurons() {
    const items = model.get("pixel_neurons") || [];
    neurons.replaceChildren();
    root.dataset.pixelNeurons = String(items.length);
    const head = model.get("neuron_list_title");
    const reserve = !!model.get("pixel_clicks");
    neurons.classList.toggle("clrp-neurons-reserved", reserve);
    if (!head && items.length === 0) {
      if (reserve) {
        const hint = snapshot
          ? "pixel lists need the notebook running (this page is a snapshot)"
          : `click a pixel (or focus the map: arrow keys, then Enter) to list the ${model.get("neuron_noun") || "channels"} with the most relevance there`;
        neurons.append(h("div", { class: "clrp-neurons-hint" }, hint));
      }
      return;
    }
    neurons.append(h("div", { class: "clrp-neurons-title" }, head));
    const list = h("ol", {});
    for (const item of items) {
      const b = h("button", { class: "clrp-neuron", "data-channel": item.channel, title: `show ${item.label}'s map` }, item.label);
      b.append(h("span", { class: "clrp-value" }, ` ${formatValue(item.value)}`));
      b.addEventListener("click", () => send({ event: "neuron", channel: item.channel, layer: item.layer }));
      if (snapshot) b.disabled = true;
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
    colour.checked = model.get("image_colour");
    opacity.disabled = !model.get("show_image");
    colour.disabled = !model.get("show_image");
    title.textContent = model.get("title");
    caption.textContent = local ? local.caption : model.get("caption");
    const lines = (model.get("help") || "").split("\n").filter(Boolean);
    helpText.replaceChildren(...lines.map((line) => h("p", {}, line)));
    help.hidden = lines.length === 0;
    toolbar.hidden = !model.get("show_toolbar");
    const kernelFiles = model.get("downloads") || [];
    netcdf.hidden = !kernelFiles.includes("netcdf");
    netcdf.disabled = snapshot;
    if (snapshot) netcdf.title = "needs a running kernel: this page is a snapshot";
  }

  function drawAll() {
    readout.textContent = "hover over a map to read values";
    syncControls();
    drawPanels();
    drawNeurons();
    mirrorState(root, model.get("state"));
    if (local) mirrorState(root, local.state);
    root.dataset.panels = String(maps.length);
    root.dataset.ready = "1";
  }

  opacity.addEventListener("input", () => set("opacity", Number(opacity.value)));
  signed.addEventListener("change", () => set("mode", signed.checked ? "signed" : "positive"));
  showImage.addEventListener("change", () => set("show_image", showImage.checked));
  colour.addEventListener("change", () => set("image_colour", colour.checked));
  shared.addEventListener("change", () => set("shared_scale", shared.checked));
  const downloadPng = async () => {
    if (!canvases.length) return;
    const state = { ...(model.get("state") || {}), ...(local ? local.state : {}) };
    const blob = await renderPng({
      title: model.get("title"),
      caption: caption.textContent,
      panels: canvases.map(({ canvas, mode, scale, name }, i) => ({ canvas, mode, scale, name, legend: legendsNow()[i] })),
      units: model.get("units"),
      size: cssSize(),
    });
    const name = fileName(state, "png", { neurons: !model.get("pixel_clicks") });
    root.dataset.lastDownload = `${name} ${blob.size}`;
    saveBlob(blob, name);
  };
  png.addEventListener("click", downloadPng);
  panelPng.addEventListener("click", downloadPng);
  netcdf.addEventListener("click", () => {
    message.textContent = "preparing the netCDF file…";
    send({ event: "download", format: "netcdf" });
  });
  model.on("msg:custom", (msg, buffers) => {
    const isFile = msg && msg.event === "file";
    if (isFile && buffers && buffers.length) {
      const name = msg.name || "clrp-result.bin";
      const blob = new Blob([buffers[0]], { type: msg.mime || "application/octet-stream" });
      root.dataset.lastDownload = `${name} ${blob.size}`;
      saveBlob(blob, name);
      message.textContent = `downloaded ${name} (${Math.round(blob.size / 1024)} kB)`;
    } else if (msg && msg.event === "file_error") {
      message.textContent = `could not prepare the file: ${msg.message}`;
    }
  });

  const redraw = () => drawAll();
  const events =
    "change:maps change:image change:width change:height change:mode change:opacity " +
    "change:show_image change:image_colour change:panel_titles change:panel_modes " +
    "change:display_size change:shared_scale change:units change:panel_tooltips change:panel_legends";
  model.on(events, redraw);
  model.on("change:pixel", drawMarker);
  model.on("change:pixel_neurons change:neuron_list_title change:neuron_noun", drawNeurons);
  model.on("change:state", () => mirrorState(root, model.get("state")));
  model.on("change:title change:caption change:show_toolbar change:downloads change:help", syncControls);
  model.on("change:busy", () => setBusy(model.get("busy")));
  drawAll();
  setBusy(model.get("busy"));

  const cleanups = [() => setBusy(false)];
  if (snapshot) {
    root.classList.add("clrp-snapshot");
    if (model.get("show_toolbar")) {
      const banner = snapshotBanner();
      root.prepend(banner); // moved to the top of its Explorer, when it is in one
      cleanups.push(disableKernelControls(el, banner));
    }
    const snap = model.get("snapshot") || {};
    if ((snap.channels || []).length) {
      cleanups.push(
        snapshotNeurons(el, model, (view) => {
          local = view;
          drawAll();
        }),
      );
    }
  }
  return () => cleanups.forEach((f) => f());
}

export default { render };
