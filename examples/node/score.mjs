#!/usr/bin/env node
// Score a CSV of 64-pixel digit rows with the digits-onnx model in Node.js.
//
//   node score.mjs [--backend web|node] [--model PATH] [--proba] FILE.csv   ('-' or no FILE: stdin)
//
// Prints `label,confidence` per input row (with --proba also p0..p9), in input order.
// --backend web (the default) runs onnxruntime-web on its WebAssembly backend: nothing native.
// --backend node runs onnxruntime-node, the native binding shipped inside its npm package
// (its install script, which downloads extra binaries, is skipped: see .npmrc).
// The contract (see docs/embedding.md): input X float32 [N, 64], pixels 0..16 row by row;
// outputs probabilities float32 [N, 10] and, when the graph has ArgMax, label int64 [N]; a
// model without `label` (the probabilities profile) gets the argmax taken here.
//
// A header line is recognised by a non-numeric first row. With a header, the 64 columns named
// pixel_* are used when present (so id and label columns may sit beside them); otherwise a
// row must have exactly 64 numeric columns. Exit codes: 0 ok, 2 usage, 65 bad data,
// 66 missing input.

import { createReadStream, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const N_FEATURES = 64;
const N_CLASSES = 10;
const CHUNK_ROWS = 4096;
const HERE = dirname(fileURLToPath(import.meta.url));
const DEFAULT_MODEL = resolve(HERE, "../../artifacts/model.onnx");
const BACKENDS = { web: "onnxruntime-web", node: "onnxruntime-node" };

class UsageError extends Error { exitCode = 2; }
class DataError extends Error { exitCode = 65; }

function parseArgs(argv) {
  const args = { backend: "web", model: DEFAULT_MODEL, proba: false, input: "-" };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--model") {
      if (i + 1 >= argv.length) throw new UsageError("--model needs a path");
      args.model = argv[++i];
    } else if (arg === "--backend") {
      if (!Object.hasOwn(BACKENDS, argv[i + 1] ?? "")) throw new UsageError("--backend takes web or node");
      args.backend = argv[++i];
    } else if (arg === "--proba") args.proba = true;
    else if (arg === "-h" || arg === "--help") {
      process.stdout.write("usage: node score.mjs [--backend web|node] [--model PATH] [--proba] [FILE.csv|-]\n");
      process.exit(0);
    } else if (arg.startsWith("--")) throw new UsageError(`unknown option ${arg}`);
    else rest.push(arg);
  }
  if (rest.length > 1) throw new UsageError("give one input file");
  if (rest.length === 1) args.input = rest[0];
  return args;
}

// The first largest, as ONNX ArgMax and numpy.argmax break ties.
function argmax(p) {
  let best = 0;
  for (let k = 1; k < p.length; k++) if (p[k] > p[best]) best = k;
  return best;
}

const isNumber = (token) => token.trim() !== "" && Number.isFinite(Number(token));

// Which cells of a row hold the 64 pixels, decided once from the first line.
function featureColumns(cells, name) {
  if (cells.every(isNumber)) {
    if (cells.length !== N_FEATURES) {
      throw new DataError(`${name}: line 1: expected ${N_FEATURES} columns, found ${cells.length}`);
    }
    return { header: false, columns: [...Array(N_FEATURES).keys()] };
  }
  const names = cells.map((c) => c.trim().replace(/^"|"$/g, ""));
  const pixels = names.flatMap((n, i) => (n.startsWith("pixel_") ? [i] : []));
  if (pixels.length === N_FEATURES) return { header: true, columns: pixels, width: cells.length };
  if (cells.length === N_FEATURES) return { header: true, columns: [...Array(N_FEATURES).keys()] };
  throw new DataError(`${name}: line 1: header has ${cells.length} columns and ` +
    `${pixels.length} pixel_* names; expected ${N_FEATURES} pixel columns`);
}

async function* rowChunks(stream, name) {
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let layout = null;
  let lineNo = 0;
  let buffer = new Float32Array(CHUNK_ROWS * N_FEATURES);
  let n = 0;
  for await (const raw of lines) {
    lineNo++;
    const line = lineNo === 1 ? raw.replace(/^\uFEFF/, "") : raw;
    if (line.trim() === "") continue;
    const cells = line.split(",");
    if (layout === null) {
      layout = featureColumns(cells, name);
      if (layout.header) continue;
    }
    const width = layout.width ?? N_FEATURES;
    if (cells.length !== width) {
      throw new DataError(`${name}: line ${lineNo}: expected ${width} columns, found ${cells.length}`);
    }
    layout.columns.forEach((col, k) => {
      const token = cells[col];
      if (!isNumber(token)) {
        throw new DataError(`${name}: line ${lineNo}, column ${col + 1}: ` +
          `${JSON.stringify(token)} is not a number`);
      }
      buffer[n * N_FEATURES + k] = Number(token);
    });
    if (++n === CHUNK_ROWS) {
      yield buffer;
      buffer = new Float32Array(CHUNK_ROWS * N_FEATURES);
      n = 0;
    }
  }
  if (n > 0) yield buffer.subarray(0, n * N_FEATURES);
}

async function main(argv) {
  const args = parseArgs(argv);
  const ort = await import(BACKENDS[args.backend]);
  if (args.backend === "web") ort.env.wasm.numThreads = 1; // no worker files to locate
  let modelBytes;
  try {
    modelBytes = readFileSync(args.model);
  } catch (err) {
    throw Object.assign(new Error(`${args.model}: ${err.code === "ENOENT" ? "no such file" : err.message}`), { exitCode: 66 });
  }
  const session = await ort.InferenceSession.create(modelBytes);
  const stream = args.input === "-" ? process.stdin : createReadStream(args.input);
  const name = args.input === "-" ? "<stdin>" : args.input;
  const opened = new Promise((ok, fail) => {
    if (args.input === "-") ok();
    stream.once("open", ok).once("error", (err) => fail(
      Object.assign(new Error(`${name}: ${err.code === "ENOENT" ? "no such file" : err.message}`), { exitCode: 66 })));
  });
  await opened;

  const header = args.proba
    ? ["label", "confidence", ...[...Array(N_CLASSES).keys()].map((k) => `p${k}`)]
    : ["label", "confidence"];
  const out = [header.join(",")];
  for await (const chunk of rowChunks(stream, name)) {
    const rows = chunk.length / N_FEATURES;
    const X = new ort.Tensor("float32", chunk, [rows, N_FEATURES]);
    const { label, probabilities } = await session.run({ X });
    const p = probabilities.data;
    for (let i = 0; i < rows; i++) {
      const k = label ? Number(label.data[i]) : argmax(p.subarray(i * N_CLASSES, (i + 1) * N_CLASSES));
      const line = [k, p[i * N_CLASSES + k]];
      if (args.proba) line.push(...p.subarray(i * N_CLASSES, (i + 1) * N_CLASSES));
      out.push(line.join(","));
    }
    process.stdout.write(out.join("\n") + "\n");
    out.length = 0;
  }
}

// A closed pipe (`| head`) ends the output quietly, like other command-line tools.
process.stdout.on("error", (err) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`error: ${err.message}\n`);
  process.exit(err.exitCode ?? 1);
});
