"""``digits-score``: a thin command line over :func:`digits_onnx.inference.score_files`.

It parses arguments, builds the options (the library checks them), calls the API, prints one
line per file and a total on stderr, and maps the library's errors to exit codes. User
mistakes never print a traceback; a bug prints one line (exit 70), the traceback only with
``--debug``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from . import errors, stopping
from .console import say
from .contract import FEATURE_MAX, FEATURE_MIN
from .errors import DigitsError
from .formats import INPUT_FORMATS, OUTPUT_FORMATS
from .options import ON_ERROR, ScoreOptions, check_run
from .readers import ReadOptions

if TYPE_CHECKING:
    from .summary import BatchSummary

PROG = "digits-score"
USAGE = f"""\
{PROG} [options] INPUT [INPUT ...]
       {PROG} check [--model PATH] [--reference PATH] [--json]"""
EXIT_CODES = "exit codes:\n" + "\n".join(
    f"  {code:<3} {meaning}" for code, meaning in errors.SCORE_EXIT_CODES.items()
) + f"""

subcommand:
  {PROG} check   run the bundled golden set through onnxruntime; exit 1 on drift
"""


class _Version(argparse.Action):
    """--version, its number looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from digits_onnx import __version__

        if sys.stdout is not None:
            print(f"{PROG} {__version__}")
        parser.exit()


def _choices(names: tuple[str, ...]) -> str:
    return "{" + ",".join(names) + "}"


def _column(value: str) -> str | int:
    """A column given by name, or by number (from 1) when it is a whole number."""
    return int(value) if value.lstrip("-").isdigit() else value


def _columns(value: str) -> str | list[str | int]:
    """``all``, or columns separated by commas (each as :func:`_column` takes it; spaces
    around a comma are not part of a name: header names are read without them)."""
    return value if value == "all" else [_column(v.strip()) for v in value.split(",")]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, usage=USAGE,
        description="Score CSV, TSV, NPY or Parquet files of 64-feature digit rows with the "
        "bundled ONNX model. Outputs are written atomically; reruns skip inputs whose outputs "
        "are up to date.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="files, directories or globs ('-' reads stdin); an existing name is "
                   "a name, never a pattern")
    p.add_argument("--version", action=_Version)
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="FILE",
                     help="output file for a single input ('-' for stdout, the default; a "
                     "device or FIFO is written as a stream)")
    out.add_argument("--out-dir", metavar="DIR",
                     help="directory for many inputs: <stem>.pred.<format> each; created if "
                     "missing (its parent must exist)")
    out.add_argument("--output-format", metavar=_choices(OUTPUT_FORMATS),
                     help="else from -o's extension (.csv, .csv.gz, .tsv, .tsv.gz, .npy, "
                     ".parquet, .jsonl); csv when it has none")
    out.add_argument("--proba", action="store_true", help="add the probabilities p0..p9")
    out.add_argument("--summary-json", metavar="PATH",
                     help="write the run's summary as JSON ('-' for stdout), on every exit")
    out.add_argument("--metrics-file", metavar="PATH",
                     help="write the run's figures in the Prometheus text format (for "
                     "node_exporter's textfile collector; '-' for stdout), on every exit")
    inp = p.add_argument_group("input")
    inp.add_argument("-r", "--recursive", action="store_true",
                     help="descend into the subdirectories of directory inputs (not hidden "
                     "ones, not through links); --out-dir then mirrors the tree")
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
                     help="column (name, or number from 1) carried into the output as the key")
    inp.add_argument("--label-column", type=_column, metavar="COL",
                     help="column of true labels; the summary then reports accuracy")
    inp.add_argument("--keep-columns", type=_columns, metavar="COLS",
                     help="input columns carried into the output after the key: names or "
                     "numbers (from 1), comma-separated, or 'all'; named columns are not "
                     "features; one named like an output column becomes input_<name>")
    val = p.add_argument_group("validation")
    val.add_argument("--on-error", metavar=_choices(ON_ERROR), default="fail",
                     help="fail: a bad row fails its file (default); skip: score the good rows "
                     "and write the bad ones to <output stem>.rejects.csv")
    val.add_argument("--strict", action="store_true",
                     help=f"values outside {FEATURE_MIN:g}..{FEATURE_MAX:g} are errors, "
                     "not warnings")
    run = p.add_argument_group("run")
    run.add_argument("--force", action="store_true", help="rescore even up-to-date outputs")
    run.add_argument("--dry-run", action="store_true",
                     help="print what each input would get (scored to PATH, skipped as up to "
                     "date, refused and why) and exit with the code the run would start with; "
                     "writes nothing")
    run.add_argument("--threads", type=int, metavar="N",
                     help="CPU threads for onnxruntime and pyarrow (default: onnxruntime 1, "
                     "pyarrow one per core); also how many small files are scored at once "
                     "(at most 4; 1: file after file)")
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
                     help="show a progress bar (default: only when stderr is a terminal)")
    run.add_argument("--no-progress", dest="progress", action="store_false",
                     help="never show a progress bar")
    run.add_argument("--debug", action="store_true",
                     help="show Python warnings and the traceback of an internal error")
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
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return p


def _error(message: str) -> None:
    say(f"{PROG}: error: {message}")


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
    text = json.dumps(result.to_dict(), indent=2) if args.json else result.table()
    if sys.stdout is not None:
        print(text)
    return errors.EXIT_OK if result.ok else errors.EXIT_SOME_FAILED


def run_score(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    started = time.time()
    try:
        return _score(args, started)
    except DigitsError as exc:
        if args.summary_json is not None and not args.dry_run:
            _summary_after_failure(args, str(exc), exc.exit_code)
        _metrics_after_failure(args, exc.exit_code, started, str(exc))
        raise
    except KeyboardInterrupt as exc:
        stop = errors.interrupted(exc)
        if stop.summary is not None:
            _reports_after_stop(args, stop.summary, started)
            raise
        if args.summary_json is not None and not args.dry_run:
            _summary_after_failure(args, stop.message, stop.exit_code)
        _metrics_after_failure(args, stop.exit_code, started)
        raise
    except Exception as exc:
        if args.summary_json is not None and not args.dry_run:
            _summary_after_failure(args, f"internal error: {type(exc).__name__}",
                                   errors.EXIT_SOFTWARE)
        _metrics_after_failure(args, errors.EXIT_SOFTWARE, started)
        raise


def _score(args: argparse.Namespace, started: float) -> int:
    part_bytes = args.part_size << 20 if args.part_size is not None else None
    # The same check score_files makes, before the model and the scoring stack load.
    check_run(output=args.output, out_dir=args.out_dir, scheduler=args.scheduler,
              part_bytes=part_bytes, threads=args.threads, output_format=args.output_format)
    options = ScoreOptions(
        read=ReadOptions(input_format=args.input_format, delimiter=args.delimiter,
                         header=args.header, id_column=args.id_column,
                         label_column=args.label_column, keep_columns=args.keep_columns),
        output_format=args.output_format, proba=args.proba, on_error=args.on_error,
        strict=args.strict,
    )
    from . import console
    from .api import score_files, write_summary
    from .metrics import check_report_paths, write_metrics
    from .model import Model
    from .plan import Report

    check_report_paths(args.metrics_file, args.summary_json)
    _configure_threads(args.threads)
    model = Model.load(args.model, sha256=args.model_sha256, verify_hash=not args.trust_model,
                       threads=args.threads or 1)
    reports = [Report(path, flag) for path, flag in ((args.summary_json, "--summary-json"),
                                                    (args.metrics_file, "--metrics-file"))
               if path]
    if args.dry_run:
        from .dryrun import dry_run

        result = dry_run(args.inputs, output=args.output, out_dir=args.out_dir, model=model,
                         options=options, force=args.force, reports=reports,
                         recursive=args.recursive)
        if sys.stdout is not None:
            print("\n".join(console.printable(line) for line in result.lines()), flush=True)
        return result.exit_code
    summary = score_files(
        args.inputs, output=args.output, out_dir=args.out_dir, model=model, options=options,
        force=args.force, progress=args.progress,
        on_file=lambda f: console.report_file(PROG, f, args.quiet, args.verbose),
        scheduler=args.scheduler, part_bytes=part_bytes,
        reports=reports, recursive=args.recursive,
    )
    try:
        if args.verbose:
            for path, reason in summary.left_out:
                console.say(f"left out: {path} ({reason})")
        if not args.quiet and len(summary.files) != 1:
            console.report_total(summary)
        if args.summary_json:
            write_summary(args.summary_json, summary)
        if args.metrics_file:
            write_metrics(args.metrics_file, summary, started=started)
    except KeyboardInterrupt as exc:  # every file is done: the reports say so, and the stop
        stop = errors.interrupted(exc)
        summary.error, summary.error_code = stop.message, stop.exit_code
        stop.summary = summary
        raise stop from None
    return summary.exit_code


def _reports_after_stop(args: argparse.Namespace, summary: BatchSummary,
                        started: float) -> None:
    """The summary and the metrics of a run stopped while it scored: the files it did, with
    the stop's error and exit code (the run's plan checked both paths)."""
    from .api import write_summary
    from .metrics import write_metrics

    try:
        if args.summary_json:
            write_summary(args.summary_json, summary)
    except DigitsError as problem:
        _error(str(problem))
    try:
        if args.metrics_file:
            write_metrics(args.metrics_file, summary, started=started)
    except DigitsError as problem:
        _error(str(problem))


def _summary_after_failure(args: argparse.Namespace, message: str, code: int) -> None:
    """The summary of a run that stopped early (a usage error, a busy lock, an unusable
    model): written unless its path is what the run refused to overwrite."""
    from .api import write_summary
    from .model import bundled_model_path
    from .plan import report_is_safe
    from .summary import BatchSummary

    model = Path(args.model) if args.model else bundled_model_path()
    if not report_is_safe(args.summary_json, args.inputs, model, args.output, args.out_dir):
        return
    try:
        write_summary(args.summary_json, BatchSummary(files=[], error=message, error_code=code))
    except DigitsError as problem:
        if str(problem) != message:  # else it is the failure itself, reported once
            _error(str(problem))


def _metrics_after_failure(args: argparse.Namespace, code: int, started: float,
                           message: str = "") -> None:
    """The metrics of a run that stopped early, as the summary's (see
    :func:`.metrics.metrics_after_failure`)."""
    if args.metrics_file is None or args.dry_run:
        return
    from .metrics import metrics_after_failure
    from .model import bundled_model_path

    try:
        metrics_after_failure(
            args.metrics_file, code, started=started, inputs=args.inputs,
            model_path=Path(args.model) if args.model else bundled_model_path(),
            output=args.output, out_dir=args.out_dir, summary_path=args.summary_json)
    except DigitsError as problem:
        if str(problem) != message:  # else it is the failure itself, reported once
            _error(str(problem))


@contextlib.contextmanager
def _standard_streams() -> Iterator[None]:
    """Keep file descriptors 0-2 taken while the run opens files: with one closed by the
    caller (``>&-``), the next file opened would take its number, and a write meant for that
    stream would land in it. Python already set the closed stream itself to None, so the run
    still knows it was closed."""
    opened = []
    try:
        for fd in range(3):
            try:
                os.fstat(fd)
            except OSError:
                opened.append(os.open(os.devnull, os.O_RDWR))
        yield
    finally:
        for fd in opened:
            os.close(fd)


#: The signals that stop a run as Ctrl-C does: SIGTERM is how kill, timeout, docker stop
#: and systemd ask a process to end, SIGHUP what a closed terminal sends.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _on_stop_signal(signum: int, frame: object) -> None:
    """Stop the run as Ctrl-C does (once a commit under way has ended: see
    :mod:`.stopping`), and ignore the stop signals from now on.

    Ignored, not counted nor escalated: the stop is bounded (files not started are
    cancelled, small files running end committed or discarded, a large file is discarded
    once the block being read ahead is parsed), and a second exception raised into it would
    break the very cleanup that bounds it (a thread pool's shutdown, a temporary file's
    removal, the reports), leaving tracebacks, temporary files and no summary. A read of a
    stream whose producer stalls gives up once the stop is asked for (see
    :class:`.readers.streams.StoppableReader`), so that wait does not hold the stop either.
    """
    for stop_signal in STOP_SIGNALS:
        if signal.getsignal(stop_signal) is _on_stop_signal:
            signal.signal(stop_signal, signal.SIG_IGN)
    stopping.stop(errors.Interrupted(signum))


@contextlib.contextmanager
def _signals_stop_the_run(*, exiting: bool = False) -> Iterator[None]:
    """Handle :data:`STOP_SIGNALS` for the run; afterwards put their handlers back, or, in
    a process about to exit, ignore them, so that a signal cannot raise into the exit. A
    signal the process was started ignoring (``nohup``, a background job) stays ignored;
    off the main thread, where Python cannot set handlers, the run stops on Ctrl-C as
    Python raises it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping.reset()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    handled = [signum for signum, handler in previous.items() if handler != signal.SIG_IGN]
    for signum in handled:
        signal.signal(signum, _on_stop_signal)
    try:
        yield
    finally:
        stopping.reset()  # a later run in this process (the library's) starts afresh
        for signum in handled:
            handler = signal.SIG_IGN if exiting else previous[signum]
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code instead of exiting (tests call this)."""
    with _signals_stop_the_run():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    logger = logging.getLogger("digits_onnx")
    handler = logging.StreamHandler() if debug and sys.stderr is not None else None
    if handler is not None:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        with _standard_streams(), warnings.catch_warnings():
            if not debug:  # the project reports what matters in its own words
                warnings.simplefilter("ignore")
            if argv[:1] == ["check"]:
                return run_check(argv[1:])
            return run_score(argv)
    except DigitsError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt as exc:
        stop = errors.interrupted(exc)
        _error(stop.message)
        return stop.exit_code
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        return errors.EXIT_IOERR
    except Exception as exc:  # a bug: one line, the traceback only when asked for
        logger.debug("internal error", exc_info=True)
        text = str(exc).strip().splitlines()
        _error(f"internal error: {type(exc).__name__}{': ' + text[0] if text else ''}"
               f"{'' if debug else ' (--debug shows the traceback)'}")
        return errors.EXIT_SOFTWARE
    finally:
        if handler is not None:
            logger.removeHandler(handler)


def entrypoint() -> None:
    """Console-script entry point."""
    with _signals_stop_the_run(exiting=True):
        code = _main(None)
    # Everything is written, closed and reported by now. Freezing the objects still alive
    # spares the interpreter's shutdown a full garbage-collection pass over numpy's,
    # pyarrow's and Dask's module state (0.1-0.2 s of a short run, most with --scheduler).
    gc.freeze()
    sys.exit(code)
