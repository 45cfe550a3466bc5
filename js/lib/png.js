// A PNG of the shown maps, made in the browser: title, panel names, maps and colour bars.
import { colourBarLabels, gradientPixels } from "./colorbar.js";

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

/**
 * Draw the panels side by side at `k` times their display size (at least 2x) on the page's
 * background, with the title on top and each panel's name and colour bar, and return a PNG Blob.
 */
export async function renderPng({ title, caption, panels, units, size, k = 2 }) {
  const [cw, ch] = size;
  const s = Math.max(k, Math.ceil(globalThis.devicePixelRatio || 1));
  const pad = 12 * s;
  const font = (px, bold = false) => `${bold ? "600 " : ""}${px * s}px system-ui, sans-serif`;
  const w = pad + panels.length * (cw * s + pad);
  const headH = title ? 22 * s : 0;
  const barH = 52 * s;
  const capH = caption ? 20 * s : 0;
  const height = pad + headH + 18 * s + ch * s + barH + capH + pad;
  const out = document.createElement("canvas");
  out.width = Math.max(w, 320 * s);
  out.height = height;
  const g = out.getContext("2d");
  const bg = cssVar("--jp-layout-color0", "#ffffff");
  const fg = cssVar("--jp-ui-font-color1", "#1a1a1a");
  g.fillStyle = bg;
  g.fillRect(0, 0, out.width, out.height);
  g.fillStyle = fg;
  g.textBaseline = "top";
  let y = pad;
  if (title) {
    g.font = font(15, true);
    g.fillText(title, pad, y);
    y += headH;
  }
  panels.forEach((p, i) => {
    const x = pad + i * (cw * s + pad);
    g.fillStyle = fg;
    g.font = font(12, true);
    g.fillText(p.name, x, y, cw * s);
    g.imageSmoothingEnabled = false;
    g.drawImage(p.canvas, x, y + 18 * s, cw * s, ch * s);
    const by = y + 18 * s + ch * s + 6 * s;
    const strip = document.createElement("canvas");
    strip.width = 256;
    strip.height = 1;
    strip.getContext("2d").putImageData(new ImageData(gradientPixels(p.mode, 256), 256, 1), 0, 0);
    g.imageSmoothingEnabled = true;
    g.drawImage(strip, x, by, cw * s, 10 * s);
    const labels = colourBarLabels(p.mode, p.scale, units);
    const { ticks } = labels;
    const legend = p.legend ? `${units ? `${units}: ` : ""}${p.legend}` : labels.legend;
    g.fillStyle = fg;
    g.font = font(10);
    g.textAlign = "left";
    g.fillText(ticks[0], x, by + 13 * s);
    g.textAlign = "center";
    g.fillText(ticks[1], x + (cw * s) / 2, by + 13 * s);
    g.textAlign = "right";
    g.fillText(ticks[2], x + cw * s, by + 13 * s);
    g.textAlign = "left";
    g.fillText(legend, x, by + 27 * s, cw * s);
  });
  if (caption) {
    g.font = font(11);
    g.fillText(caption, pad, height - pad - capH + 4 * s, out.width - 2 * pad);
  }
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}
