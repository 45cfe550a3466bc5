import assert from "node:assert/strict";
import { test } from "node:test";
import { LUTS } from "../lib/colormap.js";
import { composite, washedGrey } from "../lib/overlay.js";

const image = new Uint8Array([10, 20, 30, 40, 50, 60]); // two RGB pixels

test("zero relevance shows the washed-out grey image, full relevance the pure colour", () => {
  const out = composite({
    map: new Float32Array([0, 2]),
    image,
    mode: "positive",
    opacity: 1,
    showImage: true,
  });
  const grey = Math.round(washedGrey(10, 20, 30));
  assert.deepEqual([...out.subarray(0, 4)], [grey, grey, grey, 255]);
  assert.equal(washedGrey(0, 0, 0), 127.5);
  assert.equal(Math.round(washedGrey(255, 255, 255)), 255);
  assert.deepEqual([...out.subarray(4, 7)], [...LUTS.sequential.subarray(255 * 3)]);
});

test("opacity blends linearly and negative values are blue in signed mode", () => {
  const out = composite({
    map: new Float32Array([-1, 0]),
    image,
    mode: "signed",
    opacity: 0.5,
    showImage: true,
  });
  const blue = LUTS.diverging.subarray(0, 3);
  const grey = washedGrey(10, 20, 30);
  for (let c = 0; c < 3; c++) assert.equal(out[c], Math.round(grey * 0.5 + blue[c] * 0.5));
  const grey2 = Math.round(washedGrey(40, 50, 60));
  assert.deepEqual([...out.subarray(4, 7)], [grey2, grey2, grey2]);
});

test("without the image the colour map is drawn alone, with a given scale", () => {
  const out = composite({
    map: new Float32Array([0, 1]),
    image: null,
    mode: "positive",
    opacity: 0.3,
    showImage: true,
    scale: 2,
  });
  assert.deepEqual([...out.subarray(0, 3)], [...LUTS.sequential.subarray(0, 3)]);
  assert.deepEqual([...out.subarray(4, 7)], [...LUTS.sequential.subarray(128 * 3, 129 * 3)]);
  assert.equal(out.length, 8);
});
