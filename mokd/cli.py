"""`python -m mokd [--debug] <command> ...`: one subcommand per pipeline step, each in its own module.

A command module defines `add_arguments(parser)` and `run(args) -> int`; it is imported only when its
command runs, so `python -m mokd knn` does not pay for detection imports.

Expected failures end in one line, `error: ...`, and an exit code that says what kind of failure it
was (below); a traceback only with `--debug` (before or after the command, or MOKD_DEBUG=1), or for an
unexpected error (a bug, exit code 1). Which exception means which code is decided here, in `EXPECTED`,
not in each command.

    0    done
    1    unexpected error (a bug): Python's traceback
    2    bad config, setting or argument (ConfigError, TableError, ValueError; argparse's usage errors)
    3    input not found or unreadable: dataset, metrics or list file, image (UnreadableImageError)
    4    checkpoint unreadable or not matching (CheckpointError): move it aside or delete it
    5    training diverged: a loss became NaN or infinite (NonFiniteLossError, DivergedError)
    6    no space left on device while writing (DiskFullError): the previous file is kept
    7    output not writable: read-only or forbidden folder (NotWritableError)
    8    run folder in use: another process trains in it (RunLockedError, naming it: pid, host, SLURM job)
    9    `verify` found tables or metrics files that no longer match what they were built from
    130  interrupted (Ctrl-C); a pre-training waiting for its job: 128 + the signal
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path

COMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("mokd.commands.pretrain", "MOKD pair or DINO baseline pre-training"),
    "random-init": ("mokd.commands.random_init", "export a run's teachers at initialisation (the tables' reference)"),
    "prepare-data": ("mokd.commands.prepare_data", "prepare the embedded datasets and derived splits"),
    "check-data": ("mokd.commands.prepare_data", "check that a dataset is where the config says"),
    "check-config": ("mokd.commands.check_config", "read workflow config files, naming the file and line of an error"),
    "evaluate": ("mokd.commands.evaluate", "several evaluation protocols of one teacher in one process"),
    "knn": ("mokd.eval.knn", "weighted k-NN classification of teacher features"),
    "linear": ("mokd.eval.linear", "linear probe on the frozen teacher backbone"),
    "finetune": ("mokd.eval.finetune", "fine-tuning (semi-supervised subsets, CIFAR transfer)"),
    "detect": ("mokd.eval.detection", "C4 Mask R-CNN detection and instance segmentation (COCO format)"),
    "tsne": ("mokd.eval.tsne", "t-SNE figure of the features of a pair and its baselines"),
    "attn-distance": ("mokd.eval.attention_distance", "mean attention distance per layer"),
    "cost": ("mokd.eval.cost", "training time and peak memory from pre-training summaries"),
    "table": ("mokd.tables.build", "build one results table (Markdown, LaTeX and HTML)"),
    "curves": ("mokd.eval.curves", "pre-training curves: loss terms and teacher entropy of every run"),
    "verify": ("mokd.commands.verify", "report tables and metrics files that no longer match what they were built from"),
    "summary": ("mokd.commands.summary", "a finished run in a few lines: collapsed teachers, DINO gains, where the tables are"),
}


# Expected failures by exception class (module.QualName: no import of torch here) -> exit code. The
# most specific class of the exception's hierarchy that is listed decides.
EXPECTED: dict[str, int] = {
    "mokd.atomic.DiskFullError": 6,
    "mokd.atomic.NotWritableError": 7,
    "mokd.runlock.RunLockedError": 8,
    "mokd.engine.NonFiniteLossError": 5,
    "mokd.eval.classifier.DivergedError": 5,
    "mokd.checkpoint.CheckpointError": 4,
    "mokd.data.imagefolder.UnreadableImageError": 3,
    "builtins.FileNotFoundError": 3,
    "mokd.config.ConfigError": 2,
    "mokd.tables.reported.TableError": 2,
    "builtins.ValueError": 2,
}
INTERRUPTED = 130

# What each command writes, (argument, "file" | "folder"): checked writable before anything is computed.
_METRICS = (("out", "file"),)
OUTPUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "pretrain": (("out", "folder"), ("export_dir", "folder")),
    "random-init": (("export_dir", "folder"),),
    "prepare-data": (("root", "folder"),),
    "knn": _METRICS, "linear": _METRICS, "finetune": _METRICS, "detect": _METRICS, "tsne": _METRICS,
    "attn-distance": _METRICS, "cost": _METRICS, "curves": _METRICS,
    "table": (("out_md", "file"), ("out_tex", "file"), ("out_tex_vs_paper", "file"), ("out_html", "file")),
}


def one_line(exc: BaseException) -> str:
    """The exception's message on one line. An error re-raised by a DataLoader worker carries the
    worker's traceback in its message: only its last line (the original message) is kept."""
    text = str(exc).strip() or type(exc).__name__
    if "Original Traceback" in text:
        text = [ln for ln in text.splitlines() if ln.strip()][-1].strip()
        head, sep, rest = text.partition(": ")
        if sep and head.replace(".", "").replace("_", "").isalnum():  # "mokd.data.imagefolder.UnreadableImageError: ..."
            text = rest
    return " ".join(text.split())


def exit_code(exc: BaseException) -> int | None:
    """The exit code of an expected failure (EXPECTED, a full disk, a forbidden folder), None for a bug."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    for cls in type(exc).__mro__:
        code = EXPECTED.get(f"{cls.__module__}.{cls.__qualname__}")
        if code is not None:
            return code
    from mokd.atomic import as_write_error

    write_error = as_write_error(exc, getattr(exc, "filename", None) or "?")  # a plain OSError (ENOSPC, EROFS, ...)
    return None if write_error is None else exit_code(write_error)


def report(exc: BaseException, debug: bool = False) -> int:
    """Print an expected failure as `error: ...` (with its traceback when debugging); its exit code.
    An unexpected one is raised again (Python prints its traceback; exit code 1)."""
    code = exit_code(exc)
    if code is None:
        raise exc
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    message = "interrupted" if code == INTERRUPTED else one_line(exc)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def check_outputs(command: str, args: argparse.Namespace) -> None:
    """Fail before computing when a command's output folder is not writable (mokd.atomic.check_writable)."""
    from mokd.atomic import check_writable

    for dest, kind in OUTPUTS.get(command, ()):
        value = getattr(args, dest, None)
        if value:
            check_writable(Path(value) if kind == "folder" else Path(value).parent)


DEBUG_HELP = "print the traceback of every error (also MOKD_DEBUG=1)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = os.environ.get("MOKD_DEBUG", "") not in ("", "0")
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    parser = argparse.ArgumentParser(prog="python -m mokd", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help()
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    cmd_parser = argparse.ArgumentParser(prog=f"python -m mokd {argv[0]}", description=COMMANDS[argv[0]][1])
    if hasattr(module, "add_arguments_for"):
        module.add_arguments_for(argv[0], cmd_parser)
    else:
        module.add_arguments(cmd_parser)
    cmd_parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = cmd_parser.parse_args(argv[1:])
    args.command = argv[0]
    debug = args.debug = debug or args.debug
    try:
        check_outputs(argv[0], args)
        return int(module.run(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:
        return report(exc, debug)
