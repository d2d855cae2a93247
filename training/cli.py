"""``digits-train``: a thin command line over :mod:`training.api` and :mod:`training.verify`.

Parses arguments, calls one API function, prints a short summary, and maps the package's
exceptions to an exit code and one ``digits-train: error: ...`` line on stderr, as
``digits-score`` does; the exit codes are the inference package's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

from digits_onnx.inference.errors import (
    EXIT_CANTCREAT,
    EXIT_DATAERR,
    EXIT_INTERRUPTED,
    EXIT_NOINPUT,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from digits_onnx.training.errors import TrainingError

from digits_onnx import __version__

PROG = "digits-train"
RECIPES = ("default", "seed")  # mirrored from recipes.py, which --help must not import
DEFAULT_RECIPE = "default"
PROFILES = ("full", "probabilities")  # mirrored from export.py, which --help must not import
DEFAULT_PROFILE = "full"
DEFAULT_OUT = "artifacts"
DEFAULT_EXAMPLES = "examples"
INSTALL_HINT = "pip install 'digits-onnx[train]' (from a checkout: pip install -e '.[train]')"
#: Top-level modules of the train extra (and what they install as) -> the pip package to name.
TRAIN_MODULES = {
    "sklearn": "scikit-learn",
    "scipy": "scipy",
    "joblib": "joblib",
    "threadpoolctl": "threadpoolctl",
    "onnx": "onnx",
    "skl2onnx": "skl2onnx",
    "matplotlib": "matplotlib",
}

DESCRIPTION = """\
Train a logistic regression on scikit-learn's 8x8 digits and export it as a portable ONNX
model (default domain only), with its manifest, golden reference set and report figures.
"""

EPILOG = f"""\
commands:
  (none)     train and write model.onnx, model.json, reference.npz and report/ to --out
  verify     retrain by the manifest in --artifacts and compare with the committed model
  samples    write the test split as digits_test.csv and digits_test.npy to --out

The output directory is created if it is missing and its parent exists; otherwise nothing
is written. Files are staged in a temporary directory inside it and moved into place only
when the whole set is ready.

Training, verify and samples need the train extra (scikit-learn, skl2onnx, onnx,
matplotlib): pip install 'digits-onnx[train]', or from a checkout pip install -e '.[train]'.
Without it they exit {EXIT_UNAVAILABLE} (sysexits' EX_UNAVAILABLE), not {EXIT_USAGE}: the
command is right, the install lacks a part, and the same command succeeds once it is there.

exit codes:
  {EXIT_OK:<3} done; verify: every check passed
  {EXIT_SOME_FAILED:<3} verify: a check failed
  {EXIT_USAGE:<3} usage error (bad option or combination, unknown recipe)
  {EXIT_DATAERR:<3} unreadable manifest or golden set, or a model outside the contract
  {EXIT_NOINPUT:<3} verify: the artifacts are missing
  {EXIT_UNAVAILABLE:<3} the train extra is not installed (pip install 'digits-onnx[train]')
  {EXIT_CANTCREAT:<3} the output directory cannot be created or written
  {EXIT_INTERRUPTED:<3} interrupted (Ctrl-C)
"""


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``digits-train: error: ...`` line (exit 2)."""

    def error(self, message: str) -> NoReturn:
        _error(message)
        self.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The parser, separate from :func:`main` so docs and tests can inspect it."""
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    # Training's options default to None, so that main() can tell them apart from a command.
    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        default=None,
        help="default: standardized multinomial logistic regression, C by 5-fold CV; "
        f"seed: the tutorial's one-vs-rest liblinear model (default: {DEFAULT_RECIPE})",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help=f"where to write the artifact set (default: ./{DEFAULT_OUT} in the working "
        f"directory; ./{DEFAULT_OUT}/probabilities with --profile probabilities); created if "
        "missing, its parent must exist",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="full: the contract's outputs, label (ArgMax) and probabilities; probabilities: "
        "a graph of Gemm and Softmax only with the probabilities output, for runtimes without "
        f"ArgMax (take the argmax yourself) (default: {DEFAULT_PROFILE})",
    )
    parser.add_argument(
        "--no-report", action="store_true", help="skip the figures and report/README.md"
    )
    commands = parser.add_subparsers(dest="command", metavar="{verify,samples}")
    verify = commands.add_parser(
        "verify",
        help="retrain by the manifest and compare with the committed artifacts",
        description="Retrain by the manifest's recipe and check the committed model against "
        "it and against the golden set. Exit 0 if every check passes, 1 otherwise.",
    )
    verify.add_argument(
        "--artifacts",
        metavar="DIR",
        default=None,
        help=f"directory holding model.onnx, model.json and reference.npz (default: "
        f"./{DEFAULT_OUT} in the working directory if it exists, else the bundled artifacts "
        "installed with the package)",
    )
    verify.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON (checks, ok, versions) instead of the table; the same "
        "layout as digits-score check --json",
    )
    samples = commands.add_parser(
        "samples",
        help="write the test split as example input files",
        description="Write the 360 test digits as digits_test.csv (id, 64 pixels, label) and "
        "digits_test.npy (360x8x8 uint8). The directory is created if its parent exists.",
    )
    samples.add_argument(
        "--out",
        dest="samples_out",
        metavar="DIR",
        default=DEFAULT_EXAMPLES,
        help="where to write them (default: ./%(default)s in the working directory)",
    )
    return parser


def _train(args: argparse.Namespace) -> int:
    from digits_onnx.training.api import train

    recipe = args.recipe or DEFAULT_RECIPE
    profile = args.profile or DEFAULT_PROFILE
    result = train(args.out, recipe=recipe, report=not args.no_report, profile=profile)
    metrics = result.metrics
    split = result.split
    first = 30
    predicted = " ".join(str(int(v)) for v in result.test_predictions[:first])
    truth = " ".join(str(int(v)) for v in split.y_test[:first])
    c_note = "chosen by 5-fold CV on the training split" if recipe == "default" else "fixed"
    lines = [
        f"recipe         {recipe}",
        f"profile        {profile}",
        f"C              {result.hyperparameters['C']:.4g} ({c_note})",
        f"CV accuracy    {metrics['cv_mean']:.4f} ± {metrics['cv_std']:.4f}",
        f"test accuracy  {metrics['test_accuracy']:.6f} "
        f"({metrics['test_correct']} of {metrics['test_size']})",
        f"predicted      {predicted}",
        f"truth          {truth}",
    ]
    for i, path in enumerate(result.paths):
        lines.append(f"{'wrote' if i == 0 else '':<15}{path}")
    print("\n".join(lines))
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from digits_onnx.training.verify import verify

    result = verify(args.artifacts)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.table())
    return EXIT_OK if result.ok else EXIT_SOME_FAILED


def _samples(args: argparse.Namespace) -> int:
    from digits_onnx.training.api import write_samples

    for path in write_samples(args.samples_out):
        print(f"wrote {path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` and return the exit code (no ``sys.exit``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command and (args.recipe or args.out or args.profile or args.no_report):
            parser.error(
                f"--recipe, --profile, --out and --no-report apply to training, "
                f"not {args.command}"
            )
    except SystemExit as exc:  # --help and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler = {"verify": _verify, "samples": _samples}.get(args.command, _train)
    try:
        return handler(args)
    except TrainingError as exc:
        _error(str(exc))
        return exc.exit_code
    except ModuleNotFoundError as exc:
        package = TRAIN_MODULES.get((exc.name or "").partition(".")[0])
        if package is None:
            raise
        _error(f"{package} is not installed; {PROG} needs the train extra: {INSTALL_HINT}")
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())
