// Snapshot mode (exported HTML, no kernel): embedded 8-bit maps and local channel selection.

/** True in a page that renders saved widget state with no kernel (the offline HTML export). */
export function isSnapshot(win = globalThis) {
  if (win.CLRP_SNAPSHOT === true) return true;
  return false;
}

/** zlib ("deflate") bytes -> Uint8Array, with the browser's DecompressionStream. */
export async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** uint8 codes (128 = 0, +-127 = +-scale) of `scales.length` maps -> one Float32Array each. */
export function dequantise(codes, scales, size) {
  return scales.map((s, i) => {
    const out = new Float32Array(size);
    for (let j = 0; j < size; j++) out[j] = ((codes[i * size + j] - 128) / 127) * s;
    return out;
  });
}

/** Toggle a channel in a selection of at most two (the newest two win), like the kernel does. */
export function toggleChannel(channels, channel) {
  const kept = channels.filter((c) => c !== channel);
  return kept.length === channels.length ? [...kept, channel].slice(-2) : kept;
}
