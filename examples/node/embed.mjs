import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-web";

const repo = new URL("../../", import.meta.url); // the repository root, from this file
const bytes = readFileSync(new URL("artifacts/model.onnx", repo));
const manifest = JSON.parse(readFileSync(new URL("artifacts/model.json", repo), "utf8"));
if (createHash("sha256").update(bytes).digest("hex") !== manifest.model.sha256) {
  throw new Error("model.onnx does not match model.json");
}
ort.env.wasm.numThreads = 1;
const session = await ort.InferenceSession.create(bytes);

const csv = readFileSync(new URL("examples/digits_test.csv", repo), "utf8");
const rows = csv.trim().split("\n").slice(1); // id, pixel_0_0 .. pixel_7_7, label
const pixels = Float32Array.from(rows.flatMap((r) => r.split(",").slice(1, 65).map(Number)));
const X = new ort.Tensor("float32", pixels, [rows.length, 64]);
const { label } = await session.run({ X });
console.log(manifest.recipe, manifest.metrics.test_accuracy);
console.log(Array.from(label.data.slice(0, 10), Number).join(" "));
