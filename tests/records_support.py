"""Reading and damaging up-to-date records in tests, as they lie in a directory's journal."""

from __future__ import annotations

from pathlib import Path

from digits_onnx.inference.journal import journal_of, journal_path
from digits_onnx.inference.state import record_key


def record_bytes(dst: Path) -> bytes | None:
    """The record of ``dst`` as stored (JSON), or None."""
    return journal_of(dst.parent).get(record_key(dst))


def put_record_bytes(dst: Path, data: bytes) -> None:
    """Make ``data`` the record of ``dst`` (appended as its last line, whatever it holds)."""
    journal_of(dst.parent).put(record_key(dst), data)


def journal_lines(folder: Path) -> list[bytes]:
    """The journal's lines after its first (its generation)."""
    path = journal_path(folder)
    lines = path.read_bytes().splitlines() if path.exists() else []
    assert not lines or lines[0].startswith(b"#"), lines[:1]
    return lines[1:]
