// Hit-testing and readouts: from a mouse position to a map pixel (pure, unit-tested).

/**
 * The map pixel under a point given in CSS pixels relative to the drawn element.
 * Returns null outside the element.
 */
export function pixelAt(offsetX, offsetY, cssWidth, cssHeight, width, height) {
  if (!(cssWidth > 0 && cssHeight > 0)) return null;
  if (offsetX < 0 || offsetY < 0 || offsetX >= cssWidth || offsetY >= cssHeight) return null;
  const x = Math.min(width - 1, Math.floor((offsetX / cssWidth) * width));
  const y = Math.min(height - 1, Math.floor((offsetY / cssHeight) * height));
  return { y, x };
}

/** The value at (y, x) of a row-major map of the given width. */
export function valueAt(map, width, y, x) {
  return map[y * width + x];
}

/** A short, fixed-width-ish number for readouts: 3 significant digits, exponent when tiny/huge. */
export function formatValue(v) {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e-3 && a < 1e4 ? v.toPrecision(3) : v.toExponential(2);
}

/** CSS left/top/size (in CSS pixels) of the square that marks map pixel (y, x). */
export function markerBox(y, x, cssWidth, cssHeight, width, height) {
  const w = cssWidth / width;
  const h = cssHeight / height;
  return { left: x * w, top: y * h, width: Math.max(w, 4), height: Math.max(h, 4) };
}

/** Centre (CSS pixels) and diameter of the ring that marks map pixel (y, x): never under `min`. */
export function markerRing(y, x, cssWidth, cssHeight, width, height, min = 18) {
  const w = cssWidth / width;
  const h = cssHeight / height;
  return { cx: (x + 0.5) * w, cy: (y + 0.5) * h, size: Math.max(min, 2 * Math.max(w, h) + 6) };
}
