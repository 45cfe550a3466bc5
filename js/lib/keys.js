// Keyboard navigation (pure, unit-tested).

const STEPS = {
  ArrowLeft: [0, -1],
  ArrowRight: [0, 1],
  ArrowUp: [-1, 0],
  ArrowDown: [1, 0],
};

/**
 * The pixel a key moves the cursor to, or null for keys that do not move it.
 * Shift moves by `big` pixels; Home/End jump to the row's ends. The cursor stays on the map.
 */
export function moveCursor(cursor, key, height, width, { shift = false, big = 8 } = {}) {
  const clamp = (v, n) => Math.max(0, Math.min(n - 1, v));
  if (key === "Home") return { y: cursor.y, x: 0 };
  if (key === "End") return { y: cursor.y, x: width - 1 };
  const step = STEPS[key];
  if (!step) return null;
  const k = shift ? big : 1;
  return { y: clamp(cursor.y + step[0] * k, height), x: clamp(cursor.x + step[1] * k, width) };
}

/** The index focus moves to in a wrapped grid of `n` items with `columns` per row, or null. */
export function gridStep(index, key, n, columns) {
  const c = Math.max(1, columns);
  const to = {
    ArrowLeft: index - 1,
    ArrowRight: index + 1,
    ArrowUp: index - c,
    ArrowDown: index + c,
    Home: 0,
    End: n - 1,
  }[key];
  if (to === undefined) return null;
  return Math.max(0, Math.min(n - 1, to));
}
