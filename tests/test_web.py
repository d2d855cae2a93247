"""examples/web/ in a real browser: headless Chromium, driven by selenium through ChromeDriver.

The test starts the page's own server (``examples/web/serve.py``) on a free port, draws digits
with synthetic mouse and touch pointer events, and checks that what the page shows (the 64
features it computed, its prediction and its ten probabilities) equals Python onnxruntime on
the same 64 features. A dropped CSV of the golden rows puts the browser in the runtime matrix
for each export profile. Screenshots land in ``test-artifacts/web/``.

Chromium and ChromeDriver come from Debian (``apt-get install chromium chromium-driver``;
``.ci/run`` installs them). Without them the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from digits_onnx.inference import contract

from tests.runtime_matrix import (
    BUNDLED,
    REPO,
    check_runtime,
    golden_csv,
    in_ci,
    profile_params,
)

WEB_DIR = REPO / "examples" / "web"
SCREENSHOTS = REPO / "test-artifacts" / "web"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1100,1000",
]
TIMEOUT = 30.0

# Strokes as offsets in CSS pixels from the centre of the 280x280 drawing pad.
SEVEN = [[(-60, -100), (-20, -100), (20, -100), (55, -100), (40, -50), (15, 0), (-5, 50),
          (-20, 100)]]
ZERO = [[(round(55 * math.sin(a)), round(-95 * math.cos(a)))
         for a in np.linspace(0, 2 * math.pi, 25)]]


def require(what: str, found: object, fix: str) -> None:
    if not found:
        message = f"{what} is missing: {fix}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    require("onnxruntime-web for the page", (WEB_DIR / "node_modules" / "onnxruntime-web").is_dir(),
            "run `npm ci --prefix examples/web`")
    proc = subprocess.Popen([sys.executable, str(WEB_DIR / "serve.py"), "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    fix = "apt-get install chromium chromium-driver (.ci/run does it)"
    require("Chromium", chromium, fix)
    require("ChromeDriver", chromedriver, fix)
    from selenium import webdriver  # in the dev extra
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(chromedriver)))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, what: str):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = condition(driver)
        if value:
            return value
        time.sleep(0.05)
    logs = [entry["message"] for entry in driver.get_log("browser")]
    pytest.fail(f"timed out waiting for {what}; browser console: {logs}")


def body(driver, name: str) -> str:
    return driver.execute_script(f"return document.body.dataset.{name} ?? ''")


def open_page(driver, url: str) -> None:
    driver.get(url)
    state = wait_for(driver, lambda d: body(d, "ready") != "false" and body(d, "ready"),
                     "the model to load")
    status = driver.find_element("id", "status").text
    assert state == "true", status


@pytest.fixture
def page(browser, server):
    open_page(browser, server)
    return browser


def draw(driver, strokes, pointer: str) -> None:
    """Draw strokes with synthetic pointer events of one kind ("mouse" or "touch")."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    pad = driver.find_element("id", "pad")
    before = int(body(driver, "predictions"))
    kind = {"mouse": interaction.POINTER_MOUSE, "touch": interaction.POINTER_TOUCH}[pointer]
    actions = ActionBuilder(driver, mouse=PointerInput(kind, pointer), duration=10)
    for stroke in strokes:
        actions.pointer_action.move_to(pad, *stroke[0]).pointer_down()
        for point in stroke[1:]:
            actions.pointer_action.move_to(pad, *point)
        actions.pointer_action.pointer_up()
    actions.perform()
    wait_for(driver, lambda d: int(body(d, "predictions")) >= before + len(strokes),
             "the prediction")


def shown(driver) -> dict:
    """What the page shows: bitmap, features, label and the ten probabilities."""
    return driver.execute_script("""
        const $ = (id) => document.getElementById(id);
        return {
          bitmap: $("bitmap").dataset.bitmap,
          features: JSON.parse($("grid").dataset.features),
          label: $("prediction").dataset.label,
          text: $("prediction").textContent,
          probabilities: Array.from(document.querySelectorAll("#bars li"),
                                    (li) => li.dataset.probability),
          pointer: document.body.dataset.pointer,
        };
    """)


def python_onnxruntime(features: np.ndarray, model: Path = BUNDLED.model):
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {contract.INPUT_NAME: features.reshape(1, -1)})
    return int(outputs[-1].argmax()), outputs[-1][0]


def check_drawing(driver, pointer: str) -> tuple[int, np.ndarray]:
    seen = shown(driver)
    assert seen["pointer"] == pointer
    bitmap = np.array(list(seen["bitmap"]), dtype=np.int64).reshape(32, 32)
    features = np.array(seen["features"], dtype=np.float32)
    # The digits data's rule: 4x4 blocks of the 32x32 bitmap, on pixels counted, row by row.
    blocks = bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3)).ravel()
    np.testing.assert_array_equal(features, blocks)
    assert features.min() >= 0 and features.max() <= 16
    # Size-normalized: the ink spans the box along the drawing's longer side.
    rows, cols = np.flatnonzero(bitmap.any(axis=1)), np.flatnonzero(bitmap.any(axis=0))
    assert (rows[0], rows[-1]) == (0, 31) or (cols[0], cols[-1]) == (0, 31)

    label, proba = python_onnxruntime(features)
    page_proba = np.array(seen["probabilities"], dtype=np.float64)
    assert int(seen["label"]) == label and seen["text"] == str(label)
    assert np.abs(page_proba - proba).max() <= contract.PROBA_ATOL, (page_proba, proba)
    return label, page_proba


def screenshot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def test_a_digit_drawn_with_the_mouse_is_scored_as_in_python(page):
    draw(page, SEVEN, "mouse")
    label, proba = check_drawing(page, "mouse")
    assert label == 7, proba
    screenshot(page, "drawn-seven-mouse.png")


def test_a_digit_drawn_by_touch_is_scored_as_in_python(page):
    draw(page, ZERO, "touch")
    label, proba = check_drawing(page, "touch")
    assert label == 0, proba
    screenshot(page, "drawn-zero-touch.png")


def test_strokes_add_up_and_clear_starts_over(page):
    draw(page, [SEVEN[0][:4]], "mouse")  # the bar of a 7
    first = shown(page)["features"]
    draw(page, [SEVEN[0][3:]], "mouse")  # its leg, a second stroke
    check_drawing(page, "mouse")
    assert shown(page)["features"] != first
    page.find_element("id", "clear").click()
    cleared = shown(page)
    assert cleared["text"] == "?" and cleared["label"] == ""
    assert cleared["features"] == [0] * 64 and set(cleared["probabilities"]) == {""}


def drop_csv(driver, text: str, name: str) -> None:
    """Drop a file on the page's drop zone, as a drag from the desktop would."""
    before = int(body(driver, "csvScored") or 0), int(body(driver, "csvFailed") or 0)
    driver.execute_script("""
        const [text, name] = arguments;
        const transfer = new DataTransfer();
        transfer.items.add(new File([text], name, { type: "text/csv" }));
        document.getElementById("dropzone").dispatchEvent(
          new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    """, text, name)
    wait_for(driver, lambda d: (int(body(d, "csvScored") or 0),
                                int(body(d, "csvFailed") or 0)) != before, "the CSV to be scored")


def downloaded_csv(driver) -> str:
    link = driver.find_element("id", "csv-download")
    assert link.is_displayed()
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(document.getElementById("csv-download").href).then((r) => r.text()).then(done);
    """)


@pytest.mark.parametrize("profile", profile_params())
def test_a_dropped_csv_of_the_golden_rows_is_scored_as_in_python(browser, server, profile,
                                                                 tmp_path):
    open_page(browser, f"{server}?model=/{profile.model.relative_to(REPO).as_posix()}")
    drop_csv(browser, golden_csv(profile, tmp_path / "golden.csv").read_text(), "golden.csv")
    assert browser.find_element("id", "csv-error").is_displayed() is False
    lines = downloaded_csv(browser).splitlines()
    assert lines[0] == "row,label,confidence," + ",".join(f"p{k}" for k in range(10))
    table = np.array([line.split(",") for line in lines[1:]], dtype=np.float64)
    np.testing.assert_array_equal(table[:, 0], np.arange(len(table)))
    labels, proba = table[:, 1].astype(np.int64), table[:, 3:]
    np.testing.assert_array_equal(table[:, 2], proba[np.arange(len(proba)), labels])
    summary = browser.find_element("id", "csv-summary").text
    assert summary.startswith(f"golden.csv: {len(table)} rows scored"), summary
    web = json.loads((WEB_DIR / "node_modules" / "onnxruntime-web" / "package.json").read_text())
    check_runtime(profile, "onnxruntime-web (Chromium, wasm)",
                  f"{web['version']} in Chromium {browser.capabilities['browserVersion']}",
                  labels, proba)


def test_a_dropped_csv_with_ids_and_truth_reports_accuracy(page):
    text = (REPO / "examples" / "digits_test.csv").read_text()
    drop_csv(page, text, "digits_test.csv")
    summary = page.find_element("id", "csv-summary").text
    labels, _ = python_onnxruntime_rows(text)
    truth = np.array([int(line.rsplit(",", 1)[1]) for line in text.splitlines()[1:]])
    right = int((labels == truth).sum())
    assert summary == (f"digits_test.csv: 360 rows scored; {right}/360 labels match its truth "
                       f"column ({100 * right / 360:.2f}%); the first 20 below")
    first = downloaded_csv(page).splitlines()[1].split(",")
    assert first[0] == text.splitlines()[1].split(",")[0]  # the id column names the row
    rows = page.find_elements("css selector", "#csv-table tbody tr")
    assert len(rows) == 20
    screenshot(page, "dropped-csv.png")


def test_a_csv_chosen_with_the_file_input_is_scored(page, tmp_path):
    """The keyboard-reachable way in, beside dropping."""
    path = tmp_path / "chosen.csv"
    path.write_text((REPO / "examples" / "digits_test.csv").read_text())
    before = int(body(page, "csvScored") or 0)
    page.find_element("id", "csv-file").send_keys(str(path))
    wait_for(page, lambda d: int(body(d, "csvScored") or 0) > before, "the CSV to be scored")
    assert page.find_element("id", "csv-summary").text.startswith("chosen.csv: 360 rows scored")
    assert page.find_element("id", "csv-download").get_attribute("download") == "chosen.pred.csv"


def python_onnxruntime_rows(text: str) -> tuple[np.ndarray, np.ndarray]:
    lines = text.splitlines()
    header = lines[0].split(",")
    pixels = [i for i, name in enumerate(header) if name.startswith("pixel_")]
    X = np.array([[float(line.split(",")[i]) for i in pixels] for line in lines[1:]],
                 dtype=np.float32)
    session = ort.InferenceSession(str(BUNDLED.model), providers=["CPUExecutionProvider"])
    labels, proba = session.run(None, {contract.INPUT_NAME: X})
    return labels, proba


@pytest.mark.parametrize(("text", "message"), [
    (",".join(["1"] * 64) + "\n" + ",".join(["1"] * 63 + ["x"]) + "\n",
     'bad.csv: line 2, column 64: "x" is not a number'),
    (",".join(["1"] * 63) + "\n", "bad.csv: line 1: expected 64 columns, found 63"),
    ("id,a,b\n1,2,3\n",
     "bad.csv: line 1: header has 3 columns and 0 pixel_* names; expected 64 pixel columns"),
    ("\n\n", "bad.csv: no rows"),
])
def test_a_bad_csv_is_refused_with_its_line_and_column(page, text, message):
    drop_csv(page, text, "bad.csv")
    error = page.find_element("id", "csv-error")
    assert error.is_displayed() and error.text == message


def test_a_model_that_does_not_match_its_manifest_is_refused(browser, server):
    """The page checks the sha256 in model.json beside the model, as digits-score does."""
    served = REPO / "test-artifacts" / "web" / "tampered"
    served.mkdir(parents=True, exist_ok=True)
    model = bytearray(BUNDLED.model.read_bytes())
    model[-1] ^= 1
    (served / "model.onnx").write_bytes(bytes(model))
    shutil.copy(BUNDLED.model.parent / contract.MANIFEST_FILENAME, served / "model.json")
    browser.get(f"{server}?model=/test-artifacts/web/tampered/model.onnx")
    wait_for(browser, lambda d: body(d, "ready") == "error", "the model to be refused")
    assert browser.find_element("id", "status").text == (
        "The model could not be loaded: /test-artifacts/web/tampered/model.onnx does not match "
        "the sha256 in model.json")


def test_page_screenshot(page):
    """One picture of everything the page does: a drawn digit, its scores, a scored CSV."""
    draw(page, SEVEN, "mouse")
    check_drawing(page, "mouse")
    drop_csv(page, (REPO / "examples" / "digits_test.csv").read_text(), "digits_test.csv")
    path = screenshot(page, "page.png")
    assert path.stat().st_size > 10_000


FEATURES_SCRIPT = """
import { featuresFromStrokes } from "./examples/web/features.js";
const cases = JSON.parse(process.argv[1]);
const out = cases.map((strokes) => {
  const points = strokes.map((stroke) => stroke.map(([x, y]) => ({ x, y })));
  const { bitmap, features } = featuresFromStrokes(points);
  return { bitmap: bitmap.join(""), features: Array.from(features) };
});
process.stdout.write(JSON.stringify(out));
"""


def features_in_node(cases: list) -> list[dict]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: install Node.js 18 or newer")
    proc = subprocess.run([node, "--input-type=module", "-e", FEATURES_SCRIPT, json.dumps(cases)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_features_are_block_counts_of_a_size_normalized_bitmap():
    vertical = [[[100, 20], [100, 220]]]
    moved_and_scaled = [[[3 * 100 + 7, 3 * 20 - 5], [3 * 100 + 7, 3 * 220 - 5]]]
    dot = [[[50, 50]]]
    seven = [[[x + 140, y + 140] for x, y in SEVEN[0]]]
    results = features_in_node([vertical, moved_and_scaled, dot, seven, []])
    grids = [np.array(r["features"]).reshape(8, 8) for r in results]
    bitmaps = [np.array(list(r["bitmap"]), dtype=int).reshape(32, 32) for r in results]

    # A vertical line fills the height and sits in the middle two block columns.
    assert bitmaps[0].any(axis=1).all()
    assert set(np.flatnonzero(grids[0].any(axis=0))) == {3, 4}
    np.testing.assert_array_equal(grids[0][:, 3], grids[0][:, 4])  # centered
    # Where and how large the drawing is does not matter.
    np.testing.assert_array_equal(grids[0], grids[1])
    # A dot is a pen-sized blob in the centre.
    assert bitmaps[2].sum() > 0 and set(np.flatnonzero(grids[2].any(axis=0))) == {3, 4}
    # Counts of 4x4 blocks: integers 0..16, and 16 only for a full block.
    for grid, bitmap in zip(grids, bitmaps, strict=True):
        np.testing.assert_array_equal(grid, bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3)))
        assert grid.max() <= 16
    # About as much ink as the digits data (30% of the pixels on, on average).
    assert 0.15 < bitmaps[3].mean() < 0.45
    # Nothing drawn: nothing on.
    assert grids[4].sum() == 0
