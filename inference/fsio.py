"""File-system primitives every writer of the project shares: atomic files, the output lock,
and the cleanup of what killed runs left behind.

A kill at any moment leaves either no file or a complete one: data goes to a temporary file
created exclusively in the destination directory, is fsynced, then renamed into place.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from .errors import BusyError, OutputError, WriteError

#: The lock file of an output directory.
LOCK_NAME = ".digits-score.lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    """A temporary file beside ``dst`` that becomes ``dst`` on commit and vanishes otherwise."""

    def __init__(self, dst: Path) -> None:
        self.dst = dst
        try:
            fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
        except FileNotFoundError:
            raise OutputError(f"{dst}: the output directory {dst.parent} does not exist") from None
        except PermissionError:
            raise OutputError(f"{dst}: cannot create files in {dst.parent}") from None
        except OSError as exc:
            raise OutputError(f"{dst}: cannot create output ({exc.strerror})") from None
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> None:
        """Make the finished temporary file durable, then rename it over ``dst``."""
        try:
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self.tmp, self.dst)
        except OSError as exc:
            self.discard()
            raise WriteError(f"{self.dst}: cannot finish writing ({exc.strerror})") from None
        fsync_directory(self.dst.parent)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


def fsync_directory(directory: Path) -> None:
    """Persist a rename: fsync the directory entry (best effort where it is unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic_bytes(dst: Path, data: bytes) -> None:
    """Write a small file (a summary, a state record, a reject report) atomically."""
    out = AtomicFile(dst)
    try:
        out.tmp.write_bytes(data)
    except OSError as exc:
        out.discard()
        raise WriteError(f"{dst}: cannot write ({exc.strerror})") from None
    out.commit()


@contextlib.contextmanager
def output_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on an output directory, or fail at once with BusyError."""
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        raise OutputError(f"{directory}: the output directory does not exist") from None
    except OSError as exc:
        raise OutputError(
            f"{directory}: cannot lock the output directory ({exc.strerror})"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(
                f"{directory}: another digits-score run is writing here; try again when it ends"
            ) from None
        yield
    finally:
        os.close(fd)


def leftover_of(name: str) -> str | None:
    """The file a temporary or part file was for (``.a.csv.x1y2.tmp`` -> ``a.csv``)."""
    if name.endswith(".tmp"):
        target = name[1:-4].rpartition(".")[0]
    elif name.endswith(".arrow") and ".part-" in name:
        target = name
    else:
        return None
    if target.startswith(".") and ".part-" in target:
        target = target[1:].rpartition(".part-")[0]
    return target


def remove_leftovers(names_by_folder: Mapping[Path, set[str]]) -> None:
    """Delete the temporary and part files that killed runs left for these file names.

    Call it only while holding the folders' locks: then nothing else is writing them.
    One listing per folder, whatever the number of files.
    """
    for folder, names in names_by_folder.items():
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            if entry.startswith(".") and leftover_of(entry) in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / entry)
