// Colour maps and normalisation shared by every widget front end (pure functions, unit-tested).
import anchors from "../../clrp_widgets/widgets/colormaps.json" with { type: "json" };

/** A 256-entry RGB lookup table (Uint8Array of length 768) built from [pos, r, g, b] anchors. */
export function buildLut(points) {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    let k = 0;
    while (k < points.length - 2 && t > points[k + 1][0]) k++;
    const [p0, ...c0] = points[k];
    const [p1, ...c1] = points[k + 1];
    const f = p1 > p0 ? Math.min(1, Math.max(0, (t - p0) / (p1 - p0))) : 0;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = Math.round(c0[c] + f * (c1[c] - c0[c]));
  }
  return lut;
}

export const LUTS = {
  diverging: buildLut(anchors.diverging),
  sequential: buildLut(anchors.sequential),
};

/** The colour map a display mode uses: diverging for signed maps, sequential for positive ones. */
export function lutFor(mode) {
  return mode === "signed" ? LUTS.diverging : LUTS.sequential;
}

/**
 * The normalisation scale of a map: max |v| for "signed", max(v, 0) for "positive".
 * Returns 1 for an all-zero (or all-negative, in positive mode) map so that it draws blank.
 */
export function mapScale(values, mode) {
  let s = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) continue;
    const a = mode === "signed" ? Math.abs(v) : v;
    if (a > s) s = a;
  }
  return s > 0 ? s : 1;
}

/**
 * Map a value to [-1, 1] ("signed") or [0, 1] ("positive": negatives clip to 0), and to a LUT index.
 */
export function normalise(v, mode, scale) {
  if (!Number.isFinite(v)) return 0;
  const n = mode === "signed" ? v / scale : Math.max(v, 0) / scale;
  return Math.max(-1, Math.min(1, n));
}

export function lutIndex(n, mode) {
  const t = mode === "signed" ? (n + 1) / 2 : n;
  return Math.round(Math.max(0, Math.min(1, t)) * 255);
}
