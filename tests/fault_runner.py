"""Run ``digits-score`` with a fault armed, for the fault-injection tests.

    python tests/fault_runner.py KILL_AT -- DIGITS_SCORE_ARGS...

KILL_AT is ``none``, or ``<call>:<n>:<when>``: SIGKILL this process at the n-th call
(1-based) of ``os.<call>`` (``replace``, ``fsync``, ``rename`` ...), ``before`` or
``after`` the call runs. A kill in the middle of a rename or an fsync is the nastiest
moment a real crash can pick, and timers alone rarely hit it. ``write:<n>:half`` writes
the first half of the n-th ``os.write``'s bytes, then kills: a line torn as a power cut can
leave it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def arm(spec: str) -> None:
    if spec == "none":
        return
    name, nth, when = spec.split(":")
    target, count = int(nth), [0]
    original = getattr(os, name)
    lock = threading.Lock()  # calls may come from several threads: count each once

    def armed(*args, **kwargs):
        with lock:
            count[0] += 1
            hit = count[0] == target
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        if hit and when == "half":
            fd, data = args
            original(fd, bytes(data[:len(data) // 2]))
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if hit and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(os, name, armed)


if __name__ == "__main__":
    spec, separator, *args = sys.argv[1:]
    assert separator == "--"
    arm(spec)
    from digits_onnx.inference.cli import main

    sys.exit(main(args))
