"""Serve the repository over HTTP on localhost, for examples/web/.

    python examples/web/serve.py [--port 8000]

The page needs HTTP (browsers do not load its wasm files or modules from file://) and reaches
the committed model at ../../artifacts/model.onnx, so the whole checkout is served, read-only,
on 127.0.0.1 only. Modules and wasm get their JavaScript and WebAssembly types whatever the
platform's MIME table says.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
from pathlib import Path
from typing import ClassVar

REPO = Path(__file__).resolve().parent.parent.parent
PAGE = "/examples/web/"


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
        ".csv": "text/csv",
    }


class QuietHandler(Handler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the repository for examples/web/.")
    parser.add_argument("--port", type=int, default=8000,
                        help="port on 127.0.0.1; 0 picks a free one (default: 8000)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    handler = functools.partial(QuietHandler if args.quiet else Handler, directory=str(REPO))
    with http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler) as server:
        print(f"http://127.0.0.1:{server.server_address[1]}{PAGE}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


if __name__ == "__main__":
    main()
