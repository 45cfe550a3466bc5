import assert from "node:assert/strict";
import { deflateSync } from "node:zlib";
import { test } from "node:test";
import { colourBarLabels, gradientPixels } from "../lib/colorbar.js";
import { LUTS } from "../lib/colormap.js";
import { fileName } from "../lib/download.js";
import { markerRing } from "../lib/hit.js";
import { gridStep, moveCursor } from "../lib/keys.js";
import { composite } from "../lib/overlay.js";
import { dequantise, inflate, isSnapshot, toggleChannel } from "../lib/snapshot.js";

test("colour bar labels give the range with units and say what red and blue mean", () => {
  const s = colourBarLabels("signed", 0.5, "relevance");
  assert.deepEqual(s.ticks, ["−0.500", "0", "+0.500"]);
  assert.equal(s.legend, "relevance: red for the target, blue against");
  const p = colourBarLabels("positive", 2, "");
  assert.deepEqual(p.ticks, ["0", "1.00", "2.00"]);
  assert.equal(p.legend, "red for the target (negatives hidden)");
});

test("the colour-bar gradient runs through the map's own colour table, end to end", () => {
  const g = gradientPixels("signed", 5);
  const lut = LUTS.diverging;
  assert.deepEqual([...g.subarray(0, 3)], [lut[0], lut[1], lut[2]]);
  assert.deepEqual([...g.subarray(16, 19)], [lut[765], lut[766], lut[767]]);
  assert.equal(g[3], 255);
});

test("arrow keys move the cursor one pixel (Shift: eight), clamped to the map", () => {
  const c = { y: 2, x: 3 };
  assert.deepEqual(moveCursor(c, "ArrowRight", 10, 10), { y: 2, x: 4 });
  assert.deepEqual(moveCursor(c, "ArrowUp", 10, 10), { y: 1, x: 3 });
  assert.deepEqual(moveCursor(c, "ArrowDown", 10, 10, { shift: true }), { y: 9, x: 3 });
  assert.deepEqual(moveCursor(c, "ArrowLeft", 10, 10, { shift: true }), { y: 2, x: 0 });
  assert.deepEqual(moveCursor(c, "End", 10, 10), { y: 2, x: 9 });
  assert.equal(moveCursor(c, "a", 10, 10), null);
});

test("grid focus moves by one or by a row and stays inside the grid", () => {
  assert.equal(gridStep(0, "ArrowRight", 12, 6), 1);
  assert.equal(gridStep(1, "ArrowDown", 12, 6), 7);
  assert.equal(gridStep(8, "ArrowDown", 12, 6), 11);
  assert.equal(gridStep(0, "ArrowLeft", 12, 6), 0);
  assert.equal(gridStep(5, "End", 12, 6), 11);
  assert.equal(gridStep(5, "Enter", 12, 6), null);
});

test("download names say what is shown and carry no path characters", () => {
  const state = { target_name: "triangle", contrast: "clrp1", layer: "features.3", channels: [5, 9] };
  assert.equal(fileName(state, "png"), "clrp_triangle_clrp1.png");
  assert.equal(fileName(state, "png", { neurons: true }), "clrp_triangle_clrp1_features.3_c5_c9.png");
  assert.equal(fileName({ target_name: "a/b <x>", contrast: "pairwise", class_b: 2 }, "nc"), "clrp_a-b-x_pairwise_vs2.nc");
  assert.equal(fileName({}, "png"), "clrp.png");
});

test("the selected-pixel ring is centred on the pixel and never smaller than 18 px", () => {
  const r = markerRing(2, 3, 256, 256, 64, 64);
  assert.deepEqual([r.cx, r.cy], [14, 10]);
  assert.equal(r.size, 18);
  assert.equal(markerRing(0, 0, 256, 256, 8, 8).size, 70);
});

test("the colour underlay keeps the image's colours; the grey one does not", () => {
  const map = new Float32Array([0]);
  const image = new Uint8Array([200, 10, 10]);
  const col = composite({ map, image, mode: "positive", opacity: 1, showImage: true, colour: true });
  assert.deepEqual([...col.subarray(0, 3)], [200, 10, 10]);
  const grey = composite({ map, image, mode: "positive", opacity: 1, showImage: true });
  assert.equal(grey[0], grey[1]);
});

test("snapshot maps inflate and dequantise like the kernel quantised them", async () => {
  const codes = new Uint8Array([128, 255, 1, 191, 128, 128]);
  const maps = dequantise(await inflate(deflateSync(codes)), [2, 0.5], 3);
  assert.deepEqual([...maps[0]].map((v) => +v.toFixed(4)), [0, 2, -2]);
  assert.deepEqual([...maps[1]].map((v) => +v.toFixed(4)), [0.248, 0, 0]);
});

test("local selection keeps the newest two channels and a second click deselects", () => {
  assert.deepEqual(toggleChannel([], 3), [3]);
  assert.deepEqual(toggleChannel([3], 5), [3, 5]);
  assert.deepEqual(toggleChannel([3, 5], 7), [5, 7]);
  assert.deepEqual(toggleChannel([3, 5], 3), [5]);
});

test("snapshot mode is on only when the export page says so", () => {
  assert.equal(isSnapshot({}), false);
  assert.equal(isSnapshot({ CLRP_SNAPSHOT: true }), true);
});
