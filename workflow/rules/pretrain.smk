# Pre-training: one job per experiment (MOKD pair, DINO baseline, ablation or T-Head depth variant).
# The declared output is the export folder (teachers + summary.json). The resume checkpoint and the
# JSON-lines log live beside it in results/<scale>/pretrain/<exp>/, outside the declared output, so a
# killed or timed-out job resumes instead of restarting, and a config change sets the old checkpoint
# aside instead of deleting it.


rule pretrain:
    input:
        lambda w: dataset_inputs(EXPERIMENTS[w.exp].get("dataset", "pretrain")),
    output:
        directory(f"{R}/pretrain/{{exp}}/export"),
    params:
        cfg=lambda w: as_json(pretrain_config(w.exp)),
        run_dir=lambda w: f"{R}/pretrain/{w.exp}",
    log:
        f"{R}/logs/pretrain/{{exp}}.log",
    threads: resources_of("pretrain")["threads"]
    resources:
        mem_mb=resources_of("pretrain")["mem_mb"],
        runtime=resources_of("pretrain")["runtime"],
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON} -m mokd pretrain --settings {params.cfg:q} --out {params.run_dir}"
        " --export-dir {output} --restart-on-config-change > {log} 2>&1"
