import assert from "node:assert/strict";
import { test } from "node:test";
import { formatValue, markerBox, pixelAt, valueAt } from "../lib/hit.js";

test("a CSS point maps to the map pixel under it, corners included", () => {
  assert.deepEqual(pixelAt(0, 0, 256, 256, 64, 64), { y: 0, x: 0 });
  assert.deepEqual(pixelAt(255.9, 255.9, 256, 256, 64, 64), { y: 63, x: 63 });
  assert.deepEqual(pixelAt(10, 130, 256, 256, 64, 64), { y: 32, x: 2 });
  assert.deepEqual(pixelAt(100, 50, 200, 100, 4, 2), { y: 1, x: 2 });
});

test("points outside the element or on an empty element hit nothing", () => {
  assert.equal(pixelAt(-1, 5, 256, 256, 64, 64), null);
  assert.equal(pixelAt(5, 256, 256, 256, 64, 64), null);
  assert.equal(pixelAt(5, 5, 0, 0, 64, 64), null);
});

test("valueAt reads row-major and markerBox covers one map pixel", () => {
  const m = new Float32Array([1, 2, 3, 4, 5, 6]);
  assert.equal(valueAt(m, 3, 1, 2), 6);
  assert.deepEqual(markerBox(2, 3, 256, 256, 64, 64), { left: 12, top: 8, width: 4, height: 4 });
});

test("formatValue keeps three significant digits and uses exponents for tiny values", () => {
  assert.equal(formatValue(0.012345), "0.0123");
  assert.equal(formatValue(-3), "-3.00");
  assert.equal(formatValue(1.5e-6), "1.50e-6");
  assert.equal(formatValue(0), "0");
  assert.equal(formatValue(NaN), "NaN");
});
