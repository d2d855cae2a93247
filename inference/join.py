"""The last task of a split file: its output, written from its parts as the local engine
would have written it (see :mod:`.parts` for the tasks before it).

The join goes through the pipeline's end (:func:`.pipeline.write_output`,
:func:`.pipeline.finish_file`: temporary file, reject report, atomic rename, up-to-date
record). Encoded slices of a text output are appended after the header in file order;
tables (Parquet, NPY, compressed text) go through the format's writer. The record's input
hash is the parts' range hashes when they cover the file (the join hashes only the header
before the first part), else the whole file's sha256. Rejects' and errors' rows and lines
are shifted to the whole file's numbering, and the first problem in file order is the one
reported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from .errors import ClusterError, DigitsError, InputDataError, internal_error, write_error
from .options import ScoreOptions
from .parts import PartResult, Slice, encode, read_tables, renumbered
from .pipeline import finish_file, recorded_summary, remove_unit, write_output
from .plan import rejects_path_for
from .state import InputDigest, StatKey, covering_ranges, file_sha256
from .summary import FileSummary, Tally, failed_summary
from .writers import RejectReport, TableWriter, Writer, detect_output_format


def join_parts(sha256: str, src: str, dst: str, options: ScoreOptions,
               before: StatKey | None, parts: list[PartResult], started: float, run_id: str,
               digest: str | DigitsError | None = None,
               slices: Sequence[Slice | None] = ()) -> FileSummary:
    """Write the file's output from its parts, in order, as the local engine would have.

    ``digest`` is the input's sha256 (:func:`hash_file`; None: the parts' range hashes, or
    hashed here when they do not cover the file), ``slices`` the encode tasks' results, one
    per part (None where the part encoded itself).
    """
    try:
        return _join(sha256, src, dst, options, before, parts, started, run_id, digest,
                     slices)
    except DigitsError as exc:
        if not isinstance(exc, ClusterError):
            exc.removed = remove_unit(dst, rejects_path_for(src, dst))
        return failed_summary(src, exc)
    except Exception as exc:
        return failed_summary(src, internal_error(src, exc))
    finally:
        for path in {p.path for p in parts} | {s.path for s in slices if s is not None and s.path}:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _join(sha256: str, src: str, dst: str, options: ScoreOptions, before: StatKey | None,
          parts: list[PartResult], started: float, run_id: str,
          digest: str | DigitsError | None, slices: Sequence[Slice | None]) -> FileSummary:
    order = sorted(range(len(parts)), key=lambda i: parts[i].index)
    parts = [parts[i] for i in order]
    by_part = [slices[i] if slices else None for i in order]
    needed = []
    for part, piece in zip(parts, by_part, strict=True):
        if not part.tally.stopped:  # a part that failed is reported whatever its files
            needed.append(part.path)
            if piece is not None and piece.error is None:
                needed.append(piece.path)
    if not all(os.path.exists(path) for path in needed):
        # A rerun after the output was committed and the part files (some or all) removed:
        # report that run; never fail, which would remove the committed output.
        recorded = recorded_summary(src, dst, run_id)
        if recorded is not None:
            return recorded
        raise ClusterError(f"{src}: parts of the file were lost; run again")
    shifts = _shifts(parts)
    total = Tally()
    for part, (row_shift, line_shift) in zip(parts, shifts, strict=True):
        first_new = len(total.rejects)
        total.merge(part.tally, row_shift, line_shift)
        if part.tally.stopped:
            if part.tally.rejects:  # --on-error fail: the first bad row of the file
                first = total.rejects[first_new]
                raise InputDataError(f"{src}: {first.where()}: {first.reason}")
            raise part.failure(line_shift) or ClusterError(f"{src}: a part failed")
    encoded: list[Slice] = []
    for part, piece in zip(parts, by_part, strict=True):
        if piece is None and part.encoded:
            piece = Slice(part.path, part.written)
        if piece is not None and piece.error is not None:
            raise piece.error
        if piece is not None:
            encoded.append(piece)
    if encoded and len(encoded) != len(parts):
        raise AssertionError("some parts of a text output were not encoded")
    id_name = parts[0].id_name if parts else None
    fmt = detect_output_format(dst, options.output_format)
    schema = parts[0].schema  # every part succeeded by now: each carries the output's columns
    if schema is None:
        raise AssertionError(f"{src}: a part that succeeded carries no schema")
    report = RejectReport(rejects_path_for(src, dst))

    def fill(writer: Writer) -> Tally:
        try:
            if encoded:
                _append_slices(writer, encode(fmt, schema, None).size, encoded)
            else:
                _write_tables(writer, parts, shifts, id_name, src)
        except OSError as exc:
            raise write_error(dst, exc) from None
        report.add(total.rejects)
        return total

    def sha() -> InputDigest:
        if isinstance(digest, DigitsError):
            raise digest
        return input_digest(src, before, parts) if digest is None else digest

    unit = write_output(src, dst, fmt, schema, fill, report, before=before, display=src,
                        digest=sha)
    return finish_file(FileSummary(input=src, output=dst), unit, src, dst, before, sha256,
                       options, started, run_id)


def input_digest(src: str, before: StatKey | None,
                 parts: Sequence[PartResult]) -> InputDigest:
    """The record's hash of the input: the ranges the parts hashed as they read them, when
    every part reports its range and together (with the header before the first, hashed
    here) they make the whole file; else the whole file's sha256."""
    ranges = [part.read_range for part in parts]
    if parts and before is not None and all(r is not None for r in ranges):
        covered = covering_ranges(src, before[0], [r for r in ranges if r is not None])
        if covered is not None:
            return covered
    return file_sha256(src)


def _write_tables(writer: Writer, parts: list[PartResult], shifts: list[tuple[int, int]],
                  id_name: str | None, src: str) -> None:
    """Write the parts' tables through the output format's writer, renumbered."""
    for part, (row_shift, _) in zip(parts, shifts, strict=True):
        with read_tables(part.path) as reader:
            for i in range(reader.num_record_batches):
                table = renumbered(pa.Table.from_batches([reader.get_batch(i)]), id_name,
                                    row_shift)
                try:
                    writer.write(table)
                except InputDataError as exc:  # what the output format cannot hold
                    raise InputDataError(f"{src}: {exc}") from None


def _append_slices(writer: Writer, header_size: int, slices: list[Slice]) -> None:
    """Append the parts' encoded rows, in order, after the header the output's writer wrote.

    The writer of a text format writes its header when it opens the file and nothing when it
    closes it, so the rows' bytes go straight into its file and are counted as written.
    """
    if not isinstance(writer, TableWriter) or not isinstance(writer.sink, Path):
        raise AssertionError("encoded rows need the output's file")
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    with open(writer.sink, "ab") as out:
        if out.tell() != header_size:
            raise AssertionError("the output's writer has not written just its header")
        for piece in slices:
            with open(piece.path, "rb", buffering=0) as fh:
                while n := fh.readinto(buffer):
                    out.write(view[:n])
            writer.rows += piece.rows


def _shifts(parts: list[PartResult]) -> list[tuple[int, int]]:
    """(row shift, line shift) that turn each part's numbers into the whole file's."""
    shifts = []
    rows_before = 0
    line = parts[0].first_line if parts else None
    for part in parts:
        line_shift = 0
        if part.first_line is not None and line is not None:
            line_shift = line - part.first_line
            line = None if part.next_line is None else part.next_line + line_shift
        shifts.append((rows_before - part.row_base, line_shift))
        rows_before += part.tally.rows
    return shifts
