"""Scoring on a real Dask cluster gives the local engine's outputs, byte for byte.

A scheduler and two workers run as separate processes on 127.0.0.1 (``dask scheduler`` and
``dask worker``), as users run them; inputs and outputs live on the shared local disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import distributed
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from digits_onnx.inference import Model, OutputError, ReadOptions, ScoreOptions, score_files
from digits_onnx.inference.cli import main

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
PART_BYTES = 256 << 10  # small parts, so the test files are split into several


def _write_csv(path: Path, X: np.ndarray, labels: np.ndarray | None = None, *,
               ids: bool = True) -> None:
    columns = {"id": pa.array([f"{path.stem}-{i}" for i in range(len(X))])} if ids else {}
    columns.update({f"pixel_{k // 8}_{k % 8}": pa.array(X[:, k]) for k in range(64)})
    if labels is not None:
        columns["label"] = pa.array(labels)
    pacsv.write_csv(pa.table(columns), path,
                    write_options=pacsv.WriteOptions(quoting_header="none",
                                                     quoting_style="none"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CSV and NPY files, small and large (split into parts), clean and with bad rows."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(11)
    for i in range(6):
        n = 300 if i % 2 else 6000  # ~0.9 MB: several parts each
        X = rng.integers(0, 17, size=(n, 64))
        _write_csv(folder / f"batch{i}.csv", X, rng.integers(0, 10, size=n))
    bad = (folder / "batch0.csv").read_text().splitlines()
    bad[2500] = bad[2500].replace(",", ",x", 1)  # a non-number in a late part
    bad[4000] = ",".join(bad[4000].split(",")[:-3])  # a short row
    bad.insert(5100, "")  # a blank line
    (folder / "dirty.csv").write_text("\n".join(bad) + "\n")
    np.save(folder / "wide.npy", rng.integers(0, 17, size=(20000, 64)).astype(np.float32))
    np.save(folder / "images.npy", rng.integers(0, 17, size=(500, 8, 8)).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """``dask scheduler`` and two ``dask worker`` processes; yields the scheduler address."""
    folder = tmp_path_factory.mktemp("cluster")
    scheduler_file = folder / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    logs = contextlib.ExitStack()

    def log(name: str):
        return logs.enter_context(folder.joinpath(f"{name}.log").open("w"))

    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen(
        [*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log("scheduler"))]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        for name in ("w1", "w2"):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name,
                 "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log(name)))
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logs.close()


def _options(**kw) -> ScoreOptions:
    read = ReadOptions(id_column="id", label_column="label")
    return ScoreOptions(read=read, **kw)


def _files(folder: Path) -> dict[str, bytes]:
    """Outputs and reject reports (not the lock or the up-to-date records, which hold paths)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if not p.name.startswith(".")}


def _comparable(summary) -> dict:
    data = summary.to_dict()
    data["totals"].pop("seconds")
    for f in data["files"]:
        f.pop("seconds"), f.pop("rows_per_second")
        f["output"] = f["output"] and Path(f["output"]).name
        f["rejects_file"] = f["rejects_file"] and Path(f["rejects_file"]).name
    return data


def _run_both(inputs: Path, tmp_path: Path, scheduler, **kw):
    """Score the inputs on both engines: the CSVs with their id and label columns, the NPY
    files (which hold only features) without."""
    model = Model.load()
    csvs = sorted(str(p) for p in inputs.iterdir() if p.suffix == ".csv")
    npys = sorted(str(p) for p in inputs.iterdir() if p.suffix == ".npy")
    local_dir, cluster_dir = tmp_path / "local", tmp_path / "cluster"
    local_dir.mkdir()
    cluster_dir.mkdir()
    options = kw.pop("options", _options(on_error="skip"))
    features_only = replace(options, read=ReadOptions())
    runs = []
    for out, extra in ((local_dir, {}), (cluster_dir, {"scheduler": scheduler,
                                                       "part_bytes": PART_BYTES})):
        first = score_files(csvs, out_dir=out, model=model, options=options, **extra, **kw)
        second = score_files(npys, out_dir=out, model=model, options=features_only, **extra,
                             **kw)
        first.files += second.files
        runs.append(first)
    return runs[0], runs[1], local_dir, cluster_dir


@pytest.mark.parametrize("output_format", ["csv", "parquet", "jsonl"])
def test_cluster_outputs_equal_the_local_engine(inputs, cluster, tmp_path, output_format):
    local, remote, local_dir, cluster_dir = _run_both(
        inputs, tmp_path, cluster, options=_options(on_error="skip",
                                                    output_format=output_format, proba=True))
    assert _files(cluster_dir) == _files(local_dir)
    assert "dirty.rejects.csv" in _files(cluster_dir)
    assert _comparable(remote) == _comparable(local)
    assert remote.exit_code == local.exit_code == 0
    assert not [p for p in cluster_dir.iterdir() if ".part-" in p.name or p.suffix == ".tmp"]


def test_a_bad_row_fails_its_file_with_the_local_message(inputs, cluster, tmp_path):
    local, remote, local_dir, cluster_dir = _run_both(inputs, tmp_path, cluster,
                                                      options=_options())
    (failed,) = remote.failed
    assert failed.input.endswith("dirty.csv") and "dirty.pred.csv" not in _files(cluster_dir)
    assert failed.error == local.failed[0].error
    assert "line 2501, column 2 (pixel_0_0)" in failed.error
    assert remote.exit_code == local.exit_code == 1
    assert _files(cluster_dir) == _files(local_dir)


@pytest.mark.parametrize("output_format", ["csv", "tsv", "jsonl", "parquet"])
def test_csvs_keyed_by_row_number_equal_the_local_engine(cluster, tmp_path, output_format):
    """Without an id column a later part's row numbers are known only once the parts before
    it are counted: encoded by tasks of their own, then concatenated by the join."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(4)
    for name in ("clean", "dirty"):
        _write_csv(src / f"{name}.csv", rng.integers(0, 17, size=(6000, 64)),
                   rng.integers(0, 10, size=6000), ids=False)
    dirty = (src / "dirty.csv").read_text().splitlines()
    dirty[2500] = dirty[2500].replace(",", ",x", 1)
    dirty.insert(4100, "")
    (src / "dirty.csv").write_text("\n".join(dirty) + "\n")
    options = ScoreOptions(read=ReadOptions(label_column="label"), on_error="skip",
                           output_format=output_format, proba=True)
    outs = {name: tmp_path / name for name in ("local", "cluster")}
    for out in outs.values():
        out.mkdir()
    local = score_files([str(src)], out_dir=outs["local"], options=options)
    remote = score_files([str(src)], out_dir=outs["cluster"], options=options,
                         scheduler=cluster, part_bytes=PART_BYTES)
    assert _files(outs["cluster"]) == _files(outs["local"])
    assert "dirty.rejects.csv" in _files(outs["cluster"])
    assert _comparable(remote) == _comparable(local)
    assert remote.total("rows") == 12000 and remote.total("rejected") == 1


def test_bad_data_is_reported_as_the_local_engine_reports_it(inputs, cluster, tmp_path):
    """A task that fails on bad data (not a worker's death) names the file and the line, in
    the whole file's numbering, even when the part that found it ran in another process than
    the join that reports it."""
    src = tmp_path / "in"
    src.mkdir()
    lines = (inputs / "batch0.csv").read_text().splitlines()
    long_line = "1," * (16 << 20)  # well beyond the reader's 16 MiB limit
    (src / "long.csv").write_text("\n".join([*lines[:3000], long_line, *lines[3000:]]) + "\n")
    small = lines[:200]
    fields = small[150].split(",")
    small[150] = ",".join([fields[0], "seven", *fields[2:]])
    (src / "small.csv").write_text("\n".join(small) + "\n")
    outs = {name: tmp_path / name for name in ("local", "cluster")}
    for out in outs.values():
        out.mkdir()
    local = score_files([str(src)], out_dir=outs["local"], options=_options())
    remote = score_files([str(src)], out_dir=outs["cluster"], options=_options(),
                         scheduler=cluster, part_bytes=4 << 20)
    assert [f.error for f in remote.files] == [f.error for f in local.files]
    assert [f.exit_code for f in remote.files] == [f.exit_code for f in local.files] == [65, 65]
    long_error, small_error = (f.error for f in remote.files)
    assert long_error == f"{src / 'long.csv'}: line 3001 is longer than 16 MiB; this is not a " \
        "file of 64-feature rows"
    assert "small.csv: line 151, column" in small_error
    assert _files(outs["cluster"]) == _files(outs["local"]) == {}


def test_rerun_skips_up_to_date_outputs(inputs, cluster, tmp_path):
    _, remote, _, cluster_dir = _run_both(inputs, tmp_path, cluster)
    statuses = []
    for suffix, options in ((".csv", _options(on_error="skip")),
                            (".npy", ScoreOptions(on_error="skip"))):
        again = score_files(sorted(str(p) for p in inputs.iterdir() if p.suffix == suffix),
                            out_dir=cluster_dir, options=options, scheduler=cluster,
                            part_bytes=PART_BYTES)
        statuses += [f.status for f in again.files]
    assert statuses == ["skipped"] * len(remote.files)


def test_either_engine_skips_what_the_other_scored(inputs, cluster, tmp_path):
    """A split CSV's record holds its parts' range hashes (no task read it twice), an NPY's
    and the local engine's the whole file's sha256; each engine skips the other's outputs,
    also once the input's identity changed, and rescores a changed input."""
    from digits_onnx.inference.state import read_state

    src = tmp_path / "big.csv"
    src.write_bytes((inputs / "batch0.csv").read_bytes())
    local_dir, cluster_dir = tmp_path / "local", tmp_path / "cluster"
    local_dir.mkdir()
    cluster_dir.mkdir()
    options = _options(on_error="skip")
    on_cluster = {"scheduler": cluster, "part_bytes": PART_BYTES}
    assert score_files([str(src)], out_dir=local_dir, options=options).exit_code == 0
    assert score_files([str(src)], out_dir=cluster_dir, options=options,
                       **on_cluster).exit_code == 0
    local_record = read_state(local_dir / "big.pred.csv")["input"]
    cluster_record = read_state(cluster_dir / "big.pred.csv")["input"]
    assert isinstance(local_record["sha256"], str) and "sha256_ranges" not in local_record
    assert cluster_record["sha256"] is None and len(cluster_record["sha256_ranges"]) > 2
    for touch in (False, True):
        if touch:
            os.utime(src, ns=(10**9, 10**9))
        again = [score_files([str(src)], out_dir=cluster_dir, options=options).files[0],
                 score_files([str(src)], out_dir=local_dir, options=options,
                             **on_cluster).files[0]]
        assert [f.status for f in again] == ["skipped", "skipped"]
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 1] = b"9" if data[middle:middle + 1] != b"9" else b"8"
    st = src.stat()
    src.write_bytes(bytes(data))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = [score_files([str(src)], out_dir=cluster_dir, options=options).files[0],
             score_files([str(src)], out_dir=local_dir, options=options, **on_cluster).files[0]]
    assert [f.status for f in again] == ["scored", "scored"]


def test_cli_scheduler_flag(inputs, cluster, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    code = main([str(inputs / "wide.npy"), "--out-dir", str(out), "--scheduler", cluster,
                 "--part-size", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "wide.npy" in err and "20000 rows" in err
    code = main([str(inputs / "batch1.csv"), "--out-dir", str(out), "--scheduler", cluster,
                 "--part-size", "1", "--id-column", "id", "--label-column", "label"])
    assert code == 0, capsys.readouterr().err
    assert sorted(_files(out)) == ["batch1.pred.csv", "wide.pred.csv"]


def test_killed_worker_loses_and_duplicates_no_row(inputs, cluster, tmp_path):
    """SIGKILL one worker mid-run: Dask reruns its tasks elsewhere; outputs are unchanged."""
    many = tmp_path / "many"
    many.mkdir()
    rng = np.random.default_rng(5)
    for i in range(24):
        _write_csv(many / f"f{i:02d}.csv", rng.integers(0, 17, size=(4000, 64)))
    local_dir, cluster_dir = tmp_path / "local", tmp_path / "cluster"
    local_dir.mkdir()
    cluster_dir.mkdir()
    options = ScoreOptions(read=ReadOptions(id_column="id"), proba=True)
    local = score_files([str(many)], out_dir=local_dir, options=options)

    with distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    seen_at_kill: list[int] = []

    def kill_when_work_is_under_way() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [p for p in cluster_dir.iterdir() if p.name.endswith(".pred.csv")]
            if done:
                seen_at_kill.append(len(done))
                os.kill(victim, signal.SIGKILL)
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_when_work_is_under_way)
    killer.start()
    remote = score_files([str(many)], out_dir=cluster_dir, options=options,
                         scheduler=cluster, part_bytes=PART_BYTES)
    killer.join()
    assert seen_at_kill and seen_at_kill[0] < 24, "the worker was not killed mid-run"
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    assert remote.exit_code == 0
    assert remote.total("rows") == remote.total("scored") == 24 * 4000
    assert _files(cluster_dir) == _files(local_dir)
    assert _comparable(remote) == _comparable(local)
    with distributed.Client(cluster) as client:  # the nanny replaced the worker
        client.wait_for_workers(2, timeout=60)


def test_a_worker_killed_during_a_split_file_loses_no_row(cluster, tmp_path):
    """SIGKILL a worker while a file's parts run: Dask reruns the parts, encodings and counts
    it held; the output is still the local engine's, and no part file is left behind."""
    src = tmp_path / "big.csv"
    rng = np.random.default_rng(9)
    _write_csv(src, rng.integers(0, 17, size=(60000, 64)), ids=False)  # ~9 MB: 36 parts
    local_dir, cluster_dir = tmp_path / "local", tmp_path / "cluster"
    local_dir.mkdir()
    cluster_dir.mkdir()
    options = ScoreOptions(proba=True)  # keyed by row number: parts, counts, encodings
    local = score_files([str(src)], out_dir=local_dir, options=options)
    with distributed.Client(cluster) as client:
        victim = sorted(client.run(os.getpid).values())[0]
    killed: list[bool] = []

    def kill_when_parts_are_under_way() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(".part-" in p.name and p.suffix == ".arrow"
                   for p in cluster_dir.iterdir()) >= 3:
                os.kill(victim, signal.SIGKILL)
                killed.append(True)
                return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_when_parts_are_under_way)
    killer.start()
    remote = score_files([str(src)], out_dir=cluster_dir, options=options, scheduler=cluster,
                         part_bytes=PART_BYTES)
    killer.join()
    assert killed, "the worker was not killed mid-run"
    assert remote.exit_code == 0, remote.files[0].error
    assert _files(cluster_dir) == _files(local_dir)
    assert _comparable(remote) == _comparable(local)
    with distributed.Client(cluster) as client:  # the nanny replaced the worker
        client.wait_for_workers(2, timeout=60)


def test_local_cluster_gives_the_same_outputs(inputs, tmp_path):
    local, remote, local_dir, cluster_dir = _run_both(inputs, tmp_path, "local:2")
    assert _files(cluster_dir) == _files(local_dir)
    assert _comparable(remote) == _comparable(local)


def test_a_task_that_keeps_killing_workers_fails_its_file(inputs, tmp_path):
    import dask

    from tests.dask_support import PoisonInput

    out = tmp_path / "out"
    out.mkdir()
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                     dashboard_address=":0") as local_cluster, \
            distributed.Client(local_cluster) as client:
        client.register_plugin(PoisonInput("batch1.csv"))
        summary = score_files([str(inputs / "batch1.csv"), str(inputs / "batch3.csv")],
                              out_dir=out, options=_options(), scheduler=client,
                              part_bytes=PART_BYTES)
    poisoned, healthy = summary.files
    assert poisoned.status == "failed" and poisoned.exit_code == 69
    assert "killed every worker that ran it" in poisoned.error
    assert healthy.status == "scored" and healthy.rows == 300
    assert summary.exit_code == 1
    assert sorted(_files(out)) == ["batch3.pred.csv"]
    assert not [p for p in out.iterdir() if p.suffix == ".tmp" or ".part-" in p.name]


def test_model_hash_is_checked_on_the_worker():
    from digits_onnx.inference.errors import ModelError
    from digits_onnx.inference.parts import worker_model

    model = Model.load()
    assert worker_model(model.data, model.sha256).sha256 == model.sha256
    with pytest.raises(ModelError, match="does not match sha256"):
        worker_model(model.data + b"\0", model.sha256)


def test_without_dask_the_flag_is_a_usage_error(tmp_path):
    """The base install has no Dask: --scheduler says what to install and exits 2."""
    code = (
        "import sys\n"
        "sys.modules['distributed'] = None  # as if the dask extra were not installed\n"
        "from digits_onnx.inference.cli import main\n"
        f"sys.exit(main([{str(REPO / 'examples' / 'digits_test.npy')!r}, '-o', "
        f"{str(tmp_path / 'o.csv')!r}, '--scheduler', 'local:2']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr == ("digits-score: error: --scheduler needs Dask: "
                           "pip install 'digits-onnx[dask]' (from a checkout: "
                           "pip install -e '.[dask]')\n")
    assert not (tmp_path / "o.csv").exists()


def test_unreachable_scheduler_exits_69(tmp_path, capsys):
    code = main([str(REPO / "examples" / "digits_test.npy"), "-o", str(tmp_path / "o.csv"),
                 "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 69
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / ".digits-score"]


def test_progress_bar_counts_tasks_when_asked(inputs, cluster, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    score_files([str(inputs / "wide.npy")], out_dir=out, scheduler=cluster,
                part_bytes=PART_BYTES, progress=True)
    err = capsys.readouterr().err
    parts = -(-(20000 * 64 * 4) // PART_BYTES)  # row ranges of PART_BYTES
    # Plus the input's sha256 and the join (an NPY's parts encode their own rows). tqdm
    # redraws at most every 0.1 s and clears the bar when done (leave=False), so the last
    # count drawn depends on timing; the total is what the bar must get right.
    assert f"/{parts + 2} [" in err and "task" in err
    score_files([str(inputs / "wide.npy")], out_dir=out, scheduler=cluster, force=True,
                part_bytes=PART_BYTES)
    assert capsys.readouterr().err == ""  # not a terminal: no bar


def test_a_split_input_is_never_its_own_output(inputs, cluster, tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes((inputs / "batch0.csv").read_bytes())
    before = src.read_bytes()
    with pytest.raises(OutputError, match="the output would overwrite its own input") as info:
        score_files([str(src)], output=str(src), options=_options(), scheduler=cluster,
                    part_bytes=PART_BYTES)
    assert str(info.value) == f"{src}: the output would overwrite its own input"
    assert info.value.exit_code == 73
    assert src.read_bytes() == before


def test_no_part_file_outlives_a_failed_split_file(inputs, tmp_path):
    """The parts still running when another part fails end before the run returns."""
    import dask

    from tests.dask_support import PoisonPart

    out = tmp_path / "out"
    out.mkdir()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                     dashboard_address=":0") as local_cluster, \
            distributed.Client(local_cluster) as client:
        client.register_plugin(PoisonPart("wide.npy"))
        summary = score_files([str(inputs / "wide.npy")], out_dir=out, scheduler=client,
                              part_bytes=PART_BYTES)
        (failed,) = summary.files
        assert failed.status == "failed" and failed.exit_code == 69
        assert [p.name for p in out.iterdir()] == [".digits-score"]
        time.sleep(2)  # nothing arrives late either
        assert [p.name for p in out.iterdir()] == [".digits-score"]


SPAWN_PROBE = """
import json, os, sys

from digits_onnx.inference.distributed import connect

if __name__ == "__main__":
    with connect("local:2") as client:
        parents = list(client.run(os.getppid).values())
    print(json.dumps({"parents": parents, "pid": os.getpid()}))
"""


def test_local_workers_start_the_way_dask_starts_them(tmp_path):
    """local:N is a plain LocalCluster: Dask starts each worker from this process (its nanny
    lives here), not from a fork server or another helper that could outlive the run."""
    script = tmp_path / "probe.py"
    script.write_text(SPAWN_PROBE)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["parents"] == [seen["pid"], seen["pid"]]


def test_the_command_line_on_local_workers_writes_the_local_outputs(inputs, tmp_path):
    srcs = sorted(str(p) for p in inputs.iterdir() if p.suffix == ".csv")
    flags = ["--id-column", "id", "--label-column", "label", "--on-error", "skip", "-q"]
    codes = {}
    for name, extra in {"local": [], "cluster": ["--scheduler", "local:2"]}.items():
        (tmp_path / name).mkdir()
        codes[name] = subprocess.run(
            [sys.executable, "-m", "digits_onnx.inference", *srcs, *flags,
             "--out-dir", str(tmp_path / name), *extra],
            capture_output=True, text=True, timeout=300, check=False).returncode
    assert codes == {"local": 0, "cluster": 0}
    assert _files(tmp_path / "cluster") == _files(tmp_path / "local")
    assert "dirty.rejects.csv" in _files(tmp_path / "cluster")


def test_local_workers_never_import_from_the_current_directory(tmp_path):
    """A worker process must not run a numpy.py that lies beside the user's files."""
    import sysconfig

    script = Path(sysconfig.get_path("scripts")) / "digits-score"
    assert script.exists(), "the package is not installed (pip install -e '.[dev]')"
    (tmp_path / "numpy.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('SHADOWED').touch()\n"
        "raise ImportError('not numpy')\n")
    proc = subprocess.run(
        [str(script), str(REPO / "examples" / "digits_test.npy"), "-o", "out.csv", "-q",
         "--scheduler", "local:1"], capture_output=True, text=True, timeout=120,
        check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "SHADOWED").exists()
    assert (tmp_path / "out.csv").read_text().count("\n") == 361
