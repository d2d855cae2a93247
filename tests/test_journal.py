"""The journal of records: one append-only file per output directory, read back by an index
that follows other writers, survives lines cut short, and is compacted under the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from digits_onnx.inference import journal as journal_module
from digits_onnx.inference import score_files
from digits_onnx.inference.errors import WriteError
from digits_onnx.inference.fsio import bookkeeping_dir
from digits_onnx.inference.journal import COMPACT_AFTER, Journal, journal_of, journal_path
from digits_onnx.inference.state import read_state

from tests.records_support import journal_lines


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    bookkeeping_dir(tmp_path)
    return Journal(journal_path(tmp_path))


def test_the_last_line_of_a_key_wins_and_a_withdrawal_removes_it(journal):
    journal.put(b"aa", b'{"v":1}')
    journal.put(b"bb", b'{"v":2}')
    journal.put(b"aa", b'{"v":3}')
    assert journal.get(b"aa") == b'{"v":3}' and journal.get(b"bb") == b'{"v":2}'
    journal.withdraw(b"aa")
    assert journal.get(b"aa") is None and journal.get(b"bb") == b'{"v":2}'
    journal.withdraw(b"cc")  # no record: nothing to withdraw, nothing written
    assert len(journal_lines(journal.path.parent.parent)) == 4
    assert journal.get(b"a") is None and journal.get(b"") is None


def test_a_line_cut_short_is_no_record_and_the_next_line_starts_clean(journal):
    journal.put(b"aa", b'{"v":1}')
    with open(journal.path, "ab") as fh:  # a writer killed in the middle of its line
        fh.write(b'bb {"v":')
    fresh = Journal(journal.path)
    assert fresh.get(b"bb") is None and fresh.get(b"aa") == b'{"v":1}'
    journal.put(b"cc", b'{"v":3}')
    assert journal.path.read_bytes().endswith(b'bb {"v":\ncc {"v":3}\n')
    for reader in (journal, Journal(journal.path)):
        assert reader.get(b"cc") == b'{"v":3}' and reader.get(b"aa") == b'{"v":1}'
        assert reader.get(b"bb") == b'{"v":'  # a whole line now, and not JSON: not trusted


def test_what_another_process_appends_is_seen(journal):
    mine, other = journal, Journal(journal.path)  # two processes' views of one file
    mine.put(b"aa", b"1")
    assert other.get(b"aa") == b"1"
    other.put(b"aa", b"2")
    other.put(b"bb", b"3")
    assert mine.get(b"aa") == b"2" and mine.get(b"bb") == b"3"
    other.withdraw(b"bb")
    assert mine.get(b"bb") is None


def test_a_journal_replaced_by_another_file_is_read_anew(journal):
    journal.put(b"aa", b"1" * 50)
    assert journal.get(b"aa") == b"1" * 50
    tmp = journal.path.with_name("other")
    tmp.write_bytes(b"zz 9\n" * 20 + b"aa 2\n")  # longer, and the key elsewhere
    os.replace(tmp, journal.path)
    assert journal.get(b"aa") == b"2" and journal.get(b"zz") == b"9"


def test_threads_appending_at_once_lose_no_line(journal):
    def put_many(t: int) -> None:
        for i in range(200):
            journal.put(f"{t:02x}{i:04x}".encode(), b"x" * (i % 50 + 1))

    threads = [threading.Thread(target=put_many, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reader = Journal(journal.path)
    assert all(reader.get(f"{t:02x}{i:04x}".encode()) == b"x" * (i % 50 + 1)
               for t in range(4) for i in range(200))


APPENDER = """
import sys
from pathlib import Path
from digits_onnx.inference.journal import Journal
journal = Journal(Path(sys.argv[1]))
for i in range(400):
    journal.put(f"{sys.argv[2]}{i:04x}".encode(), b"y" * (i % 300 + 1))
"""


def test_processes_appending_at_once_lose_no_line(journal):
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(journal.path), f"{p:02x}"])
             for p in range(3)]
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0, 0]
    data = journal.path.read_bytes()
    # A writer that looks at the end while another's line is being copied in may start its
    # own on a new line: a blank line at worst, never two lines in one.
    assert data.endswith(b"\n") and len(data.split()) == 1 + 2 * 3 * 400
    assert all(journal.get(f"{p:02x}{i:04x}".encode()) == b"y" * (i % 300 + 1)
               for p in range(3) for i in range(400))


def _inputs(folder: Path, n: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(n):
        rows = rng.integers(0, 17, size=(3, 64))
        (folder / f"f{i:03d}.csv").write_text("".join(",".join(map(str, r)) + "\n"
                                                      for r in rows))


def test_a_directory_of_outputs_keeps_one_journal_and_no_file_per_output(tmp_path, model):
    _inputs(tmp_path / "in", 30)
    out = tmp_path / "out"
    summary = score_files([str(tmp_path / "in")], out_dir=out, model=model, progress=False)
    assert summary.exit_code == 0
    assert sorted(os.listdir(out / ".digits-score")) == ["lock", "records.jsonl"]
    assert len(journal_lines(out)) == 30
    for f in summary.files:
        assert read_state(Path(f.output))["summary"]["rows"] == 3
    again = score_files([str(tmp_path / "in")], out_dir=out, model=model, progress=False)
    assert {f.status for f in again.files} == {"skipped"}
    assert len(journal_lines(out)) == 30, "a run that skips everything appends nothing"


def test_a_journal_of_mostly_replaced_records_is_compacted_under_the_lock(tmp_path, model):
    _inputs(tmp_path / "in", 10)
    out = tmp_path / "out"
    counts = []
    for _ in range(COMPACT_AFTER // 20 + 2):  # a forced run withdraws and appends 10 records
        score_files([str(tmp_path / "in")], out_dir=out, model=model, force=True,
                    progress=False)
        counts.append(len(journal_lines(out)))
    assert counts[:3] == [10, 30, 50]
    assert 10 in counts[3:], f"compacted to the 10 live records at the end of a run: {counts}"
    assert max(counts) < COMPACT_AFTER + 30
    lines = journal_lines(out)
    assert sorted(os.listdir(out / ".digits-score")) == ["lock", "records.jsonl"]
    states = [read_state(out / f"f{i:03d}.pred.csv") for i in range(10)]
    assert all(s is not None and s["summary"]["rows"] == 3 for s in states)
    assert [json.loads(line.partition(b" ")[2])["schema"] for line in lines[-10:]] == [3] * 10
    again = score_files([str(tmp_path / "in")], out_dir=out, model=model, progress=False)
    assert {f.status for f in again.files} == {"skipped"}, "no live record lost"


def test_a_journal_that_only_grew_is_not_rewritten(tmp_path, model):
    _inputs(tmp_path / "in", 5)
    out = tmp_path / "out"
    score_files([str(tmp_path / "in")], out_dir=out, model=model, progress=False)
    before = os.stat(journal_path(out)).st_ino
    journal_of(out).compact()
    assert os.stat(journal_path(out)).st_ino == before


def test_a_journal_rewritten_in_place_is_read_anew(journal):
    """A replacement with the same inode number (freed numbers are reused at once) is told
    apart by the generation line each journal starts with."""
    journal.put(b"aa", b"1")
    journal.put(b"bb", b"2")
    assert journal.get(b"aa") == b"1"
    other = b"#" + b"f" * 32 + b"\n" + b"cc 7\n" + b"zz 9\n" * 3 + b"bb -\n" + b"aa 3\n"
    with open(journal.path, "r+b") as fh:  # same inode, longer, other lines
        fh.write(other)
    assert journal.get(b"cc") == b"7", "a line before the old end is indexed too"
    assert journal.get(b"aa") == b"3" and journal.get(b"bb") is None


def test_a_hard_link_to_the_journal_is_never_written_through(tmp_path, model):
    """A snapshot (``cp -al``) shares the journal's inode: the next append replaces the
    journal by a copy of its live lines first, so the snapshot stays as it was and no
    record is lost."""
    _inputs(tmp_path / "in", 3)
    out = tmp_path / "out"
    score_files([str(tmp_path / "in")], out_dir=out, model=model, progress=False)
    snapshot = tmp_path / "snapshot.jsonl"
    os.link(journal_path(out), snapshot)
    saved = snapshot.read_bytes()
    _inputs(tmp_path / "more", 1)
    os.rename(tmp_path / "more" / "f000.csv", tmp_path / "in" / "g000.csv")
    summary = score_files([str(tmp_path / "in")], out_dir=out, model=model, progress=False)
    assert [f.status for f in summary.files] == ["skipped"] * 3 + ["scored"]
    assert snapshot.read_bytes() == saved
    assert os.stat(journal_path(out)).st_nlink == 1
    assert set(saved.splitlines()[1:]) <= set(journal_lines(out)), "live lines carried over"
    again = score_files([str(tmp_path / "in")], out_dir=out, model=model, progress=False)
    assert {f.status for f in again.files} == {"skipped"}


COMPACTOR = """
import fcntl, os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
with open(path + ".new", "wb") as fh:
    fh.write(b"#" + b"e" * 32 + b"\\n" + b"aa kept\\n")
os.replace(path + ".new", path)
os.close(fd)
"""


def test_a_line_appended_while_another_process_compacts_lands_in_the_new_journal(journal):
    journal.put(b"aa", b"kept")
    compactor = subprocess.Popen([sys.executable, "-c", COMPACTOR, str(journal.path)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert compactor.stdout.readline() == b"locked\n"
    writer = threading.Thread(target=journal.put, args=(b"bb", b"late"))
    writer.start()  # waits for the lock the compactor holds
    writer.join(0.3)
    assert writer.is_alive(), "the append waits for the lock"
    compactor.communicate(b"go\n", timeout=60)
    writer.join(60)
    assert Journal(journal.path).get(b"bb") == b"late"
    assert journal.path.read_bytes().endswith(b"aa kept\nbb late\n")


def test_every_spelling_of_a_directory_shares_one_journal(tmp_path, monkeypatch):
    """Two objects for one file in one process would not exclude each other: lockf locks
    belong to the process."""
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path / "out", tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    spellings = [Path("out"), tmp_path / "out", Path("link"), Path("./out")]
    assert len({id(journal_of(d)) for d in spellings}) == 1


def test_a_journal_that_grows_large_is_compacted_as_it_is_appended_to(journal, monkeypatch):
    monkeypatch.setattr(journal_module, "COMPACT_AFTER", 10)
    monkeypatch.setattr(journal_module, "COMPACT_BYTES", 2000)
    grows = Journal(journal.path)
    sizes = []
    for i in range(200):
        grows.put(b"%02x" % (i % 5), b"v" * 40)
        sizes.append(journal.path.stat().st_size)
    assert max(sizes) < 2 * 2000, "compacted along the way, not only at the end of a run"
    assert all(grows.get(b"%02x" % k) == b"v" * 40 for k in range(5))
    assert len(journal_lines(journal.path.parent.parent)) <= 5 + max(sizes) // 40


def test_a_compaction_that_fails_as_a_line_is_appended_leaves_the_line(journal, monkeypatch):
    """Compacting is best effort: the record just written stands whatever happens to it."""
    monkeypatch.setattr(journal_module, "COMPACT_BYTES", 10)
    grows = Journal(journal.path)

    def fails() -> None:
        raise WriteError(f"{journal.path}: cannot write (No space left on device)")

    monkeypatch.setattr(grows, "compact", fails)
    grows.put(b"aa", b"v" * 40)
    assert Journal(journal.path).get(b"aa") == b"v" * 40
