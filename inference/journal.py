"""The records of an output directory: one append-only journal instead of a file per output.

``.digits-score/records.jsonl`` holds one line per event, ``<key> <value>``: ``key`` is an
output's name in hex, ``value`` its record (JSON) or ``-`` when the record was withdrawn.
The last line of a key wins. Appending a line creates no file (a directory of 500 outputs
costs one file, not 500). A line is appended under an exclusive ``lockf`` lock on the
journal, which NFS honours across hosts, so lines of several writers (threads, Dask workers
on other machines) never interleave or overwrite each other; a writer that finds the
journal replaced once it holds the lock (compacted meanwhile) appends to the new one.

What a kill or a power cut can leave is a last line cut short, or lost lines; a cut line is
not valid JSON, and then its key simply has no record (the output is scored again). Lines
are kept as (offset, length) in an index, read back only when asked for. The index follows
the file as others append to it, and is rebuilt when the file is replaced: each journal
starts with a line of its own random generation (``#<hex>``), so a replacement that got the
same inode number is told apart too.

A journal with many withdrawn or replaced lines is rewritten with only the live ones
(:meth:`Journal.compact`), atomically, while the run holds the directory's lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import threading
from pathlib import Path
from typing import BinaryIO

from .errors import DigitsError, OutputError, WriteError
from .fsio import BOOKKEEPING, AtomicFile

JOURNAL_NAME = "records.jsonl"
#: A larger journal was planted (a line is under a kB per output, and the index keeps one
#: entry per output whatever the journal's length): not read, replaced by the next append.
MAX_JOURNAL_BYTES = 1 << 30
#: Lines withdrawn or replaced before a compaction is worth it (and at least as many as the
#: live ones: "most of the journal is stale").
COMPACT_AFTER = 256
#: A journal that grows past this (and then past each doubling) is compacted as it is
#: appended to, not only at the end of a run.
COMPACT_BYTES = 64 << 20
#: The journal is read in pieces of this size (whole lines each).
READ_BYTES = 8 << 20
WITHDRAWN = b"-"
#: Attempts to append before giving up on a journal that keeps being replaced.
APPEND_ATTEMPTS = 8
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def journal_path(directory: Path) -> Path:
    return directory / BOOKKEEPING / JOURNAL_NAME


def check_journal(directory: Path) -> None:
    """Refuse a run whose records could not be written: a folder stands at the journal's
    name (anything else there is replaced by the first record written)."""
    path = journal_path(directory)
    try:
        folder = stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return
    if folder:
        raise OutputError(f"{path}: a folder is in the place of the records' journal; "
                          "remove it")


class Journal:
    """The journal of one output directory, as this process last read it."""

    _identity: tuple[int, int] | None  # (device, inode) indexed
    _indexed: int  # bytes of the file indexed: whole lines only
    _index: dict[bytes, tuple[int, int]]  # key -> (offset, length) of its last line
    _lines: int  # lines indexed, live or not
    _head: bytes  # the first line indexed: the journal's generation

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._next_check = COMPACT_BYTES
        self._forget()

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The value last written for ``key`` (None when there is none, or it was withdrawn,
        or the journal is not a regular file this process may trust)."""
        with self._lock:
            fd = self._open_for_reading()
            if fd is None:
                return None
            try:
                line = self._line_of(fd, key)
                if line is not None and not _is_line_of(line, key):
                    # Indexed from another file that got this one's inode number: read anew.
                    self._forget()
                    line = self._line_of(fd, key)
            except OSError:
                return None
            finally:
                os.close(fd)
        if line is None or not _is_line_of(line, key):
            return None
        return line[len(key) + 1:-1] or None

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every live (key, value), as :meth:`get` reads them."""
        with self._lock:
            fd = self._open_for_reading()
            if fd is None:
                return []
            try:
                self._refresh(fd)
                lines = [(key, os.pread(fd, length, at))
                         for key, (at, length) in self._index.items()]
            except OSError:
                return []
            finally:
                os.close(fd)
        return [(key, line[len(key) + 1:-1]) for key, line in lines
                if _is_line_of(line, key) and line[len(key) + 1:-1]]

    def _line_of(self, fd: int, key: bytes) -> bytes | None:
        self._refresh(fd)
        where = self._index.get(key)
        return None if where is None else os.pread(fd, where[1], where[0])

    def _open_for_reading(self) -> int | None:
        fd = self._open_trusted(os.O_RDONLY)
        if fd is None:
            self._forget()
        return fd

    def _open_trusted(self, flags: int) -> int | None:
        """The journal opened with ``flags``, when it is a regular file within the cap (else
        None: never followed through a link, never blocked on a FIFO)."""
        try:
            fd = os.open(self.path, flags | _OPEN_FLAGS)
        except OSError:
            return None
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_JOURNAL_BYTES:
            return fd
        os.close(fd)
        return None

    def _forget(self) -> None:
        self._identity, self._indexed, self._index, self._lines, self._head = None, 0, {}, 0, b""

    def _refresh(self, fd: int) -> None:
        """Index what was appended since the last look (all of it, for another file)."""
        st = os.fstat(fd)
        if ((st.st_dev, st.st_ino) != self._identity or st.st_size < self._indexed
                or (self._indexed and os.pread(fd, len(self._head), 0) != self._head)):
            self._forget()
            self._identity = (st.st_dev, st.st_ino)
        while self._indexed < st.st_size:
            data = os.pread(fd, min(st.st_size - self._indexed, READ_BYTES), self._indexed)
            whole = data.rfind(b"\n") + 1
            if not whole:  # a line longer than a read, or a last line cut short
                if len(data) < READ_BYTES:
                    return  # looked at again next time, whole by then or not
                whole = len(data)  # never a record line: skipped
            if not self._indexed:
                self._head = data[:data.find(b"\n") + 1]
            self._index_lines(data[:whole])
            self._indexed += whole

    def _index_lines(self, data: bytes) -> None:
        at = 0
        while (end := data.find(b"\n", at)) >= 0:
            space = data.find(b" ", at, end)
            if space > at:
                key = data[at:space]
                if data[space + 1:end] == WITHDRAWN:
                    self._index.pop(key, None)
                else:
                    self._index[key] = (self._indexed + at, end + 1 - at)
            self._lines += 1
            at = end + 1

    # -- writing -------------------------------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        """Append ``key``'s value (one line, in one write)."""
        self._append(key + b" " + value + b"\n")

    def withdraw(self, key: bytes) -> None:
        """Append that ``key`` has no record any more (only when it has one)."""
        if self.get(key) is not None:
            self._append(key + b" " + WITHDRAWN + b"\n")

    def _append(self, line: bytes) -> None:
        with self._lock:
            for _ in range(APPEND_ATTEMPTS):
                fd = self._open_for_appending()
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX)  # released by the close
                    if not _is_current(fd, self.path):
                        continue  # compacted while we waited: append to the new journal
                    size = os.fstat(fd).st_size
                    if not size:
                        line = _generation() + line
                    elif os.pread(fd, 1, size - 1) != b"\n":
                        line = b"\n" + line  # a line a kill cut short stays alone
                    _write_all(fd, line)
                    if size + len(line) > self._next_check:
                        os.close(fd)
                        fd = -1
                        _compact_quietly(self)
                        # Next look when it has doubled again (what compaction left is live).
                        self._next_check = max(COMPACT_BYTES, 2 * _size(self.path))
                    return
                except OSError as exc:
                    raise WriteError(f"{self.path}: cannot write ({exc.strerror})") from None
                finally:
                    if fd >= 0:
                        os.close(fd)
            raise WriteError(f"{self.path}: replaced at every attempt to write it")

    def _open_for_appending(self) -> int:
        """The journal, opened to append (created when missing). What stands in its place
        and is not a journal of its own is replaced first, by a rename, which replaces the
        name, never what it points to: a link, a FIFO or a file too large by an empty
        journal; a file with other names (a hard link into a snapshot) or that this user may
        not write by a copy of its live lines."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | _OPEN_FLAGS, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                return self._replace(self._open_trusted(os.O_RDONLY))
            if not _planted(exc):
                raise WriteError(f"{self.path}: cannot write ({exc.strerror})") from None
            return self._replace(None)
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_JOURNAL_BYTES:
            if st.st_nlink == 1:
                return fd
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)  # while its lines are copied
            except OSError as exc:
                os.close(fd)
                raise WriteError(f"{self.path}: cannot lock ({exc.strerror})") from None
            return self._replace(fd)  # closes it
        os.close(fd)
        return self._replace(None)

    def _replace(self, source: int | None) -> int:
        """Put a journal of its own at the name: the live lines of ``source`` (an open
        journal, closed here), or none; return it opened to append."""
        try:
            self._rewrite(source)
        except OSError as exc:
            raise WriteError(f"{self.path}: not a journal, and it cannot be replaced "
                             f"({exc.strerror or exc}); remove it") from None
        finally:
            if source is not None:
                os.close(source)
        try:
            return os.open(self.path, os.O_RDWR | os.O_APPEND | _OPEN_FLAGS)
        except OSError as exc:
            raise WriteError(f"{self.path}: cannot write ({exc.strerror})") from None

    def _rewrite(self, source: int | None) -> None:
        """Rename over the journal a new one: a new generation line, then the live lines
        of ``source`` (an open journal) if any; fsynced, as the folder is."""
        out = AtomicFile(self.path)
        try:
            with open(out.tmp, "wb") as fh:
                fh.write(_generation())
                if source is not None:
                    self._copy_live(source, fh)
        except OSError:
            out.discard()
            raise
        out.commit()
        self._forget()

    def _copy_live(self, fd: int, fh: BinaryIO) -> None:
        """Write the live lines of the journal open at ``fd`` (the last of each key that
        has a record), in their order, each checked to be the line indexed."""
        self._refresh(fd)
        for (offset, length), key in sorted((where, key) for key, where in self._index.items()):
            line = os.pread(fd, length, offset)
            if _is_line_of(line, key):
                fh.write(line)

    def compact(self) -> None:
        """Rewrite the journal with only its live lines once most of its lines are stale;
        fsynced, then renamed over it, all under the journal's lock (a writer waiting for it
        then finds the new journal)."""
        with self._lock:
            fd = self._open_trusted(os.O_RDWR)
            if fd is None:
                return
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
                self._refresh(fd)
                live = len(self._index)
                if self._lines - live >= max(COMPACT_AFTER, live):
                    self._rewrite(fd)
            except OSError as exc:
                raise WriteError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
            finally:
                os.close(fd)


def _compact_quietly(journal: Journal) -> None:
    """Compact where it is worth it, best effort: a journal left long is still right, and
    the record just written stands."""
    with contextlib.suppress(DigitsError, OSError):
        journal.compact()


def _is_line_of(line: bytes, key: bytes) -> bool:
    return line.startswith(key + b" ") and line.endswith(b"\n")


def _planted(exc: OSError) -> bool:
    """An open refused because of what stands at the journal's name (a link, a special
    file), not because the folder is missing."""
    return exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR)


def _is_current(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path``."""
    st = os.fstat(fd)
    try:
        now = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _generation() -> bytes:
    """A journal's first line: its own random generation (not a record: it has no space)."""
    return b"#" + secrets.token_hex(16).encode() + b"\n"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_journals: dict[str, Journal] = {}  # by the directory's real path
_real_paths: dict[Path, str] = {}  # each spelling of a directory met: its real path
_journals_lock = threading.Lock()


def journal_of(directory: Path) -> Journal:
    """The journal of an output directory: one object per directory in this process,
    however the directory is spelt (``out``, ``/abs/out``, through a link). Two would not
    exclude each other: ``lockf`` locks belong to the process, and closing any of its
    descriptors of the file releases them."""
    with _journals_lock:
        real = _real_paths.get(directory)
        if real is None:
            real = _real_paths[directory] = os.path.realpath(directory)
        journal = _journals.get(real)
        if journal is None:
            journal = _journals[real] = Journal(journal_path(directory))
        return journal


def release_journals(directories: list[Path]) -> None:
    """At the end of a run, under its locks: compact the journals of these directories
    where it is worth it, and drop their indexes (a long-lived process does not keep one
    per directory it ever wrote)."""
    for directory in directories:
        _compact_quietly(journal_of(directory))
        with _journals_lock:
            real = _real_paths.pop(directory, None)
            if real is not None:
                _journals.pop(real, None)
                for spelling in [d for d, r in _real_paths.items() if r == real]:
                    del _real_paths[spelling]
