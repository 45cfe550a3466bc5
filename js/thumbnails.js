// Thumbnail grid: the top channels' conditional maps; a click (or Enter) selects that channel in
// Python. Arrow keys move between thumbnails. In an exported snapshot a click selects locally.
import { mapScale } from "./lib/colormap.js";
import { busyIndicator, h, mirrorState, toFloat32, toUint8 } from "./lib/dom.js";
import { formatValue } from "./lib/hit.js";
import { gridStep } from "./lib/keys.js";
import { composite } from "./lib/overlay.js";
import { isSnapshot } from "./lib/snapshot.js";
import { PICK, PICKED, explorerOf } from "./lib/snapshot_dom.js";

function columnsOf(cells) {
  if (cells.length === 0) return 1;
  const top = cells[0].offsetTop;
  const n = cells.findIndex((c) => c.offsetTop !== top);
  return n === -1 ? cells.length : n;
}

function render({ model, el }) {
  const snapshot = isSnapshot();
  const root = h("div", { class: "clrp-thumbs" });
  const title = h("div", { class: "clrp-title" });
  const progress = h("div", { class: "clrp-progress", hidden: "", role: "progressbar", "aria-label": "computing" });
  const grid = h("div", { class: "clrp-grid", role: "group" });
  root.append(title, progress, grid);
  el.appendChild(root);

  const setBusy = busyIndicator(root, progress);
  let selected = new Set(model.get("selected") || []);

  function markSelected() {
    for (const cell of grid.children) {
      const on = selected.has(Number(cell.dataset.channel));
      cell.classList.toggle("clrp-selected", on);
      cell.setAttribute("aria-pressed", on ? "true" : "false");
    }
    root.dataset.selected = JSON.stringify([...selected]);
  }

  function draw() {
    const H = model.get("height");
    const W = model.get("width");
    const all = toFloat32(model.get("maps"));
    const image = toUint8(model.get("image"));
    const channels = model.get("channels") || [];
    const labels = model.get("labels") || [];
    selected = new Set(model.get("selected") || []);
    const mode = model.get("mode");
    const n = Math.min(channels.length, H * W > 0 ? Math.floor(all.length / (H * W)) : 0);
    const scale = mapScale(all.subarray(0, n * H * W), mode);
    const size = model.get("thumb_size");
    title.textContent = model.get("title");
    grid.setAttribute("aria-label", model.get("title") || "channel thumbnails");
    grid.replaceChildren();
    for (let i = 0; i < n; i++) {
      const map = all.subarray(i * H * W, (i + 1) * H * W);
      const label = labels[i] ?? String(channels[i]);
      const peak = formatValue(mapScale(map, mode));
      const cell = h("button", {
        class: "clrp-thumb",
        "data-channel": channels[i],
        title: `${label}: max ${peak} (click or Enter: show its map)`,
        "aria-label": `${label}, max ${peak}; show its map`,
        tabindex: i === 0 ? 0 : -1,
      });
      const canvas = h("canvas", { width: W, height: H, "aria-hidden": "true" });
      canvas.style.width = `${size}px`;
      canvas.style.height = `${Math.round((size * H) / Math.max(W, 1))}px`;
      const rgba = composite({ map, image, mode, opacity: 0.85, showImage: true, scale });
      canvas.getContext("2d").putImageData(new ImageData(rgba, W, H), 0, 0);
      cell.append(canvas, h("span", {}, label));
      cell.addEventListener("click", () => pick(channels[i]));
      grid.append(cell);
    }
    markSelected();
    mirrorState(root, model.get("state"));
    root.dataset.count = String(n);
    root.dataset.ready = "1";
  }

  function pick(channel) {
    if (snapshot) {
      root.dispatchEvent(new CustomEvent(PICK, { bubbles: true, detail: { channel } }));
    } else {
      model.send({ event: "thumb", channel, layer: (model.get("state") || {}).layer });
    }
  }

  grid.addEventListener("keydown", (e) => {
    const cells = [...grid.children];
    const i = cells.indexOf(document.activeElement);
    if (i === -1) return;
    const to = gridStep(i, e.key, cells.length, columnsOf(cells));
    if (to === null) return;
    e.preventDefault();
    cells[i].tabIndex = -1;
    cells[to].tabIndex = 0;
    cells[to].focus();
  });

  const onPicked = (e) => {
    if (explorerOf(e.target) !== explorerOf(el)) return;
    selected = new Set(e.detail.channels);
    markSelected();
  };
  if (snapshot) document.addEventListener(PICKED, onPicked);

  model.on(
    "change:maps change:image change:channels change:labels change:selected change:mode " +
      "change:title change:thumb_size change:width change:height",
    draw,
  );
  model.on("change:state", () => mirrorState(root, model.get("state")));
  model.on("change:busy", () => setBusy(model.get("busy")));
  draw();
  setBusy(model.get("busy"));
  return () => {
    setBusy(false);
    document.removeEventListener(PICKED, onPicked);
  };
}

export default { render };
