"""File-system primitives every writer of the project shares: atomic files, the output lock,
and the cleanup of what killed runs left behind.

A kill at any moment leaves either no file or a complete one: data goes to a temporary file
created exclusively in the destination directory, is fsynced, then renamed into place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from .errors import BusyError, OutputError, WriteError

#: The one hidden entry a run keeps in each output directory: the lock and the up-to-date
#: records live inside it.
BOOKKEEPING = ".digits-score"
#: The lock file, inside the bookkeeping folder.
LOCK_NAME = "lock"
#: Bookkeeping files are small; a larger one was planted, and is not read.
MAX_BOOKKEEPING_BYTES = 1 << 20


class AtomicFile:
    """A temporary file beside ``dst`` that becomes ``dst`` on commit and vanishes otherwise."""

    def __init__(self, dst: Path) -> None:
        self.dst = dst
        # Created exclusively under a random name, with the mode a new file gets (0o666 less
        # the umask, which the kernel applies: nothing here reads or changes the process's
        # umask, which other threads share).
        for _ in range(100):
            tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            except FileExistsError:
                continue
            except FileNotFoundError:
                raise OutputError(f"{dst}: the output directory {dst.parent} does not exist"
                                  ) from None
            except PermissionError:
                raise OutputError(f"{dst}: cannot create files in {dst.parent}") from None
            except OSError as exc:
                raise OutputError(f"{dst}: cannot create output ({exc.strerror})") from None
            os.close(fd)
            self.tmp = tmp
            return
        raise OutputError(f"{dst}: cannot create a temporary file in {dst.parent}")

    def commit(self, *, sync_dir: bool = True) -> None:
        """Make the finished temporary file durable, then rename it over ``dst``.

        ``sync_dir=False`` leaves the directory's fsync (which makes the rename itself
        durable) to the caller, who syncs each directory once for many renames.
        """
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
        if sync_dir:
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
    """Write a small file (a summary, a reject report) atomically."""
    out = AtomicFile(dst)
    try:
        try:
            out.tmp.write_bytes(data)
        except OSError as exc:
            raise WriteError(f"{dst}: cannot write ({exc.strerror})") from None
        out.commit()
    except BaseException:  # a failure, or a stop (Ctrl-C), leaves no temporary file
        out.discard()
        raise


def is_special(path: str | Path) -> bool:
    """Whether ``path`` exists as something other than a regular file (a device, a FIFO, a
    symbolic link): such a path is written into as a stream, or refused, never replaced."""
    try:
        return not stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def bookkeeping_dir(directory: Path) -> Path:
    """The bookkeeping folder of an output directory, created when missing; refused when
    anything but a real folder is in its place (a planted link is never followed)."""
    path = directory / BOOKKEEPING
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    except FileNotFoundError:
        raise OutputError(f"{directory}: the output directory does not exist") from None
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the bookkeeping folder ({exc.strerror})"
                          ) from None
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise OutputError(f"{path}: not a folder (a link or a file is in its place); remove it")
    return path


def read_small_file(path: Path) -> bytes | None:
    """A bookkeeping file's bytes, or None when it is missing, not a regular file (never
    followed through a link, never opened when it is a FIFO or a device) or too large."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BOOKKEEPING_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(MAX_BOOKKEEPING_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def lock_error(directory: Path, path: Path, exc: OSError) -> OutputError:
    """Why the lock file ``path`` of ``directory`` cannot be opened, in one line."""
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link
        return OutputError(f"{path}: the lock is a symbolic link; remove it")
    return OutputError(f"{directory}: cannot lock the output directory ({path}: {exc.strerror})")


@contextlib.contextmanager
def output_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on an output directory, or fail at once with BusyError.

    The lock file is never followed through a link, and must be a regular file.
    """
    path = bookkeeping_dir(directory) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o644)
    except OSError as exc:
        raise lock_error(directory, path, exc) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutputError(f"{path}: the lock is not a regular file; remove it")
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
