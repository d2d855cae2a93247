"""How ``digits-score --scheduler local:N`` starts its workers: forked from a fork server.

The fork server is a fresh process that imports Dask once; every local worker is forked from
it with Dask already imported, instead of spending ~0.5 s of a spawned interpreter on it, and
without copying the client's event loop or onnxruntime threads (which forking the client
would). It is started with the environment Dask's nanny gives a worker before it starts, so
numpy starts no thread in it and the server is single-threaded when it forks.

Only the command line uses it: it is one process per run, and it starts the server right after
parsing its arguments, so that the server imports while the command line still imports.
A long-lived Python process keeps Dask's own start method (spawn): a fork server would outlive
the run with the environment and imports of its start. Nothing here imports Dask or numpy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator

from .errors import UsageError

#: What the fork server imports for the workers it forks (it comes with numpy). Not pyarrow
#: or onnxruntime: both start threads when imported; each worker imports them after the fork.
FORK_SERVER_PRELOAD = ("distributed",)

#: Dask's ``distributed.nanny.pre-spawn-environ`` defaults and its hash seed, which Dask sets
#: before a worker starts; the server's children inherit them from the server. Variables
#: already set in the environment win, as they do in Dask.
PRE_SPAWN_ENVIRON = {
    "MALLOC_TRIM_THRESHOLD_": "65536",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PYTHONHASHSEED": "6640",
}

_started = False


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
    """Start the fork server if ``scheduler`` is ``local:N`` and Dask is installed.

    Needs Python 3.11 (``PYTHONSAFEPATH``: the server must import Dask from the installed
    packages, never from a module of the same name in the current directory); on 3.10 the
    workers are spawned.
    """
    global _started
    if (_started or sys.version_info < (3, 11) or local_workers(scheduler) is None
            or importlib.util.find_spec("distributed") is None):
        return
    import multiprocessing
    from multiprocessing import forkserver

    environ = {name: os.environ.get(name, value) for name, value in PRE_SPAWN_ENVIRON.items()}
    if environ["PYTHONHASHSEED"] == "0":
        environ["PYTHONHASHSEED"] = PRE_SPAWN_ENVIRON["PYTHONHASHSEED"]
    environ["PYTHONSAFEPATH"] = "1"
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(FORK_SERVER_PRELOAD))
    with _environ(environ):
        forkserver.ensure_running()
    _started = True


def fork_server_started() -> bool:
    """Whether this process started the fork server (the command line does, for local:N)."""
    return _started


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


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
