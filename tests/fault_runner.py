"""Run ``digits-score`` with a fault armed, for the fault-injection tests.

    python tests/fault_runner.py KILL_AT -- DIGITS_SCORE_ARGS...

KILL_AT is ``none``, or ``<call>:<n>:<when>``: SIGKILL this process at the n-th call
(1-based) of ``os.<call>`` (``replace``, ``fsync``, ``rename`` ...), ``before`` or
``after`` the call runs. A kill in the middle of a rename or an fsync is the nastiest
moment a real crash can pick, and timers alone rarely hit it. ``write:<n>:half`` writes
the first half of the n-th ``os.write``'s bytes, then kills: a line torn as a power cut can
leave it.

A stop at a chosen step: ``<call>:<n>:<when>:<SIGNAL>`` sends that signal (``SIGINT``,
``SIGTERM`` ...) instead, and the run goes on to handle it; ``<SIGNAL>+<ms>`` sends it a
second time ``ms`` milliseconds later (Ctrl-C pressed twice). A dotted ``<call>`` names a
function of the package instead (``digits_onnx.inference.pipeline.run_model``: once per
batch). ``FAULT_RUNNER_CHUNK_BYTES`` in the environment sets the read block size, so that a
small file is read in many blocks.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import threading


def _owner(name: str) -> tuple[object, str]:
    """The object that holds ``name``'s function and its attribute there: ``os`` for a bare
    name, else the module (and class) a dotted name leads to."""
    if "." not in name:
        return os, name
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:-1]:
            owner = getattr(owner, attr)
        return owner, parts[-1]
    raise ValueError(f"no module in {name}")


def _send(sent: list[str]) -> None:
    """Send the signal (SIGKILL when none is named), and again later when asked to."""
    if not sent:
        os.kill(os.getpid(), signal.SIGKILL)
    name, _, again = sent[0].partition("+")
    sig = getattr(signal, name)
    if again:
        threading.Timer(int(again) / 1000, os.kill, (os.getpid(), sig)).start()
    os.kill(os.getpid(), sig)


def arm(spec: str) -> None:
    if spec == "none":
        return
    name, nth, when, *sent = spec.split(":")
    target, count = int(nth), [0]
    owner, attr = _owner(name)
    original = getattr(owner, attr)
    lock = threading.Lock()  # calls may come from several threads: count each once

    def armed(*args, **kwargs):
        with lock:
            count[0] += 1
            hit = count[0] == target
        if hit and when == "before":
            _send(sent)
        if hit and when == "half":
            fd, data = args
            original(fd, bytes(data[:len(data) // 2]))
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if hit and when == "after":
            _send(sent)
        return result

    setattr(owner, attr, armed)


if __name__ == "__main__":
    spec, separator, *args = sys.argv[1:]
    assert separator == "--"
    arm(spec)
    from digits_onnx.inference import cli

    if "FAULT_RUNNER_CHUNK_BYTES" in os.environ:
        cli.ReadOptions = functools.partial(  # type: ignore[misc]
            cli.ReadOptions, chunk_bytes=int(os.environ["FAULT_RUNNER_CHUNK_BYTES"]))
    sys.argv[1:] = args
    cli.entrypoint()
