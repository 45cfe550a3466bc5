import assert from "node:assert/strict";
import { test } from "node:test";
import { buildLut, LUTS, lutFor, lutIndex, mapScale, normalise } from "../lib/colormap.js";

test("LUT hits its anchors exactly and interpolates between them", () => {
  const lut = buildLut([
    [0, 0, 0, 0],
    [1, 255, 128, 10],
  ]);
  assert.deepEqual([...lut.subarray(0, 3)], [0, 0, 0]);
  assert.deepEqual([...lut.subarray(255 * 3)], [255, 128, 10]);
  assert.deepEqual([...lut.subarray(51 * 3, 52 * 3)], [51, 26, 2]);
});

test("diverging map is white-ish in the middle, blue for negative, red for positive", () => {
  const mid = LUTS.diverging.subarray(lutIndex(0, "signed") * 3, lutIndex(0, "signed") * 3 + 3);
  assert.ok(Math.min(...mid) > 240);
  const [r0, , b0] = LUTS.diverging.subarray(0, 3);
  assert.ok(b0 > r0);
  const [r1, , b1] = LUTS.diverging.subarray(255 * 3);
  assert.ok(r1 > b1);
  assert.equal(lutFor("signed"), LUTS.diverging);
  assert.equal(lutFor("positive"), LUTS.sequential);
});

test("scale is max |v| when signed, max positive when positive, 1 for blank maps", () => {
  const m = new Float32Array([-4, 1, 2, NaN]);
  assert.equal(mapScale(m, "signed"), 4);
  assert.equal(mapScale(m, "positive"), 2);
  assert.equal(mapScale(new Float32Array([0, 0]), "signed"), 1);
  assert.equal(mapScale(new Float32Array([-1, -2]), "positive"), 1);
});

test("normalise clips negatives in positive mode and keeps the sign in signed mode", () => {
  assert.equal(normalise(-2, "positive", 4), 0);
  assert.equal(normalise(-2, "signed", 4), -0.5);
  assert.equal(normalise(8, "signed", 4), 1);
  assert.equal(normalise(NaN, "signed", 4), 0);
  assert.equal(lutIndex(-1, "signed"), 0);
  assert.equal(lutIndex(1, "signed"), 255);
  assert.equal(lutIndex(0, "positive"), 0);
});
