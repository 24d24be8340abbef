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
from typing import Any

from mokd.config import load_yaml
from mokd.workflow.configs import resolve_layer

CONFIGFILE_OPTIONS = ("--configfile", "--configfiles")
CONFIG_OPTIONS = ("--config", "-C")


def option_values(snakemake_args: Sequence[str], options: Sequence[str]) -> list[str]:
    """The values given to `options` in a Snakemake command line (as Snakemake reads them: every value up
    to the next option, or `--option=VALUE`)."""
    values: list[str] = []
    taking = False
    for arg in snakemake_args:
        option, eq, value = arg.partition("=")
        if option in options:
            taking = not eq
            values += [value] if eq else []
        elif arg.startswith("-"):
            taking = False
        elif taking:
            values.append(arg)
    return values


def configfiles_of(snakemake_args: Sequence[str]) -> list[str]:
    """The files given to --configfile / --configfiles in a Snakemake command line."""
    return option_values(snakemake_args, CONFIGFILE_OPTIONS)


def config_overrides_of(snakemake_args: Sequence[str]) -> dict[str, Any]:
    """The `--config KEY=VALUE ...` overrides of a Snakemake command line, parsed by Snakemake's own parser."""
    entries = option_values(snakemake_args, CONFIG_OPTIONS)
    if not entries:
        return {}
    from snakemake.cli import parse_config

    return dict(parse_config(entries))


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
