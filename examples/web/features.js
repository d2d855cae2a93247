// From pen strokes to the model's 64 features, the way the digits data was made.
//
// sklearn's digits (UCI "optdigits") come from 32x32 binary bitmaps of handwritten digits,
// each size-normalized to its box, divided into non-overlapping 4x4 blocks; a feature is the
// number of "on" pixels in its block, 0..16, and the 64 blocks are read row by row. In that
// data every digit touches the top and bottom of the box, and about 30% of the 1,024 pixels
// are on: a pen five pixels wide gives a digit drawn here about as much ink.
//
// Here the strokes are polylines in any coordinates (canvas pixels, say). They are scaled,
// keeping their aspect ratio, so that the ink fills the 32x32 box along its longer side and
// is centered along the other; a pixel is on when its center lies within half a pen width of
// a stroke. Plain arithmetic on doubles, no canvas: the same strokes give the same features
// in every browser and in Node.js.

export const BITMAP_SIZE = 32;
export const BLOCK_SIZE = 4;
export const GRID_SIZE = BITMAP_SIZE / BLOCK_SIZE; // 8
export const N_FEATURES = GRID_SIZE * GRID_SIZE; // 64
/** Pen width in bitmap pixels, after normalization. */
export const PEN_WIDTH = 5;

/**
 * Map strokes ([[{x, y}, ...], ...]) into bitmap coordinates.
 *
 * Returns new strokes whose ink (the centerlines widened by the pen) fits the
 * BITMAP_SIZE box: the longer side of the drawing spans it, the shorter is centered.
 */
export function normalizeStrokes(strokes, penWidth = PEN_WIDTH) {
  const points = strokes.flat();
  if (points.length === 0) return [];
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const extent = Math.max(maxX - minX, maxY - minY);
  const scale = extent > 0 ? (BITMAP_SIZE - penWidth) / extent : 0;
  const cx = (minX + maxX) / 2;
  const cy = (minY + maxY) / 2;
  const half = BITMAP_SIZE / 2;
  return strokes.map((stroke) => stroke.map((p) => ({
    x: half + (p.x - cx) * scale,
    y: half + (p.y - cy) * scale,
  })));
}

function distanceToSegment(px, py, a, b) {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const length2 = dx * dx + dy * dy;
  const t = length2 > 0 ? Math.max(0, Math.min(1, ((px - a.x) * dx + (py - a.y) * dy) / length2)) : 0;
  return Math.hypot(px - (a.x + t * dx), py - (a.y + t * dy));
}

/**
 * Rasterize normalized strokes into a BITMAP_SIZE x BITMAP_SIZE bitmap of 0/1, row by row.
 * A stroke of one point is a dot.
 */
export function rasterize(normalized, penWidth = PEN_WIDTH) {
  const bitmap = new Uint8Array(BITMAP_SIZE * BITMAP_SIZE);
  const radius = penWidth / 2;
  const segments = normalized.flatMap((stroke) =>
    stroke.length === 1 ? [[stroke[0], stroke[0]]] : stroke.slice(1).map((p, i) => [stroke[i], p]));
  for (let row = 0; row < BITMAP_SIZE; row++) {
    for (let col = 0; col < BITMAP_SIZE; col++) {
      const px = col + 0.5;
      const py = row + 0.5;
      if (segments.some(([a, b]) => distanceToSegment(px, py, a, b) <= radius)) {
        bitmap[row * BITMAP_SIZE + col] = 1;
      }
    }
  }
  return bitmap;
}

/** Count the on pixels of each 4x4 block: 64 values 0..16, row by row. */
export function blockCounts(bitmap) {
  const features = new Float32Array(N_FEATURES);
  for (let row = 0; row < BITMAP_SIZE; row++) {
    for (let col = 0; col < BITMAP_SIZE; col++) {
      const block = Math.floor(row / BLOCK_SIZE) * GRID_SIZE + Math.floor(col / BLOCK_SIZE);
      features[block] += bitmap[row * BITMAP_SIZE + col];
    }
  }
  return features;
}

/** Strokes in any coordinates -> { bitmap (32x32 of 0/1), features (64 of 0..16) }. */
export function featuresFromStrokes(strokes, penWidth = PEN_WIDTH) {
  const bitmap = rasterize(normalizeStrokes(strokes, penWidth), penWidth);
  return { bitmap, features: blockCounts(bitmap) };
}
