# Tables and figures: cheap rules that read metrics files. One named target rule per table and figure.


rule table:
    input:
        lambda w: table_inputs(w.table),
        reported="config/reported.csv",
    output:
        md=f"{R}/tables/table_{{table}}.md",
        tex=f"{R}/tables/table_{{table}}.tex",
    params:
        spec=lambda w: as_json(table_spec(w.table)),
    log:
        f"{R}/logs/tables/table_{{table}}.log",
    conda:
        ENV
    resources:
        **resources_of("light"),
    shell:
        "python -m mokd table --spec {params.spec:q} --reported {input.reported}"
        " --out-md {output.md} --out-tex {output.tex} > {log} 2>&1"


rule cost:
    input:
        cost_inputs(),
    output:
        cost_metrics(),
    params:
        summaries=lambda w, input: " ".join(f"{d}/summary.json" for d in input),
        labels=" ".join(config["tables"]["s3"]["dino"] + [config["tables"]["s3"]["mokd"]]),
        settings=as_json(cost_settings()),
    log:
        f"{R}/logs/eval/cost.log",
    conda:
        ENV
    resources:
        **resources_of("light"),
    shell:
        "python -m mokd cost --settings {params.settings:q} --out {output}"
        " --summaries {params.summaries} --labels {params.labels} > {log} 2>&1"


rule figure:
    input:
        lambda w: sorted({export_dir(m[0]) for m in figure_members(w.fig)}),
        lambda w: dataset_inputs(config["figures"][w.fig]["dataset"]),
    output:
        json=f"{R}/figures/{{fig}}.json",
        png=f"{R}/figures/{{fig}}.png",
        pdf=f"{R}/figures/{{fig}}.pdf",
    params:
        kind=lambda w: figure_kind(w.fig),
        checkpoints=lambda w: " ".join(teacher(m[0], m[1]) for m in figure_members(w.fig)),
        settings=lambda w: as_json(figure_settings(w.fig)),
    log:
        f"{R}/logs/figures/{{fig}}.log",
    conda:
        ENV
    threads: resources_of("evaluate")["threads"]
    resources:
        **gpu_resource(resources_of("evaluate")),
        mem_mb=resources_of("evaluate")["mem_mb"],
        runtime=resources_of("evaluate")["runtime"],
    shell:
        "OMP_NUM_THREADS={threads} python -m mokd {params.kind} --settings {params.settings:q}"
        " --out {output.json} --checkpoints {params.checkpoints} > {log} 2>&1"


rule table_t1:
    input:
        expand(f"{R}/tables/table_t1.{{ext}}", ext=["md", "tex"]),


rule table_t2:
    input:
        expand(f"{R}/tables/table_t2.{{ext}}", ext=["md", "tex"]),


rule table_t3:
    input:
        expand(f"{R}/tables/table_t3.{{ext}}", ext=["md", "tex"]),


rule table_t4:
    input:
        expand(f"{R}/tables/table_t4.{{ext}}", ext=["md", "tex"]),


rule table_t5:
    input:
        expand(f"{R}/tables/table_t5.{{ext}}", ext=["md", "tex"]),


rule table_t6:
    input:
        expand(f"{R}/tables/table_t6.{{ext}}", ext=["md", "tex"]),


rule table_s1:
    input:
        expand(f"{R}/tables/table_s1.{{ext}}", ext=["md", "tex"]),


rule table_s2:
    input:
        expand(f"{R}/tables/table_s2.{{ext}}", ext=["md", "tex"]),


rule table_s3:
    input:
        expand(f"{R}/tables/table_s3.{{ext}}", ext=["md", "tex"]),


rule figure_f4:
    input:
        expand(f"{R}/figures/f4_tsne.{{ext}}", ext=["png", "pdf"]),


rule figure_fs1:
    input:
        expand(f"{R}/figures/fs1_tsne.{{ext}}", ext=["png", "pdf"]),


rule figure_f5:
    input:
        expand(f"{R}/figures/f5_attention.{{ext}}", ext=["png", "pdf"]),


rule figure_fs2:
    input:
        expand(f"{R}/figures/fs2_attention.{{ext}}", ext=["png", "pdf"]),
