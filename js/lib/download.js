// Downloads in the browser: a Blob handed to an <a download>; nothing is written on the server.

/** A file name from the shown state: clrp_<target>_<contrast>[_<layer>][_c<ch>...].<ext>. */
export function fileName(state, ext, { neurons = false } = {}) {
  const parts = ["clrp", state.target_name ?? state.target, state.contrast];
  if (state.contrast === "pairwise" && state.class_b !== undefined) parts.push(`vs${state.class_b}`);
  if (neurons && state.layer) parts.push(state.layer, ...(state.channels || []).map((c) => `c${c}`));
  const safe = parts
    .filter((p) => p !== undefined && p !== null && p !== "")
    .map((p) => String(p).replace(/[^A-Za-z0-9.+-]+/g, "-").replace(/^-+|-+$/g, ""))
    .filter(Boolean);
  return `${safe.join("_") || "clrp"}.${ext}`;
}

/** Save a Blob as `name` through a temporary object URL. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.style.display = "none";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
