"""Helpers that Dask workers import in the cluster tests (kept apart from the test modules)."""

from __future__ import annotations

import os

from distributed.diagnostics.plugin import WorkerPlugin


class PoisonInput(WorkerPlugin):
    """Makes every worker die (like an out-of-memory kill) when it starts scoring ``name``.

    Registered with the scheduler, it is installed again on each replacement worker, so the
    task keeps killing workers until Dask gives up on it.
    """

    name = "poison-input"

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def setup(self, worker) -> None:
        import digits_onnx.inference.distributed as remote

        original = remote.score_whole_file
        filename = self.filename

        def score_or_die(model_data, sha256, src, *args, **kwargs):
            if os.path.basename(src) == filename:
                os._exit(137)
            return original(model_data, sha256, src, *args, **kwargs)

        remote.score_whole_file = score_or_die


class PoisonPart(WorkerPlugin):
    """Like PoisonInput, for the first part of a file that is split into parts."""

    name = "poison-part"

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def setup(self, worker) -> None:
        import digits_onnx.inference.parts as remote

        original = remote.score_part
        filename = self.filename

        def score_or_die(model_data, sha256, src, dst, options, run_id, index, *args):
            if os.path.basename(src) == filename and index == 0:
                os._exit(137)
            return original(model_data, sha256, src, dst, options, run_id, index, *args)

        remote.score_part = score_or_die
