// Compositing a relevance map over an image into RGBA pixels (pure, unit-tested).
import { lutFor, lutIndex, mapScale, normalise } from "./colormap.js";

/** The underlay of an RGB pixel: its luminance, halfway to white. */
export function washedGrey(r, g, b) {
  return 127.5 + 0.5 * (0.299 * r + 0.587 * g + 0.114 * b);
}

/**
 * Composite one map over an RGB image.
 *
 * The image is shown as a washed-out grey by default (so that the colours of the map stand out), and
 * alpha = opacity * sqrt(|n|): zero relevance shows the grey image, the strongest relevance the
 * pure colour (at opacity 1). Without an image (or showImage false) the pure colour map is drawn.
 *
 * @param {object} o
 * @param {Float32Array} o.map  height*width values, row-major
 * @param {Uint8Array|null} o.image  height*width*3 RGB bytes, or null
 * @param {"signed"|"positive"} o.mode
 * @param {number} o.opacity  0..1
 * @param {boolean} o.showImage
 * @param {boolean} [o.colour]  the underlay in its own colours instead of washed-out grey
 * @param {number} [o.scale]  normalisation scale; defaults to mapScale(map, mode)
 * @returns {Uint8ClampedArray} height*width*4 RGBA bytes
 */
export function composite({ map, image, mode, opacity, showImage, colour = false, scale }) {
  const s = scale ?? mapScale(map, mode);
  const lut = lutFor(mode);
  const n = map.length;
  const out = new Uint8ClampedArray(n * 4);
  const blend = showImage && image && image.length >= n * 3;
  for (let i = 0; i < n; i++) {
    const v = normalise(map[i], mode, s);
    const k = lutIndex(v, mode) * 3;
    const a = blend ? opacity * Math.sqrt(Math.abs(v)) : 1;
    const grey = blend && !colour ? washedGrey(image[i * 3], image[i * 3 + 1], image[i * 3 + 2]) : 0;
    for (let c = 0; c < 3; c++) {
      const under = blend ? (colour ? image[i * 3 + c] : grey) : 0;
      out[i * 4 + c] = Math.round(under * (1 - a) + lut[k + c] * a);
    }
    out[i * 4 + 3] = 255;
  }
  return out;
}
