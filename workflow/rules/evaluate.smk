# Evaluation: one metrics JSON per (experiment, seed, model, protocol), computed from the exported teacher
# (of a pre-training, or of a model's random initialisation `random_<model>`).
#
# A protocol of no evaluation group (scale.evaluation_groups) is a job of its own (rule `evaluate`). The
# protocols of a group, e.g. k-NN and the linear probe sharing the teacher's cached features, are one
# job per run: per teacher of a one-model run (rule `evaluate_<group>`), per pair for both its teachers
# (rule `evaluate_<group>__<pair>`). One process writes every metrics file of the job (saving an
# interpreter start and the imports per protocol and teacher). Asking for one of its files
# (`snakemake results/.../knn.json`) runs its job; a change to one member's settings reruns it.


rule evaluate:
    input:
        export=lambda w: export_dir(w.exp, int(w.seed)),
        data=lambda w: protocol_inputs(w.protocol),
    output:
        f"{R}/eval/{{exp}}/seed{{seed}}/{{role}}/{{protocol}}.json",
    params:
        command=lambda w: PROTOCOLS[w.protocol]["command"],
        settings=lambda w: as_json(protocol_settings(w.protocol, w.role)),
        checkpoint=lambda w: teacher(w.exp, w.role, int(w.seed)),
    log:
        f"{R}/logs/eval/{{exp}}/seed{{seed}}/{{role}}/{{protocol}}.log",
    wildcard_constraints:
        protocol=one_of(M.ungrouped_protocols()),
    conda:
        ENV
    threads: resources_of("evaluate")["threads"]
    resources:
        **gpu_resource(resources_of("evaluate")),
        mem_mb=resources_of("evaluate")["mem_mb"],
        runtime=resources_of("evaluate")["runtime"],
    shell:
        "OMP_NUM_THREADS={threads} python -m mokd {params.command} --checkpoint {params.checkpoint:q}"
        " --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


for _group, _members in M.evaluation_groups.items():

    # A run with one teacher (a DINO baseline, a random initialisation): one job per teacher.
    rule:
        name:
            f"evaluate_{_group}"
        wildcard_constraints:
            exp=one_of(M.single_model_runs()),
        input:
            export=lambda w: export_dir(w.exp, int(w.seed)),
            data=sorted({f for p in _members for f in protocol_inputs(p)}),
        output:
            [f"{R}/eval/{{exp}}/seed{{seed}}/{{role}}/{p}.json" for p in _members],
        params:
            plan=group_plan_of(_members),
        log:
            f"{R}/logs/eval/{{exp}}/seed{{seed}}/{{role}}/{_group}.log",
        conda:
            ENV
        threads: resources_of("evaluate")["threads"]
        resources:
            **gpu_resource(resources_of("evaluate")),
            mem_mb=resources_of("evaluate")["mem_mb"],
            runtime=resources_of("evaluate")["runtime"] * len(_members),
        shell:
            "OMP_NUM_THREADS={threads} python -m mokd evaluate --plan {params.plan:q} > {log:q} 2>&1"

    # A pair (its two teachers come from one pre-training, so they are always new together): one job
    # per pair and seed for both teachers. Its files name the pair's models, hence a rule per pair.
    for _exp in M.pair_experiments():

        rule:
            name:
                pair_group_rule(_group, _exp)
            input:
                export=export_dir_of(_exp),
                data=sorted({f for p in _members for f in protocol_inputs(p)}),
            output:
                [f"{R}/eval/{_exp}/seed{{seed}}/{r}/{p}.json" for r in M.run_roles(_exp) for p in _members],
            params:
                plan=pair_plan_of(_members, _exp),
            log:
                f"{R}/logs/eval/{_exp}/seed{{seed}}/{_group}.log",
            conda:
                ENV
            threads: resources_of("evaluate")["threads"]
            resources:
                **gpu_resource(resources_of("evaluate")),
                mem_mb=resources_of("evaluate")["mem_mb"],
                runtime=resources_of("evaluate")["runtime"] * len(_members) * len(M.run_roles(_exp)),
            shell:
                "OMP_NUM_THREADS={threads} python -m mokd evaluate --plan {params.plan:q} > {log:q} 2>&1"
