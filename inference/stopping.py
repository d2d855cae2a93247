"""A stop (Ctrl-C, or a signal the command line turns into one) never splits a commit, nor
the report of a file.

A stop is a KeyboardInterrupt raised on the main thread wherever it happens to be: between
batches, in a wait, in a blocked read. Every step of the pipeline cleans up after it (a
temporary file is removed, nothing reaches a final name), except two. Putting a finished
file under its final names (output, reject report, record; :func:`.pipeline.commit_unit`),
stopped half way, leaves an output without its record, which no summary can call done or
not done; and a file's report (its place in the summary, its lines on stderr), stopped half
way, is missing or given twice. So while the main thread does either, a stop that the
command line's handler passes to :func:`stop` is held until the step ends, then raised.

The library installs no signal handler: with Python's own SIGINT handler a Ctrl-C is raised
at once, as it always was. Worker threads never receive a stop, so nothing is held there.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType


@dataclass
class _MainThread:
    """The main thread's steps under way that a stop must not split, and the stop held."""

    depth: int = 0
    held: BaseException | None = None


_MAIN = _MainThread()
#: Set once a stop is asked for: threads waiting on a stalled input stream give up.
_ASKED = threading.Event()


def _on_main_thread() -> bool:
    return threading.get_ident() == threading.main_thread().ident


class Unsplit:
    """``with Unsplit():`` around a step: :func:`stop` holds a stop until the step ends."""

    def __enter__(self) -> None:
        if _on_main_thread():
            _MAIN.depth += 1

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not _on_main_thread():
            return
        _MAIN.depth -= 1
        if _MAIN.depth == 0 and _MAIN.held is not None:
            held, _MAIN.held = _MAIN.held, None
            raise held


def stop(exc: BaseException) -> None:
    """Raise ``exc`` (a KeyboardInterrupt), or hold it until the step the main thread is in
    ends (see :class:`Unsplit`): what a signal handler calls to stop the run."""
    _ASKED.set()
    if _MAIN.depth > 0 and _on_main_thread():
        _MAIN.held = exc
        return
    raise exc


def asked() -> bool:
    """Whether a stop was asked for since :func:`reset`. A read-ahead thread waiting on a
    pipe whose producer stalls looks at it, and gives up: the stop waits for that thread."""
    return _ASKED.is_set()


def reset() -> None:
    """Forget an earlier run's stop (a process that runs the command more than once)."""
    _ASKED.clear()
