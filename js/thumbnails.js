// Thumbnail grid: the top channels' conditional maps; a click selects that channel in Python.
import { mapScale } from "./lib/colormap.js";
import { busyIndicator, h, mirrorState, toFloat32, toUint8 } from "./lib/dom.js";
import { formatValue } from "./lib/hit.js";
import { composite } from "./lib/overlay.js";

function render({ model, el }) {
  const root = h("div", { class: "clrp-thumbs" });
  const title = h("div", { class: "clrp-title" });
  const progress = h("div", { class: "clrp-progress", hidden: "" });
  const grid = h("div", { class: "clrp-grid" });
  root.append(title, progress, grid);
  el.appendChild(root);

  const setBusy = busyIndicator(root, progress);

  function draw() {
    const H = model.get("height");
    const W = model.get("width");
    const all = toFloat32(model.get("maps"));
    const image = toUint8(model.get("image"));
    const channels = model.get("channels") || [];
    const labels = model.get("labels") || [];
    const selected = new Set(model.get("selected") || []);
    const mode = model.get("mode");
    const n = Math.min(channels.length, H * W > 0 ? Math.floor(all.length / (H * W)) : 0);
    const scale = mapScale(all.subarray(0, n * H * W), mode);
    const size = model.get("thumb_size");
    title.textContent = model.get("title");
    grid.replaceChildren();
    for (let i = 0; i < n; i++) {
      const map = all.subarray(i * H * W, (i + 1) * H * W);
      const cell = h("button", {
        class: selected.has(channels[i]) ? "clrp-thumb clrp-selected" : "clrp-thumb",
        "data-channel": channels[i],
        title: `${labels[i] ?? channels[i]}: max ${formatValue(mapScale(map, mode))}`,
      });
      const canvas = h("canvas", { width: W, height: H });
      canvas.style.width = `${size}px`;
      canvas.style.height = `${Math.round((size * H) / Math.max(W, 1))}px`;
      const rgba = composite({ map, image, mode, opacity: 0.85, showImage: true, scale });
      canvas.getContext("2d").putImageData(new ImageData(rgba, W, H), 0, 0);
      cell.append(canvas, h("span", {}, labels[i] ?? String(channels[i])));
      cell.addEventListener("click", () => model.send({ event: "thumb", channel: channels[i] }));
      grid.append(cell);
    }
    mirrorState(root, model.get("state"));
    root.dataset.count = String(n);
    root.dataset.selected = JSON.stringify([...selected]);
    root.dataset.ready = "1";
  }

  model.on(
    "change:maps change:image change:channels change:labels change:selected change:mode " +
      "change:title change:thumb_size change:width change:height",
    draw,
  );
  model.on("change:state", () => mirrorState(root, model.get("state")));
  model.on("change:busy", () => setBusy(model.get("busy")));
  draw();
  setBusy(model.get("busy"));
  return () => setBusy(false);
}

export default { render };
