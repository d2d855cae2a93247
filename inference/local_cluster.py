"""How ``--scheduler local:N`` starts its workers: forked from a fork server.

The fork server is a fresh, single-threaded process that imports Dask, numpy and pyarrow once;
every local worker is forked from it with those already imported, instead of spending ~0.5 s
of a spawned interpreter on importing them, and without copying this process's event loop or
onnxruntime threads (which forking this process would). The command line starts it right
after parsing its arguments, so that it imports while this process is still importing.
Nothing here imports Dask, numpy or pyarrow.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

from .errors import UsageError

#: What the fork server imports for every worker it forks (Dask's own fork server preloads
#: Dask and numpy too). Their idle threads, OpenBLAS's and jemalloc's, come with fork
#: handlers. Not onnxruntime: importing it starts a background thread without one, so each
#: worker imports it after the fork.
FORK_SERVER_PRELOAD = ("distributed", "numpy", "pyarrow.csv", "pyarrow.ipc")


def local_workers(scheduler: object) -> int | None:
    """N for ``local:N``, None for anything else (a Client, an address)."""
    if not isinstance(scheduler, str) or not scheduler.startswith("local:"):
        return None
    try:
        n = int(scheduler.split(":", 1)[1])
        if n < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--scheduler {scheduler}: expected local:N with N >= 1") from None
    return n


def start_fork_server(scheduler: object) -> None:
    """Start the fork server if ``scheduler`` is ``local:N`` and Dask is installed; a no-op
    otherwise, and when it is already running."""
    if local_workers(scheduler) is None or importlib.util.find_spec("distributed") is None:
        return
    import multiprocessing
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(list(FORK_SERVER_PRELOAD))
    forkserver.ensure_running()


@contextlib.contextmanager
def forked_workers(distributed) -> Iterator[None]:
    """Within this block, Dask's nannies start (and restart) workers through the fork server."""
    import dask

    # With the fork server chosen, Dask would import its optional packages (pandas, lz4)
    # into this process to build a preload list of its own; ours is already in use.
    utils = distributed.utils
    was_set = getattr(utils, "_forkserver_preload_set", None)
    if was_set is not None:
        utils._forkserver_preload_set = True
    try:
        with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
            yield
    finally:
        if was_set is not None:
            utils._forkserver_preload_set = was_set
