"""``digits-score``: a thin command line over :func:`inference.score_files`.

It parses arguments, calls the API, prints one line per file and a total on stderr, and maps
the library's errors to exit codes. User mistakes never print a traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import errors
from .contract import FEATURE_MAX, FEATURE_MIN
from .errors import DigitsError
from .formats import INPUT_FORMATS, OUTPUT_FORMATS
from .options import ON_ERROR, ScoreOptions, check_run
from .readers import ReadOptions

if TYPE_CHECKING:
    from .summary import BatchSummary, FileSummary

PROG = "digits-score"
EXIT_CODES = f"""\
exit codes:
  {errors.EXIT_OK:<3} every input was scored (or was already up to date)
  {errors.EXIT_SOME_FAILED:<3} some inputs failed; the others were scored
  {errors.EXIT_USAGE:<3} usage error (bad option or combination)
  {errors.EXIT_DATAERR:<3} bad data (the message names file, line and column) or unusable model
  {errors.EXIT_NOINPUT:<3} an input does not exist
  {errors.EXIT_UNAVAILABLE:<3} --scheduler: the Dask cluster cannot be reached, or a task kept
      killing its workers
  {errors.EXIT_CANTCREAT:<3} an output cannot be created
  {errors.EXIT_IOERR:<3} I/O error while reading or writing (disk full, ...)
  {errors.EXIT_TEMPFAIL:<3} another run holds the output directory's lock; try again later

subcommand:
  {PROG} check   run the bundled golden set through onnxruntime; exit 1 on drift
"""
def _choices(names: tuple[str, ...]) -> str:
    return "{" + ",".join(names) + "}"


def _column(value: str) -> str | int:
    """A column given by name, or by 0-based index when it is a whole number."""
    return int(value) if value.lstrip("-").isdigit() else value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Score CSV, TSV, NPY or Parquet files of 64-feature digit rows with the "
        "bundled ONNX model. Outputs are written atomically; reruns skip inputs whose outputs "
        "are up to date.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="files, directories or globs; '-' reads stdin")
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="FILE",
                     help="output file for a single input ('-' for stdout, the default)")
    out.add_argument("--out-dir", metavar="DIR",
                     help="directory for many inputs: <stem>.pred.<format> each")
    out.add_argument("--output-format", metavar=_choices(OUTPUT_FORMATS),
                     help="csv (default), npy, parquet or jsonl; else from -o's extension")
    out.add_argument("--proba", action="store_true", help="add the probabilities p0..p9")
    out.add_argument("--summary-json", metavar="PATH", help="write the run's summary as JSON")
    inp = p.add_argument_group("input")
    inp.add_argument("--input-format", metavar=_choices(INPUT_FORMATS),
                     help="else from each file's extension")
    inp.add_argument("--delimiter", metavar="D",
                     help="',', tab, ';' or whitespace (detected by default)")
    header = inp.add_mutually_exclusive_group()
    header.add_argument("--header", dest="header", action="store_true", default=None,
                        help="the first line is a header (detected by default)")
    header.add_argument("--no-header", dest="header", action="store_false",
                        help="the first line is data")
    inp.add_argument("--id-column", type=_column, metavar="COL",
                     help="column (name or 0-based index) carried into the output as the key")
    inp.add_argument("--label-column", type=_column, metavar="COL",
                     help="column of true labels; the summary then reports accuracy")
    val = p.add_argument_group("validation")
    val.add_argument("--on-error", metavar=_choices(ON_ERROR), default="fail",
                     help="fail: a bad row fails its file (default); skip: score the good rows "
                     "and write the bad ones to <stem>.rejects.csv")
    val.add_argument("--strict", action="store_true",
                     help=f"values outside {FEATURE_MIN:g}..{FEATURE_MAX:g} are errors, "
                     "not warnings")
    run = p.add_argument_group("run")
    run.add_argument("--force", action="store_true", help="rescore even up-to-date outputs")
    run.add_argument("--threads", type=int, metavar="N", help="CPU threads to use")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="score on a Dask cluster: a scheduler address (tcp://host:8786) or "
                     "local:N for N local worker processes (needs the dask extra)")
    run.add_argument("--part-size", type=int, metavar="MB",
                     help="with --scheduler: cut CSV and NPY files larger than this into parts "
                     "scored in parallel (default: 64)")
    run.add_argument("--model", metavar="PATH", help="model file (default: the bundled model)")
    run.add_argument("--model-sha256", metavar="HEX",
                     help="expected sha256 of the model (default: from its manifest)")
    run.add_argument("--trust-model", action="store_true",
                     help="load the model without checking its sha256")
    run.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar (default: only on a terminal)")
    run.add_argument("--no-progress", dest="progress", action="store_false")
    talk = run.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    talk.add_argument("-v", "--verbose", action="store_true", help="print confusion matrices")
    return p


def build_check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} check",
        description="Run the golden reference set through onnxruntime and compare with the "
        "stored scikit-learn outputs (labels exact, probabilities within 1e-5).",
    )
    p.add_argument("--model", metavar="PATH", help="model file (default: the bundled model)")
    p.add_argument("--reference", metavar="PATH", help="reference .npz (default: beside model)")
    return p


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _file_line(f: FileSummary) -> str:
    if f.status == "skipped":
        return f"up to date: {f.input} -> {f.output} (--force rescores)"
    text = (f"scored {f.input} -> {f.output}: {f.rows} rows, {f.rejected} rejected, "
            f"{f.out_of_range} out of range, {f.seconds:.2f} s ({f.rows_per_second:,.0f} rows/s)")
    if f.accuracy is not None:
        text += f", accuracy {f.accuracy:.4f} ({f.correct}/{f.labelled})"
    return text


def _report_file(f: FileSummary, quiet: bool, verbose: bool) -> None:
    if f.status == "failed":
        removed = f" (removed the earlier {', '.join(f.removed)})" if f.removed else ""
        _error(f"{f.error or 'failed'}{removed}")
        return
    if f.out_of_range and f.status == "scored":
        print(f"{PROG}: warning: {f.input}: {f.out_of_range} rows have values outside the "
              f"training range {FEATURE_MIN:g}..{FEATURE_MAX:g}", file=sys.stderr)
    if quiet:
        return
    print(_file_line(f), file=sys.stderr)
    if f.rejects_file:
        print(f"  {f.rejected} rejected rows written to {f.rejects_file}", file=sys.stderr)
    if verbose and f.confusion:
        print("  confusion (rows: true label, columns: predicted):", file=sys.stderr)
        for k, row in enumerate(f.confusion):
            print(f"  {k}: " + " ".join(f"{v:4d}" for v in row), file=sys.stderr)


def _report_total(s: BatchSummary) -> None:
    d = s.to_dict()["totals"]
    text = (f"total: {d['files']} files ({d['failed']} failed, {d['skipped']} up to date), "
            f"{d['rows']} rows, {d['rejected']} rejected, {d['out_of_range']} out of range, "
            f"{s.seconds:.2f} s")
    if d["accuracy"] is not None:
        text += f", accuracy {d['accuracy']:.4f}"
    print(text, file=sys.stderr)


def _configure_threads(threads: int | None) -> None:
    if threads is not None:
        import pyarrow as pa

        pa.set_cpu_count(threads)


def run_check(argv: list[str]) -> int:
    from .check import check_model
    from .model import Model

    args = build_check_parser().parse_args(argv)
    model = Model.load(args.model)
    result = check_model(model, args.reference)
    print(result.table())
    return errors.EXIT_OK if result.ok else errors.EXIT_SOME_FAILED


def run_score(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    part_bytes = args.part_size << 20 if args.part_size is not None else None
    # The same check score_files makes, before the model and the scoring stack load.
    check_run(output=args.output, out_dir=args.out_dir, scheduler=args.scheduler,
              part_bytes=part_bytes, threads=args.threads)
    options = ScoreOptions(
        read=ReadOptions(input_format=args.input_format, delimiter=args.delimiter,
                         header=args.header, id_column=args.id_column,
                         label_column=args.label_column),
        output_format=args.output_format, proba=args.proba, on_error=args.on_error,
        strict=args.strict,
    )
    from .api import score_files
    from .fsio import write_atomic_bytes
    from .model import Model

    _configure_threads(args.threads)
    model = Model.load(args.model, sha256=args.model_sha256, verify_hash=not args.trust_model,
                       threads=args.threads or 1)
    summary = score_files(
        args.inputs, output=args.output, out_dir=args.out_dir, model=model, options=options,
        force=args.force, progress=args.progress,
        on_file=lambda f: _report_file(f, args.quiet, args.verbose),
        scheduler=args.scheduler,
        part_bytes=part_bytes,
    )
    if not args.quiet and len(summary.files) > 1:
        _report_total(summary)
    if args.summary_json:
        path = Path(args.summary_json)
        text = json.dumps(summary.to_dict(), indent=2) + "\n"
        if args.summary_json == "-":
            sys.stdout.write(text)
        else:
            write_atomic_bytes(path, text.encode())
    return summary.exit_code


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code instead of exiting (tests call this)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["check"]:
            return run_check(argv[1:])
        return run_score(argv)
    except DigitsError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return errors.EXIT_IOERR


def entrypoint() -> None:
    """Console-script entry point."""
    code = main()
    # Everything is written, closed and reported by now. Freezing the objects still alive
    # spares the interpreter's shutdown a full garbage-collection pass over numpy's,
    # pyarrow's and Dask's module state (0.1-0.2 s of a short run, most with --scheduler).
    gc.freeze()
    sys.exit(code)
