# mokd-repro: every table and figure of MOKD (CVPR 2023) from one DAG.
#
#   snakemake --cores all                                   embedded CPU scale (config/default.yaml)
#   snakemake --cores all --configfile config/test.yaml     minimal test scale
#   snakemake --profile slurm --configfile config/paper.yaml   paper scale on a SLURM cluster
#   snakemake table_s2                                       one table (and only what it needs)
#   snakemake --report report.html [--configfile ...]        the HTML report of a finished run
#
# A config file may name a `base` config it extends; without --configfile, config/default.yaml is used.
# The config is validated against workflow/schemas/config.schema.yaml before any job runs.

import os

from snakemake.utils import min_version

min_version("9.0")

# Every job's log ends with its process's `[mokd] timing` line (mokd/process_timing.py), which
# benchmarks/dag_cost.py reads; a user's own `python -m mokd` prints none.
os.environ.setdefault("MOKD_TIMING", "1")


envvars:
    "PATH",
    "MOKD_TIMING",


include: "workflow/rules/common.smk"
include: "workflow/rules/specs.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report_items.smk"
include: "workflow/rules/tables.smk"


# `snakemake --report report.html` (after a run): every table, figure and the pre-training curves.
report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets(),
        REPORT_TARGETS,
