"""Many files at once: small files are scored side by side on a few threads, and their
summaries come back in input order.

Scoring a small file is mostly fixed costs: opening, sniffing, a pyarrow parse, an onnxruntime
run, an fsync and two renames. pyarrow, onnxruntime and the system calls release the GIL, so
a second thread keeps the other core busy while the first one waits. "Small" is by the memory
a file holds while it is scored: a file of one read block, or a file read in blocks of at
most a quarter of the block size (up to 16 MiB at the default 8 MiB: 2 MiB blocks, of which
its pipeline holds about three), whose own read-ahead alone would leave a core idle at its
first and last block. A larger file is scored alone on the caller's thread, as one file
always was: its read-ahead and pyarrow's parser threads already keep both cores busy, and
two at once would double the memory held in blocks.

Bounded work: at most ``workers`` files are being scored and at most ``2 * workers`` are
submitted ahead of the one reported next; a finished file holds only its summary until its
turn comes. What each file writes, and in what order it commits, is the per-file pipeline's
(:func:`.pipeline.score_one`) whatever thread runs it: outputs are byte for byte those of one
file scored alone.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa

from .errors import DigitsError
from .readers import STDIN, ReadOptions, detect_format
from .readers.csv import block_bytes, largest_block
from .stopping import Unsplit
from .summary import FileSummary

#: More threads than this buy nothing: the Python share of each file holds the GIL.
MAX_WORKERS = 4


def default_workers() -> int:
    """Files scored side by side: the size of pyarrow's CPU pool (``--threads`` sets it, else
    one per core), at most :data:`MAX_WORKERS`; one means file after file."""
    return max(1, min(pa.cpu_count(), MAX_WORKERS))


def is_small(src: str, read: ReadOptions) -> bool:
    """Whether ``src`` is a regular file that holds no more in memory while scored than one
    read block (see the module; stdin, pipes and devices are read as streams on the
    caller's thread). Only a plain CSV is read in blocks sized to the file: a gzipped one is
    read in full blocks, an NPY or Parquet file in batches of rows."""
    if src == STDIN:
        return False
    try:
        st = os.stat(src)
    except OSError:
        return True  # it fails at once, on whichever thread
    if not stat.S_ISREG(st.st_mode):
        return False
    chunk = largest_block(read.chunk_bytes)
    if st.st_size <= chunk:
        return True
    if 4 * block_bytes(chunk, st.st_size) > chunk:
        return False
    try:
        return detect_format(src, read.input_format) == "csv"
    except DigitsError:
        return True  # it fails at once, on whichever thread


def score_in_order(pairs: Sequence[tuple[str, str]],
                   score: Callable[[str, str], FileSummary], *, workers: int,
                   small: Callable[[str], bool]) -> Generator[FileSummary, None, None]:
    """Yield ``score(src, dst)`` for each pair, in the order of ``pairs``.

    ``score`` reports a file's failure in its summary rather than raising. Files for which
    ``small`` is true run on a pool of ``workers`` threads; any other file runs on the
    caller's thread once every file before it has been reported, so it never overlaps
    another. With one worker (or one file) everything runs on the caller's thread.
    Closing the iterator early cancels the files not yet started and waits for the running
    ones (each commits whole or not at all).
    """
    if workers < 2 or len(pairs) < 2:
        for src, dst in pairs:
            yield score(src, dst)
        return
    # The first import of pyarrow.compute registers Arrow's compute functions again, and a
    # writer on another thread that looks one up meanwhile fails ("No function registered
    # with name: cast"): import it before any worker starts, whatever a file will need.
    import pyarrow.compute  # noqa: F401

    ahead = 2 * workers
    pending: deque[Future[FileSummary]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="digits-file") as pool:
        try:
            for src, dst in pairs:
                if not small(src):
                    while pending:
                        yield pending[0].result()
                        pending.popleft()
                    yield score(src, dst)
                    continue
                if len(pending) >= ahead:
                    yield pending[0].result()
                    pending.popleft()
                # A stop inside submit, as it starts a worker thread, would leave that thread
                # scoring a file unseen by the pool's shutdown and by the run's summary.
                with Unsplit():
                    pending.append(pool.submit(score, src, dst))
            while pending:
                yield pending[0].result()
                pending.popleft()
        finally:
            # Every file not started, including one a stop caught as it was submitted.
            pool.shutdown(cancel_futures=True)
