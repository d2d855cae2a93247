"""Every code snippet in docs/embedding.md runs as written, where the doc says to run it.

The snippets are taken from the doc's fenced blocks, by language:

- ``python``: run from the repository root, as the doc says;
- ``js``: the doc says to save it as ``examples/node/embed.mjs`` (where ``npm ci`` installed
  onnxruntime) and run ``node examples/node/embed.mjs``; that file is committed, must equal
  the snippet, and is run from the repository root and from elsewhere;
- ``sh``: each command is run from the repository root, except the installs that ``.ci/run``
  already does (checked to be there) and the page's server, which is started on a free port
  (``--port 0``), asked for the page and stopped;
- ``c``: the argmax function is compiled with gcc and run on the golden probabilities;
- ``rust``: not run (tract's crates cannot be fetched from crates.io in CI); the doc says so
  next to the snippet, and rustfmt checks that it is a complete program, not a fragment.

Every python and js snippet ends by printing the first ten predicted labels of the test rows.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.runtime_matrix import BUNDLED, REPO, golden, onnxruntime_outputs, profile_params

DOC = REPO / "docs" / "embedding.md"
EMBED_JS = REPO / "examples" / "node" / "embed.mjs"
CI_RUN = REPO / ".ci" / "run"
RUNNABLE = {"python", "js", "sh", "c"}
NOT_RUN = {"rust": "Not run by the tests"}


def blocks(language: str | None = None) -> list[tuple[str, str, str]]:
    """(language, code, the paragraph before it) for each fenced block of the doc."""
    text = DOC.read_text()
    found = []
    for match in re.finditer(r"```(\w*)\n(.*?)```", text, re.S):
        before = text[:match.start()].rstrip().rsplit("\n\n", 1)[-1]
        if language is None or match.group(1) == language:
            found.append((match.group(1), match.group(2), before))
    return found


def first_labels() -> str:
    labels = onnxruntime_outputs(BUNDLED)[0]
    return " ".join(map(str, labels[:10]))


def test_every_snippet_is_run_or_says_why_not():
    assert blocks(), "docs/embedding.md has no snippets"
    for language, code, before in blocks():
        if language in NOT_RUN:
            assert NOT_RUN[language] in before, (
                f"a {language} snippet must say, just before it, that it is "
                f"{NOT_RUN[language].lower()} and why:\n{code}")
        else:
            assert language in RUNNABLE, f"no runner for a ```{language} snippet:\n{code}"


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_snippet_runs_from_the_repository_root(index):
    _, code, before = blocks("python")[index]
    assert "from the repository root" in before, before
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == first_labels()


def test_javascript_snippet_is_the_committed_example():
    (_, code, before), = blocks("js")
    assert "Save it as `examples/node/embed.mjs`" in before, before
    assert EMBED_JS.read_text() == code


@pytest.mark.parametrize("cwd", [REPO, REPO / "docs"], ids=["repository-root", "elsewhere"])
def test_javascript_snippet_runs_where_the_doc_says(cwd):
    (_, _, before), = blocks("js")
    assert "node examples/node/embed.mjs" in before
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: install Node.js 18 or newer, then "
                    "`npm ci --prefix examples/node`")
    proc = subprocess.run([node, str(EMBED_JS)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.split()[0] == "default"
    assert second == first_labels()


def test_javascript_snippet_runs_on_the_native_binding_with_its_import_swapped():
    """What the doc says: `import * as ort from "onnxruntime-node"`, unchanged otherwise."""
    (_, code, before), = blocks("js")
    assert 'import * as ort from "onnxruntime-node"' in before
    native = code.replace('from "onnxruntime-web"', 'from "onnxruntime-node"')
    assert native != code
    # Evaluated in examples/node, it resolves its imports and paths as the saved file does.
    proc = subprocess.run([shutil.which("node") or "node", "--input-type=module", "-e", native],
                          cwd=EMBED_JS.parent, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == first_labels()


def commands(code: str) -> list[str]:
    lines = [line.split("  #", 1)[0].strip() for line in code.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def ci_setup() -> str:
    return CI_RUN.read_text()


def run_server(command: str) -> None:
    """Start the page's server on a free port, fetch the page, stop it."""
    import urllib.request

    proc = subprocess.Popen([*shlex.split(command.replace("python", sys.executable, 1)),
                             "--port", "0", "--quiet"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"<canvas id=\"pad\"" in response.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("index", range(len(blocks("sh"))))
def test_shell_snippet_runs_from_the_repository_root(index):
    _, code, _ = blocks("sh")[index]
    for command in commands(code):
        if command.startswith("npm ci "):
            assert command in ci_setup(), f"{command!r} is neither run here nor by .ci/run"
        elif command.startswith("python examples/web/serve.py"):
            run_server(command)
        else:
            proc = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True,
                                  text=True, timeout=120, check=False)
            assert proc.returncode == 0, f"{command}: {proc.stderr}"
            assert proc.stdout, command


HARNESS = r"""
#include <stdio.h>
%s
int main(void) {
    float p[10];
    for (;;) {
        for (int k = 0; k < 10; k++)
            if (scanf("%%f", &p[k]) != 1) return 0;
        printf("%%d\n", argmax(p, 10));
    }
}
"""


@pytest.mark.parametrize("profile", profile_params())
def test_c_argmax_snippet_gives_the_labels(profile, tmp_path):
    (_, code, _), = blocks("c")
    assert len(code.strip().splitlines()) == 5, code
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("no C compiler: install gcc")
    source = tmp_path / "argmax.c"
    source.write_text(HARNESS % code)
    exe = tmp_path / "argmax"
    subprocess.run([gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(source)],
                   check=True, capture_output=True, timeout=60)
    labels, proba = onnxruntime_outputs(profile)
    text = "\n".join(" ".join(f"{v:.9g}" for v in row) for row in proba.astype(np.float32))
    proc = subprocess.run([str(exe)], input=text, capture_output=True, text=True, timeout=60,
                          check=True)
    np.testing.assert_array_equal(np.array(proc.stdout.split(), dtype=np.int64), labels)
    np.testing.assert_array_equal(labels, golden(profile).labels)


def test_rust_snippet_is_a_complete_program():
    (_, code, _), = blocks("rust")
    assert "fn main()" in code and "use tract_onnx::prelude::*;" in code
    rustfmt = shutil.which("rustfmt")
    if rustfmt is None:
        pytest.skip("rustfmt is not installed: the Rust snippet's syntax is not checked")
    proc = subprocess.run([rustfmt, "--edition", "2021", "--check"], input=code,
                          capture_output=True, text=True, timeout=60, check=False)
    assert "error" not in proc.stderr, proc.stderr


def test_the_page_screenshot_the_doc_shows_is_committed():
    image = re.search(r"!\[[^\]]*\]\((images/[^)]+\.png)\)", DOC.read_text())
    assert image, "docs/embedding.md shows no screenshot of the page"
    assert Path(DOC.parent / image.group(1)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
