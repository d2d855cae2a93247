// The page: load the model, turn a drawing into 64 features, score it; score dropped CSVs.
//
// Served over HTTP (the wasm files do not load from file://): `python examples/web/serve.py`
// from the repository root, then open the address it prints. `?model=URL` loads another
// model that follows the contract (input X float32 [N, 64]; output probabilities float32
// [N, 10], and label int64 [N] when the graph has ArgMax).

import * as ort from "onnxruntime-web";
import { formatResults, parseCsv } from "./csv.js";
import { BITMAP_SIZE, featuresFromStrokes, GRID_SIZE, N_FEATURES } from "./features.js";

const N_CLASSES = 10;
const params = new URLSearchParams(location.search);
const MODEL_URL = new URL(params.get("model") ?? "../../artifacts/model.onnx", location.href);

const $ = (id) => document.getElementById(id);
const status = $("status");

// One wasm thread: no worker files to locate and no cross-origin isolation needed.
ort.env.wasm.numThreads = 1;

async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Fetch the model, check it against the model.json beside it, and open a session. */
async function loadModel() {
  const response = await fetch(MODEL_URL);
  if (!response.ok) throw new Error(`${MODEL_URL.pathname}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const manifestResponse = await fetch(new URL("model.json", MODEL_URL));
  let checked = "no model.json beside it: sha256 not checked";
  if (manifestResponse.ok) {
    const manifest = await manifestResponse.json();
    if ((await sha256Hex(bytes)) !== manifest.model.sha256) {
      throw new Error(`${MODEL_URL.pathname} does not match the sha256 in model.json`);
    }
    checked = `recipe ${manifest.recipe}, sha256 checked`;
  }
  const session = await ort.InferenceSession.create(bytes);
  if (!session.inputNames.includes("X") || !session.outputNames.includes("probabilities")) {
    throw new Error(`${MODEL_URL.pathname}: expected input X and output probabilities, found ` +
      `${session.inputNames} -> ${session.outputNames}`);
  }
  return { session, description: `${MODEL_URL.pathname} (${checked}), onnxruntime-web ${ort.env.versions.web}` };
}

function argmaxRows(probabilities, rows) {
  return Array.from({ length: rows }, (_, i) => {
    let best = 0;
    for (let k = 1; k < N_CLASSES; k++) {
      if (probabilities[i * N_CLASSES + k] > probabilities[i * N_CLASSES + best]) best = k;
    }
    return best;
  });
}

let session = null;
let queue = Promise.resolve();

/** Score rows*64 features; runs one at a time. Models without a label output get an argmax. */
function score(X, rows) {
  const run = async () => {
    if (session === null) throw new Error("the model is not loaded yet");
    const outputs = await session.run({ X: new ort.Tensor("float32", X, [rows, N_FEATURES]) });
    const probabilities = outputs.probabilities.data;
    const labels = outputs.label ? Array.from(outputs.label.data, Number) : argmaxRows(probabilities, rows);
    return { labels, probabilities };
  };
  const result = queue.then(run);
  queue = result.catch(() => {});
  return result;
}

// --- drawing ---------------------------------------------------------------------------

const pad = $("pad");
const pen = pad.getContext("2d");
const strokes = [];
let current = null;

function resizePad() {
  const ratio = window.devicePixelRatio || 1;
  pad.width = pad.clientWidth * ratio;
  pad.height = pad.clientHeight * ratio;
  pen.setTransform(ratio, 0, 0, ratio, 0, 0);
  redraw();
}

function redraw() {
  pen.clearRect(0, 0, pad.width, pad.height);
  pen.lineWidth = 18;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.strokeStyle = "#111";
  for (const stroke of strokes) {
    pen.beginPath();
    pen.moveTo(stroke[0].x, stroke[0].y);
    for (const p of stroke.length === 1 ? [stroke[0]] : stroke.slice(1)) pen.lineTo(p.x, p.y);
    pen.stroke();
  }
}

const pointOf = (event) => {
  const box = pad.getBoundingClientRect();
  return { x: event.clientX - box.left, y: event.clientY - box.top };
};

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  document.body.dataset.pointer = event.pointerType;
  current = [pointOf(event)];
  strokes.push(current);
  redraw();
});
pad.addEventListener("pointermove", (event) => {
  if (current === null) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) current.push(pointOf(e));
  redraw();
});
const endStroke = () => {
  if (current === null) return;
  current = null;
  predictDrawing();
};
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("clear").addEventListener("click", () => {
  strokes.length = 0;
  redraw();
  showPrediction(null);
});

// --- what the model saw and said ---------------------------------------------------------

const bars = Array.from({ length: N_CLASSES }, (_, k) => {
  const li = document.createElement("li");
  li.dataset.digit = String(k);
  li.innerHTML = `<span>${k}</span><span class="bar"><span class="fill" style="width:0"></span></span>` +
    `<span class="value"></span>`;
  $("bars").append(li);
  return li;
});

function paintCells(canvas, values, size, max) {
  const ctx = canvas.getContext("2d");
  const cell = canvas.width / size;
  values.forEach((v, i) => {
    const shade = Math.round(255 * (1 - v / max));
    ctx.fillStyle = `rgb(${shade},${shade},${shade})`;
    ctx.fillRect((i % size) * cell, Math.floor(i / size) * cell, cell, cell);
  });
}

function showPrediction(result) {
  const { bitmap, features, label, probabilities } = result ?? {
    bitmap: new Uint8Array(BITMAP_SIZE * BITMAP_SIZE),
    features: new Float32Array(N_FEATURES),
    label: null,
    probabilities: null,
  };
  paintCells($("bitmap"), bitmap, BITMAP_SIZE, 1);
  paintCells($("grid"), features, GRID_SIZE, 16);
  $("bitmap").dataset.bitmap = bitmap.join("");
  $("grid").dataset.features = JSON.stringify(Array.from(features));
  $("prediction").textContent = label === null ? "?" : String(label);
  $("prediction").dataset.label = label === null ? "" : String(label);
  $("confidence").textContent = label === null ? "" : `${(100 * probabilities[label]).toFixed(1)}%`;
  bars.forEach((li, k) => {
    const p = probabilities ? probabilities[k] : 0;
    li.dataset.probability = probabilities ? String(p) : "";
    li.classList.toggle("top", k === label);
    li.querySelector(".fill").style.width = `${(100 * p).toFixed(2)}%`;
    li.querySelector(".value").textContent = probabilities ? p.toFixed(4) : "";
  });
}

async function predictDrawing() {
  if (session === null || strokes.length === 0) return;
  const { bitmap, features } = featuresFromStrokes(strokes);
  const { labels, probabilities } = await score(features, 1);
  showPrediction({ bitmap, features, label: labels[0], probabilities });
  document.body.dataset.predictions = String(Number(document.body.dataset.predictions) + 1);
}

// --- a dropped CSV file ------------------------------------------------------------------

const SHOWN_ROWS = 20;
let downloadUrl = null;

async function scoreFile(file) {
  $("csv-error").hidden = true;
  try {
    const { rows, X, ids, truth } = parseCsv(await file.text(), file.name);
    const { labels, probabilities } = await score(X, rows);
    const csv = formatResults({ ids, labels, probabilities });
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
    const link = $("csv-download");
    link.href = downloadUrl;
    link.download = `${file.name.replace(/\.csv$/i, "")}.pred.csv`;
    link.hidden = false;
    const right = truth ? labels.filter((label, i) => label === truth[i]).length : null;
    $("csv-summary").textContent = `${file.name}: ${rows} rows scored` +
      (truth ? `; ${right}/${rows} labels match its truth column (${(100 * right / rows).toFixed(2)}%)` : "") +
      (rows > SHOWN_ROWS ? `; the first ${SHOWN_ROWS} below` : "");
    const body = $("csv-table").querySelector("tbody");
    body.replaceChildren(...labels.slice(0, SHOWN_ROWS).map((label, i) => {
      const tr = document.createElement("tr");
      const cells = [ids ? ids[i] : i, label, probabilities[i * N_CLASSES + label].toFixed(4), truth ? truth[i] : ""];
      tr.replaceChildren(...cells.map((value) => Object.assign(document.createElement("td"), { textContent: value })));
      return tr;
    }));
    $("csv-table").hidden = false;
    document.body.dataset.csvScored = String(Number(document.body.dataset.csvScored) + 1);
  } catch (err) {
    $("csv-error").textContent = err.message;
    $("csv-error").hidden = false;
    document.body.dataset.csvFailed = String(Number(document.body.dataset.csvFailed ?? 0) + 1);
  }
}

const dropzone = $("dropzone");
dropzone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropzone.classList.add("over");
});
dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropzone.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) scoreFile(file);
});
$("csv-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) scoreFile(file);
});

// --- start -------------------------------------------------------------------------------

resizePad();
window.addEventListener("resize", resizePad);
showPrediction(null);
loadModel().then((loaded) => {
  session = loaded.session;
  status.textContent = `Model: ${loaded.description}.`;
  document.body.dataset.ready = "true";
  predictDrawing();
}).catch((err) => {
  status.textContent = `The model could not be loaded: ${err.message}`;
  document.body.dataset.ready = "error";
});
