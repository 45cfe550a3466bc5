// Small DOM and buffer helpers. Every label goes through textContent: nothing is parsed as HTML.

/** Create an element with attributes and (escaped) text content. */
export function h(tag, attrs = {}, text = null) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== null) el.textContent = String(text);
  return el;
}

/** "map_version" -> "mapVersion" (the dataset key for the attribute data-map-version). */
export function datasetKey(name) {
  return name.replace(/[_-]+([a-z0-9])/g, (_, c) => c.toUpperCase());
}

/** Mirror a flat state object onto data-* attributes (arrays and objects as JSON). */
export function mirrorState(el, state) {
  for (const [k, v] of Object.entries(state || {})) {
    el.dataset[datasetKey(k)] = typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
  }
}

/** Bytes from a binary trait (DataView, ArrayBuffer or typed array) as an aligned copy. */
function bytesOf(value) {
  if (!value) return new Uint8Array(0);
  if (value instanceof ArrayBuffer) return new Uint8Array(value.slice(0));
  const { buffer, byteOffset, byteLength } = value;
  return new Uint8Array(buffer.slice(byteOffset, byteOffset + byteLength));
}

export function toFloat32(value) {
  const b = bytesOf(value);
  return new Float32Array(b.buffer, 0, Math.floor(b.byteLength / 4));
}

export function toUint8(value) {
  return bytesOf(value);
}

/** Show a progress bar only when work lasts longer than `delay` ms. Returns a setter. */
export function delayedFlag(onShow, onHide, delay = 400) {
  let timer = null;
  return (busy) => {
    if (busy && timer === null) {
      timer = setTimeout(onShow, delay);
    } else if (!busy) {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      onHide();
    }
  };
}

/** A `delayedFlag` that shows `progress` and mirrors it as `data-busy` on `root`. */
export function busyIndicator(root, progress, delay = 400) {
  const show = (busy) => {
    progress.hidden = !busy;
    root.dataset.busy = busy ? "1" : "0";
  };
  return delayedFlag(() => show(true), () => show(false), delay);
}
