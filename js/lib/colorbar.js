// Colour bars: what the colours of a map mean, with the numbers and units (pure parts unit-tested).
import { lutFor } from "./colormap.js";
import { formatValue } from "./hit.js";

/**
 * The labels of a colour bar: `ticks` (left, middle, right) and a one-line `legend`.
 * Signed maps run blue (against) ... white (0) ... red (for); positive maps 0 ... max.
 */
export function colourBarLabels(mode, scale, units, subject = "the target") {
  const u = units ? `${units}: ` : "";
  if (mode === "signed") {
    return {
      ticks: [`−${formatValue(scale)}`, "0", `+${formatValue(scale)}`],
      legend: `${u}red for ${subject}, blue against`,
    };
  }
  return {
    ticks: ["0", formatValue(scale / 2), formatValue(scale)],
    legend: `${u}red for ${subject} (negatives hidden)`,
  };
}

/** RGBA pixels (width x 1) of a horizontal colour-bar gradient for a display mode. */
export function gradientPixels(mode, width) {
  const lut = lutFor(mode);
  const out = new Uint8ClampedArray(width * 4);
  for (let i = 0; i < width; i++) {
    const k = Math.round((i / Math.max(width - 1, 1)) * 255) * 3;
    out.set([lut[k], lut[k + 1], lut[k + 2], 255], i * 4);
  }
  return out;
}
