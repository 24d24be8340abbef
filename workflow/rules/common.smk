# The config, its checks and the functions the rules call: glue over mokd/workflow/ (where the logic
# lives and is unit-tested), bound to this run's config. No rules here; the tables' and figures'
# functions in specs.smk.

import os
import re
import sys
from functools import partial
from pathlib import Path

from snakemake.exceptions import WorkflowError

from mokd.config import ConfigError
from mokd.provenance import code_version
from mokd.workflow import launch_args, settings
from mokd.workflow.configs import load_workflow_config, missing_protocol_files, missing_user_datasets
from mokd.workflow.matrix import RANDOM_PREFIX, Matrix
from mokd.workflow.settings import as_json

# Jobs run `python` from the environment that runs Snakemake (the project's .venv or conda env),
# also when Snakemake was started by its path without activating that environment.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
ENV = "../../environment.yml"  # conda environment of every rule (used with --software-deployment-method conda)


# The config is made again from the --configfile files (each with its `base:` chain), the embedded default
# under them when none names a scale, and the --config overrides (mokd/workflow/configs.py): Snakemake's
# own merge of those files is not used, so that a file's `base:` is its base whatever else was loaded,
# and every file is read with the project's YAML loader (1e-3 is a number).
try:
    _cfg = load_workflow_config(workflow.config_settings.configfiles, workflow.config_settings.config)
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None
config.clear()
config.update(_cfg)

M = Matrix(config)
try:
    M.check()  # every name the matrix uses is defined
    settings.check_evaluation_settings(M)  # every protocol's and figure's settings, against its command's schema
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None

R = M.results
SCALE = M.scale
MODELS = M.models
EXPERIMENTS = M.experiments
PROTOCOLS = M.protocols
CODE_VERSION = code_version()


def one_of(names):
    """A wildcard constraint matching exactly these names (none: a pattern that matches nothing)."""
    return "|".join(re.escape(n) for n in sorted(names)) or "(?!)"


wildcard_constraints:
    exp="|".join(sorted(EXPERIMENTS) + [RANDOM_PREFIX + m for m in sorted(MODELS)]),
    seed=r"\d+",
    role="|".join(sorted(MODELS)),
    protocol="|".join(sorted(PROTOCOLS)),


# The functions the rules call, bound to this config (mokd/workflow/matrix.py, settings.py and
# launch_args.py; the tables' and figures' in specs.smk).
run_dir = M.run_dir
export_dir = M.export_dir
teacher = M.teacher
random_run = M.random_run
label = M.label
pair_label = M.pair_label
resources_of = M.resources_of
prepared_marker = M.prepared_marker
dataset_inputs = M.dataset_inputs
protocol_inputs = M.protocol_inputs
pretrain_config = partial(settings.pretrain_config, M)
protocol_settings = partial(settings.protocol_settings, M)
group_plan = partial(settings.group_plan, M)


def group_plan_of(members):
    """The `--plan` of an evaluation group's job for one teacher (rule evaluate_<group>), as a function of
    its wildcards."""
    return lambda w: group_plan(members, w.exp, [w.role], int(w.seed))


def pair_plan_of(members, exp):
    """The `--plan` of an evaluation group's job for both teachers of a pair (rule evaluate_<group>__<pair>)."""
    return lambda w: group_plan(members, exp, M.run_roles(exp), int(w.seed))


def export_dir_of(exp):
    """A run's export folder as a function of the seed wildcard."""
    return lambda w: export_dir(exp, int(w.seed))


def pair_group_rule(group, exp):
    """The name of a pair's evaluation-group rule (benchmarks/dag_cost.py counts the pairs' rules of a group in
    one row, evaluate_<group>__pairs)."""
    return f"evaluate_{group}__{exp}"


gpu_resource = launch_args.gpu_resource


# User-provided datasets (ImageNet, CIFAR, COCO at paper scale) are checked when the workflow is read, so
# that a dry run (-n) names what is missing (a warning); a real run stops on it before any job (onstart,
# workflow/rules/data.smk). Jobs that Snakemake runs in their own process (cluster jobs) do not check.
MISSING_DATASETS = (
    missing_user_datasets(config["datasets"]) + missing_protocol_files(config["protocols"])
    if workflow.is_main_process else []
)
if MISSING_DATASETS:
    print(
        "warning: datasets missing (a real run stops before any job):\n  " + "\n  ".join(MISSING_DATASETS)
        + "\nSet their paths in your config (see config/paper.yaml).",
        file=sys.stderr,
    )


# SLURM's commands, where the run submits through SLURM: the slurm profile says so at start (MOKD_EXECUTOR,
# for the dry run's warning), the executor plugin by its name at run time (onstart), and launch.pretrain.
def slurm_uses(executor):
    uses = ["the slurm executor"] if executor == "slurm" else []
    return uses + (["launch.pretrain: slurm"] if config["launch"]["pretrain"] == "slurm" else [])


_SLURM_USES = slurm_uses(os.environ.get("MOKD_EXECUTOR")) if workflow.is_main_process else []
if launch_args.missing_slurm_commands(_SLURM_USES):
    _missing = launch_args.missing_slurm_commands(_SLURM_USES)
    print(f"warning: {launch_args.slurm_message(_missing, _SLURM_USES, False)}", file=sys.stderr)


def check_slurm():
    """Fail before any job when the run submits through SLURM and SLURM's commands are not on PATH."""
    uses = slurm_uses(getattr(workflow.executor_plugin, "name", None)) if workflow.is_main_process else []
    missing = launch_args.missing_slurm_commands(uses)
    if missing:
        raise WorkflowError(launch_args.slurm_message(missing, uses, True))


def check_user_datasets():
    """Fail before any job when a user-provided dataset is missing: the error names the path."""
    if MISSING_DATASETS:
        raise WorkflowError(
            "datasets missing, nothing was started:\n  " + "\n  ".join(MISSING_DATASETS)
            + "\nSet their paths in your config (see config/paper.yaml) and run again."
        )
