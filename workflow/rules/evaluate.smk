# Evaluation: one metrics JSON per (experiment, seed, model, protocol), computed from the exported teacher
# (of a pre-training, or of a model's random initialisation `random_<model>`).


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
    conda:
        ENV
    threads: resources_of("evaluate")["threads"]
    resources:
        **gpu_resource(resources_of("evaluate")),
        mem_mb=resources_of("evaluate")["mem_mb"],
        runtime=resources_of("evaluate")["runtime"],
    shell:
        "OMP_NUM_THREADS={threads} python -m mokd {params.command} --checkpoint {params.checkpoint}"
        " --settings {params.settings:q} --out {output} > {log} 2>&1"
