"""Reading inputs in tests: a whole input, every batch, the source closed whatever happens;
streams fed by a thread; the temporary files a stream is copied to; the command line run on
an input however it arrives."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

from digits_onnx.inference.readers import Batch, ReadOptions, Source, open_source

#: The most a feeder writes: endless to a reader that stops at the first bytes, yet a bound,
#: so a reader that copies a stream whole fails its test instead of running on.
FEED_CAP = 64 << 20
#: The most bytes one spool may take in a test; a write beyond fails as a full disk would.
SPOOL_CAP = 16 << 20


def read_batches(path: Path, **options: object) -> tuple[Source, list[Batch]]:
    """The opened (and closed) source of ``path`` and all its batches."""
    source = open_source(str(path), ReadOptions(**options))  # type: ignore[arg-type]
    try:
        return source, list(source.batches())
    finally:
        source.close()


class Feeder:
    """A thread that writes ``data``, then ``filler`` over and over (up to FEED_CAP bytes in
    all), into a FIFO it makes at ``target`` or into an open pipe, until the reader closes
    its end. ``filler=b""`` writes ``data`` alone, then closes: a finite stream."""

    def __init__(self, target: Path | IO[bytes], data: bytes, filler: bytes = b"") -> None:
        if isinstance(target, Path):
            os.mkfifo(target)
        self.target, self.data, self.filler = target, data, filler
        #: Bytes the reader took (or the pipe holds) so far.
        self.written = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            if isinstance(self.target, Path):
                with open(self.target, "wb", buffering=0) as fh:
                    self._write(fh)
            else:
                with self.target as fh:
                    self._write(fh)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader stopped: what this is for

    def _write(self, fh: IO[bytes]) -> None:
        for chunk in self._chunks():
            view = memoryview(chunk)
            while view:
                n = fh.write(view) or 0
                view = view[n:]
                self.written += n
            fh.flush()

    def _chunks(self) -> Any:
        for start in range(0, len(self.data), 1 << 16):
            yield self.data[start:start + (1 << 16)]
        while self.filler and self.written < FEED_CAP:
            yield self.filler

    def join(self) -> int:
        """Wait for the writer to stop (the reader closed its end); the bytes it wrote."""
        self.thread.join(60)
        assert not self.thread.is_alive(), "the reader never closed the stream"
        return self.written


class Spools:
    """The anonymous temporary files made while a test runs (``tempfile.TemporaryFile``) and
    the bytes written to each: what reading a stream took of the disk. A write beyond
    ``cap`` in all fails with ``error``, as a file-size limit or a full disk would."""

    def __init__(self) -> None:
        self.files: list[IO[bytes]] = []
        self.written: list[int] = []
        self.cap, self.error = SPOOL_CAP, errno.EFBIG
        self._real = tempfile.TemporaryFile

    def make(self, *args: Any, **kwargs: Any) -> IO[bytes]:
        spool = self._real(*args, **kwargs)
        k = len(self.files)
        self.files.append(spool)
        self.written.append(0)
        write = spool.write

        def counted(data: Any) -> int:
            if self.written[k] + len(data) > self.cap:
                raise OSError(self.error, os.strerror(self.error))
            self.written[k] += len(data)
            return write(data)

        spool.write = counted  # type: ignore[method-assign]
        return spool

    def all_closed(self) -> bool:
        return all(f.closed for f in self.files)


def disk_limit(limit: int) -> Any:
    """A ``preexec_fn`` that caps the size of any file the process writes, as a full disk
    would: a write beyond fails with EFBIG ("File too large")."""
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def score_endless(source: str, *args: str, filler: bytes,
                  tmp: Path) -> tuple[int, str, int | None]:
    """``digits-score SOURCE ARGS`` on an endless stream: a device, or (``-``) a pipe on stdin
    a thread fills with ``filler`` until the scorer closes it. TMPDIR is ``tmp``, and no file
    may grow beyond 16 MiB, which bounds the run: a scorer that copied the stream whole would
    stop there. The exit code, stderr, and the bytes the thread wrote (None for a device)."""
    proc = subprocess.Popen([sys.executable, "-m", "digits_onnx.inference", source, *args],
                            stdin=subprocess.PIPE if source == "-" else subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": str(tmp)},
                            preexec_fn=disk_limit(16 << 20))
    assert proc.stderr is not None
    feeder = Feeder(proc.stdin, b"", filler) if proc.stdin is not None else None
    try:
        code = proc.wait(120)
        err = proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.stderr.close()
    return code, err, feeder.join() if feeder is not None else None


def left_in(tmp: Path) -> list[str]:
    """What a run left in its TMPDIR, but for the session id file onnxruntime writes there
    when it is imported (``.ses``)."""
    return sorted(p.name for p in tmp.iterdir() if p.name != ".ses")


def score_cli(*args: str, input: bytes | None = None, env: dict[str, str] | None = None,
              preexec_fn: Any = None) -> subprocess.CompletedProcess:
    """``digits-score ARGS`` in a fresh process (the bundled model); ``input`` comes through
    a pipe on stdin."""
    return subprocess.run([sys.executable, "-m", "digits_onnx.inference", *args], input=input,
                          capture_output=True, timeout=120, check=False, env=env,
                          preexec_fn=preexec_fn)


def assert_streams_score_as_the_file(tmp_path: Path, file: Path, *args: str,
                                     rows: int) -> None:
    """``file`` scored from stdin and from a FIFO gives, byte for byte, the file's output
    (``rows`` lines after the header)."""
    data = file.read_bytes()
    assert score_cli(str(file), "-o", str(tmp_path / "file.csv"), *args).returncode == 0
    proc = score_cli("-", "-o", str(tmp_path / "stdin.csv"), *args, input=data)
    assert proc.returncode == 0, proc.stderr
    feeder = Feeder(tmp_path / "pipe", data)
    proc = score_cli(str(tmp_path / "pipe"), "-o", str(tmp_path / "fifo.csv"), *args)
    assert proc.returncode == 0, proc.stderr
    feeder.join()
    expected = (tmp_path / "file.csv").read_bytes()
    assert len(expected.splitlines()) == rows + 1
    assert (tmp_path / "stdin.csv").read_bytes() == expected
    assert (tmp_path / "fifo.csv").read_bytes() == expected


def refused_as_file_and_stream(tmp_path: Path, data: bytes, suffix: str,
                               pipe: str = "pipe", options: ReadOptions | None = None
                               ) -> tuple[Path, str, Path, str]:
    """``data`` opened as a file and as a FIFO, both refused: (the file, its error, the
    FIFO, its error)."""
    import pytest
    from digits_onnx.inference.errors import InputDataError

    file = tmp_path / f"x{suffix}"
    file.write_bytes(data)
    with pytest.raises(InputDataError) as of_file:
        open_source(str(file), options)
    path = tmp_path / pipe
    feeder = Feeder(path, data)
    try:
        with pytest.raises(InputDataError) as of_stream:
            open_source(str(path), options)
    finally:
        feeder.join()
    return file, str(of_file.value), path, str(of_stream.value)


def assert_endless_stream_fails_at_once(tmp_path: Path, source: str, fmt: str, filler: bytes,
                                        message: str, at_once: int) -> None:
    """``source`` (a device, or ``-``: a pipe a thread fills with ``filler`` forever) read as
    ``fmt`` on the command line: exit 65 and one line ending in ``message``, nothing left in
    the temporary directory, and the pipe read no further than ``at_once`` bytes."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code, err, fed = score_endless(source, "--input-format", fmt, "-o",
                                   str(tmp_path / "z.csv"), filler=filler, tmp=tmp)
    name = "<stdin>" if source == "-" else source
    assert (code, err) == (65, f"digits-score: error: {name}: {message}\n")
    assert left_in(tmp) == [] and not (tmp_path / "z.csv").exists()
    assert fed is None or fed < at_once


def assert_a_full_disk_stops_the_copy(spools: Spools, path: Path, head: bytes, filler: bytes,
                                      at_once: int) -> None:
    """A FIFO at ``path`` that gives ``head``, then ``filler`` forever, opened while the
    temporary directory fills at 3 MiB (``spools``): one line, exit 74, the temporary file
    closed and gone, and the pipe read no further than ``at_once`` bytes past the cap."""
    import errno

    import pytest
    from digits_onnx.inference import ReadError

    spools.cap, spools.error = 3 << 20, errno.ENOSPC
    feeder = Feeder(path, head, filler)
    with pytest.raises(ReadError) as info:
        open_source(str(path))
    assert str(info.value) == (f"{path}: cannot copy the stream to a temporary file in "
                               f"{tempfile.gettempdir()} (No space left on device); set "
                               "TMPDIR to use another directory")
    assert info.value.exit_code == 74
    assert len(spools.files) == 1 and spools.all_closed()
    assert feeder.join() < (3 << 20) + at_once
