// CSV of 64-pixel digit rows -> Float32Array, with the rules of examples/node/score.mjs:
// a header is recognised by a non-numeric first row; with a header, the 64 columns named
// pixel_* are used when present (so id and label columns may sit beside them), otherwise a row
// must have exactly 64 numeric columns. An `id` column names the output rows; a `label` or
// `target` column is taken as the truth, for an accuracy.

export const N_FEATURES = 64;
export const N_CLASSES = 10;
const TRUTH_COLUMNS = ["label", "target"];

export class CsvError extends Error {}

const isNumber = (token) => token.trim() !== "" && Number.isFinite(Number(token));
const unquote = (cell) => cell.trim().replace(/^"|"$/g, "");

function layoutOf(cells, name) {
  if (cells.every(isNumber)) {
    if (cells.length !== N_FEATURES) {
      throw new CsvError(`${name}: line 1: expected ${N_FEATURES} columns, found ${cells.length}`);
    }
    return { header: false, width: N_FEATURES, pixels: [...Array(N_FEATURES).keys()] };
  }
  const names = cells.map(unquote);
  const named = names.flatMap((n, i) => (n.startsWith("pixel_") ? [i] : []));
  const pixels = named.length === N_FEATURES ? named
    : cells.length === N_FEATURES ? [...Array(N_FEATURES).keys()] : null;
  if (pixels === null) {
    throw new CsvError(`${name}: line 1: header has ${cells.length} columns and ` +
      `${named.length} pixel_* names; expected ${N_FEATURES} pixel columns`);
  }
  const id = names.indexOf("id");
  const truth = names.findIndex((n) => TRUTH_COLUMNS.includes(n));
  return { header: true, width: cells.length, pixels, id: id >= 0 ? id : null, truth: truth >= 0 ? truth : null };
}

/**
 * Parse CSV text. Returns { rows, X (Float32Array rows*64), ids (strings or null), truth
 * (numbers or null) }. Throws CsvError naming the line and column of the first bad cell.
 */
export function parseCsv(text, name = "input") {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  let layout = null;
  const values = [];
  const ids = [];
  const truth = [];
  lines.forEach((line, index) => {
    if (line.trim() === "") return;
    const lineNo = index + 1;
    const cells = line.split(",");
    if (layout === null) {
      layout = layoutOf(cells, name);
      if (layout.header) return;
    }
    if (cells.length !== layout.width) {
      throw new CsvError(`${name}: line ${lineNo}: expected ${layout.width} columns, found ${cells.length}`);
    }
    for (const col of layout.pixels) {
      if (!isNumber(cells[col])) {
        throw new CsvError(`${name}: line ${lineNo}, column ${col + 1}: ` +
          `${JSON.stringify(cells[col])} is not a number`);
      }
      values.push(Number(cells[col]));
    }
    if (layout.id != null) ids.push(unquote(cells[layout.id]));
    if (layout.truth != null) truth.push(Number(cells[layout.truth]));
  });
  if (layout === null) throw new CsvError(`${name}: no rows`);
  const rows = values.length / N_FEATURES;
  return {
    rows,
    X: Float32Array.from(values),
    ids: layout.id != null ? ids : null,
    truth: layout.truth != null ? truth : null,
  };
}

/** The scored rows as CSV: row (0-based, or the id column), label, confidence, p0..p9. */
export function formatResults({ ids, labels, probabilities }) {
  const header = ["row", "label", "confidence", ...[...Array(N_CLASSES).keys()].map((k) => `p${k}`)];
  const lines = [header.join(",")];
  labels.forEach((label, i) => {
    const p = probabilities.subarray(i * N_CLASSES, (i + 1) * N_CLASSES);
    lines.push([ids ? ids[i] : i, label, p[label], ...p].join(","));
  });
  return lines.join("\n") + "\n";
}
