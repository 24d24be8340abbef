# Pre-training: one job per experiment (MOKD pair, DINO baseline, ablation or T-Head depth variant) and
# seed of scale.seeds. The declared output is the export folder (teachers + summary.json). The resume
# checkpoint and the JSON-lines log live beside it in results/<scale>/pretrain/<exp>/seed<k>/, outside the declared output, so a
# killed or timed-out job resumes instead of restarting, and a config change sets the old checkpoint
# aside instead of deleting it.
#
# How the training itself runs is config["launch"]["pretrain"] (mokd/launch.py, docs/CLUSTER.md; its
# options from the config: mokd/workflow/launch_args.py):
#   inprocess       in the Snakemake job's own process (with the slurm profile: inside the SLURM job
#                   that the executor plugin submits, with the `gpu` resource of resources.pretrain);
#   submitit-local  in a child process started through submitit (same code and numbers; its log in
#                   results/<scale>/pretrain/<exp>/seed<k>/submitit/ is also copied into the rule's log);
#   slurm           as a SLURM job submitted through submitit (one task per GPU, several nodes if
#                   asked, requeued from its checkpoint at a time limit or preemption). The rule is
#                   then a local rule: its job runs on the machine running Snakemake, only submits
#                   and waits (one light process per running pre-training), and fails with SLURM's
#                   state and the job's log path when the SLURM job fails.
# The launch options travel as the string resource `mokd_launch`, not as params: changing where a
# pre-training runs never reruns a finished one (a rerun would re-export its teachers and re-measure
# the peak memory of Table S3 in a process that did not train).

from mokd.workflow.launch_args import workflow_launch_args

PRETRAIN_ON_SLURM = config["launch"]["pretrain"] == "slurm"
PRETRAIN_RESOURCES = (
    # the Snakemake job only submits and waits on the head node; the SLURM job asks for the training's needs
    {"mem_mb": 1000, "runtime": resources_of("pretrain")["runtime"]}
    if PRETRAIN_ON_SLURM
    else {
        "mem_mb": resources_of("pretrain")["mem_mb"],
        "runtime": resources_of("pretrain")["runtime"],
        **gpu_resource(resources_of("pretrain")),
    }
)

# Every experiment's pre-training settings are validated before any job starts (naming the config key).
try:
    settings.check_pretrain_configs(M)
except ConfigError as _exc:
    raise WorkflowError(f"invalid config: {_exc}") from None


rule pretrain:
    wildcard_constraints:
        exp="|".join(sorted(EXPERIMENTS)),
    input:
        lambda w: dataset_inputs(EXPERIMENTS[w.exp].get("dataset", "pretrain")),
    output:
        directory(f"{R}/pretrain/{{exp}}/seed{{seed}}/export"),
    params:
        cfg=lambda w: as_json(pretrain_config(w.exp, int(w.seed))),
        run_dir=lambda w: run_dir(w.exp, int(w.seed)),
    log:
        f"{R}/logs/pretrain/{{exp}}/seed{{seed}}.log",
    conda:
        ENV
    localrule: PRETRAIN_ON_SLURM
    threads: 1 if PRETRAIN_ON_SLURM else resources_of("pretrain")["threads"]
    resources:
        **PRETRAIN_RESOURCES,
        mokd_launch=workflow_launch_args(config["launch"], resources_of("pretrain")),
    shell:
        "OMP_NUM_THREADS={threads} python -m mokd pretrain --settings {params.cfg:q} --out {params.run_dir:q}"
        " --export-dir {output:q} --restart-on-config-change {resources.mokd_launch} > {log:q} 2>&1"


# A model's random initialisation (the reference of the CPU scales' tables, scale.random_init_reference):
# its DINO baseline's teacher before the first step, for the same seed, exported without training.
rule random_init:
    wildcard_constraints:
        role="|".join(sorted(MODELS)),
    output:
        directory(f"{R}/pretrain/{RANDOM_PREFIX}{{role}}/seed{{seed}}/export"),
    params:
        cfg=lambda w: as_json(pretrain_config(random_run(w.role), int(w.seed))),
    log:
        f"{R}/logs/pretrain/{RANDOM_PREFIX}{{role}}/seed{{seed}}.log",
    conda:
        ENV
    resources:
        **resources_of("light"),
    shell:
        "OMP_NUM_THREADS=1 python -m mokd random-init --settings {params.cfg:q} --export-dir {output:q} > {log:q} 2>&1"
