"""`python -m mokd summary [FILE ...] [--snakemake-args ARG ...]`: a few lines on a scale's finished run —
how many model runs ended with a collapsed teacher, each DINO baseline's k-NN gain over its random
initialisation, where the tables are (mokd/workflow/run_summary.py).

The config is made as the workflow makes it: the config files given, and the --configfile files and
--config overrides of a Snakemake command line (scripts/run.sh passes its own); none: the embedded
default. Run it where Snakemake ran (results paths are relative to it). Missing results are named, never
an error; a dry run (-n) of Snakemake builds nothing, so it prints nothing.
"""

from __future__ import annotations

import argparse

from mokd.commands.check_config import config_overrides_of, configfiles_of
from mokd.workflow.configs import load_workflow_config
from mokd.workflow.run_summary import summary_text

DRY_RUN = ("--dry-run", "--dryrun")


def is_dry_run(snakemake_args: list[str]) -> bool:
    """-n (alone or among short flags, `-np`), --dry-run or --dryrun."""
    return any(a in DRY_RUN or (a.startswith("-") and not a.startswith("--") and "n" in a[1:])
               for a in snakemake_args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", help="workflow config files (YAML), in Snakemake's --configfile order")
    parser.add_argument("--snakemake-args", nargs=argparse.REMAINDER, default=[],
                        help="a Snakemake command line: its --configfile files and --config overrides are used too")


def run(args: argparse.Namespace) -> int:
    if is_dry_run(args.snakemake_args):
        return 0
    files = [*args.files, *configfiles_of(args.snakemake_args)]
    config = load_workflow_config(files, config_overrides_of(args.snakemake_args) or None)
    print(summary_text(config), flush=True)
    return 0
