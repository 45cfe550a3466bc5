import assert from "node:assert/strict";
import { test } from "node:test";
import { datasetKey, delayedFlag, toFloat32, toUint8 } from "../lib/dom.js";

test("data attribute names become dataset keys", () => {
  assert.equal(datasetKey("map_version"), "mapVersion");
  assert.equal(datasetKey("class-b"), "classB");
  assert.equal(datasetKey("layer"), "layer");
});

test("binary traits decode from an unaligned DataView into aligned copies", () => {
  const src = new Float32Array([1.5, -2, 3]);
  const raw = new Uint8Array(13);
  raw.set(new Uint8Array(src.buffer), 1);
  const view = new DataView(raw.buffer, 1, 12);
  assert.deepEqual([...toFloat32(view)], [1.5, -2, 3]);
  assert.deepEqual([...toUint8(new DataView(raw.buffer, 0, 2))], [0, raw[1]]);
  assert.equal(toFloat32(null).length, 0);
});

test("the progress flag shows only for work that outlasts the delay", async () => {
  const seen = [];
  const set = delayedFlag(() => seen.push("show"), () => seen.push("hide"), 20);
  set(true);
  set(false);
  await new Promise((r) => setTimeout(r, 40));
  assert.deepEqual(seen, ["hide"]);
  set(true);
  await new Promise((r) => setTimeout(r, 40));
  set(false);
  assert.deepEqual(seen, ["hide", "show", "hide"]);
});
