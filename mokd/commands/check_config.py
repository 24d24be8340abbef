"""`python -m mokd check-config [FILE ...] [--snakemake-args ARG ...]`: read workflow config files, each
with its `base:` chain, as the workflow will, and name the file and line of the first malformed one.

Snakemake reads every `--configfile` itself before the workflow runs, and its error names neither the
file nor the line; scripts/run.sh runs this first with its Snakemake arguments. Only the YAML is
checked here: the merged config (with any `--config` overrides) is validated by the workflow.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mokd.config import load_yaml
from mokd.workflow.configs import resolve_layer

CONFIGFILE_OPTIONS = ("--configfile", "--configfiles")


def configfiles_of(snakemake_args: Sequence[str]) -> list[str]:
    """The files given to --configfile / --configfiles in a Snakemake command line (as Snakemake reads
    them: every value up to the next option, or `--configfile=FILE`)."""
    files: list[str] = []
    taking = False
    for arg in snakemake_args:
        option, eq, value = arg.partition("=")
        if option in CONFIGFILE_OPTIONS:
            taking = not eq
            files += [value] if eq else []
        elif arg.startswith("-"):
            taking = False
        elif taking:
            files.append(arg)
    return files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", help="workflow config files (YAML)")
    parser.add_argument("--snakemake-args", nargs=argparse.REMAINDER, default=[],
                        help="a Snakemake command line: its --configfile files are checked too")


def run(args: argparse.Namespace) -> int:
    files = [*args.files, *configfiles_of(args.snakemake_args)]
    for path in files:
        resolve_layer(load_yaml(path), origin=path)  # ConfigError names the file and line (exit code 2)
    if args.files:
        print(f"[mokd] config files read: {', '.join(files)}", file=sys.stderr)
    return 0
