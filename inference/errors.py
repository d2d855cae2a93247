"""The exceptions a user can cause, each mapped to one exit code by the CLI.

Exit codes follow sysexits(3), so cron wrappers and shells can tell the failures apart.
"""

from __future__ import annotations

import signal
from typing import Any

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_DATAERR = 65
EXIT_NOINPUT = 66
EXIT_CANTCREAT = 73
EXIT_IOERR = 74
EXIT_TEMPFAIL = 75
EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
EXIT_HANGUP = 129  # 128 + SIGHUP
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM

#: What each exit code of ``digits-score`` means: the one table --help and the README show.
SCORE_EXIT_CODES = {
    EXIT_OK: "every input was scored (or was already up to date); check passed",
    EXIT_SOME_FAILED: "some inputs failed and the others were scored; check found drift",
    EXIT_USAGE: "usage error: bad option or combination",
    EXIT_DATAERR: "bad data (the message names file, line and column), or an unusable model",
    EXIT_NOINPUT: "an input does not exist, or a pattern matches no file",
    EXIT_UNAVAILABLE: "--scheduler: the Dask cluster cannot be reached, or a task kept "
                      "killing its workers",
    EXIT_SOFTWARE: "internal error (a bug): one line names the file; --debug shows the "
                   "traceback",
    EXIT_CANTCREAT: "an output cannot be created (missing or unwritable directory, or it "
                    "would overwrite an input, the model or another output)",
    EXIT_IOERR: "I/O error while reading or writing (disk full, ...)",
    EXIT_TEMPFAIL: "another run holds the output directory's lock; try again later",
    EXIT_HANGUP: "hung up (SIGHUP): stopped as on Ctrl-C",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); no partial output is left",
    EXIT_TERMINATED: "terminated (SIGTERM: kill, timeout, docker stop): stopped as on Ctrl-C",
}


class DigitsError(Exception):
    """Base class of every error the library raises on purpose."""

    exit_code = EXIT_SOME_FAILED
    #: Files of an earlier run that the failure removed, so that nothing stale stays under
    #: the output's name (set by the pipeline).
    removed: tuple[str, ...] = ()


class UsageError(DigitsError, ValueError):
    """Options that contradict each other or cannot apply to the inputs."""

    exit_code = EXIT_USAGE


class InputDataError(DigitsError, ValueError):
    """An input file holds data that cannot be scored (it names file, line and column)."""

    exit_code = EXIT_DATAERR


class InputChangedError(InputDataError):
    """An input changed (was rewritten, truncated, appended to) while it was being scored;
    running again will do."""


class MissingInputError(DigitsError, FileNotFoundError):
    """An input file, directory or glob does not exist or matches nothing."""

    exit_code = EXIT_NOINPUT


class OutputError(DigitsError):
    """An output cannot be created (missing or unwritable directory, would overwrite an input)."""

    exit_code = EXIT_CANTCREAT


class WriteError(DigitsError, OSError):
    """Writing failed midway (disk full, I/O error); the temporary file was removed."""

    exit_code = EXIT_IOERR


class ReadError(DigitsError, OSError):
    """Reading an input failed at the operating-system level (an I/O error, not bad data)."""

    exit_code = EXIT_IOERR


class BusyError(DigitsError):
    """Another run holds the lock on the output directory."""

    exit_code = EXIT_TEMPFAIL


class ModelError(DigitsError, ValueError):
    """The model file is unusable: hash mismatch, wrong contract, foreign operators."""

    exit_code = EXIT_DATAERR


class NonFiniteOutputError(ModelError):
    """The model gave probabilities that are not numbers for some rows: a model fault, or
    input values so far outside 0..16 that the model overflows (which the scorer then rejects
    as bad rows). ``rows`` are the positions in the batch; the other rows' answers stand."""

    #: Set by the model: the rows without numbers, and the whole batch's answers.
    rows: Any = None
    labels: Any = None
    proba: Any = None


class InternalError(DigitsError):
    """Something failed that should not have: a bug, reported as one line, not a traceback."""

    exit_code = EXIT_SOFTWARE


#: How a run stopped by each signal is reported: its one line, and the summary's error.
STOP_MESSAGES: dict[int, str] = {signal.SIGHUP: "hung up", signal.SIGINT: "interrupted",
                                  signal.SIGTERM: "terminated"}


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal: Ctrl-C, or another the command line stops a run on. A
    KeyboardInterrupt, so that every ``except KeyboardInterrupt`` (and every cleanup on the
    way up) treats them alike; its exit code is 128 + the signal's number, as shells report
    a process killed by it.

    ``summary`` is set by :func:`.api.score_files` once the run has stopped: what the run
    did before the stop, a ``BatchSummary`` (see there; not named here, as the summary
    module imports this one); None when it stopped before it planned its outputs.
    """

    def __init__(self, signum: int = signal.SIGINT,
                 summary: Any = None) -> None:
        super().__init__(STOP_MESSAGES.get(signum, "interrupted"))
        self.signum = signum
        self.summary = summary

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def message(self) -> str:
        return str(self)


def interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """The stop ``exc`` as an :class:`Interrupted` (a plain KeyboardInterrupt is Ctrl-C)."""
    if isinstance(exc, Interrupted):
        return exc
    return Interrupted(signal.SIGINT).with_traceback(exc.__traceback__)


def internal_error(src: str, exc: BaseException) -> InternalError:
    """An unexpected exception while scoring ``src``, as one line that names the file: the
    same words from the local engine and from a cluster task."""
    text = str(exc).strip().splitlines()
    return InternalError(f"{src}: internal error: {type(exc).__name__}"
                         f"{': ' + text[0] if text else ''} (--debug shows the traceback)")


class ClusterError(DigitsError):
    """The Dask cluster cannot be reached, or a task kept killing the workers that ran it."""

    exit_code = EXIT_UNAVAILABLE


def read_error(path: object, exc: OSError) -> DigitsError:
    """An OSError met while reading ``path``, as the library's error (ours pass through)."""
    if isinstance(exc, DigitsError):
        return exc
    return ReadError(f"{path}: cannot read ({exc.strerror or exc})")


def write_error(path: object, exc: OSError) -> DigitsError:
    """An OSError met while writing ``path``, as the library's error (ours pass through)."""
    if isinstance(exc, DigitsError):
        return exc
    return WriteError(f"{path}: cannot write ({exc.strerror or exc})")
