# Tables and figures: cheap rules that read metrics files. One named target rule per table and figure.
# A table cell reads one metrics file per seed of scale.seeds; figures, the pre-training curves and Table
# S3's time and memory show the first seed's runs.
# Every table, figure and the pre-training curves are items of `snakemake --report report.html`
# (captions in workflow/report/; categories Tables, Figures, Pre-training; a subcategory per table/figure).


rule table:
    input:
        lambda w: table_inputs(w.table),
        # the runs' exports: their logs say which cells come from a teacher that ended collapsed (marked)
        lambda w: table_run_exports(w.table),
        reported="config/reported.csv",
    output:
        md=report(f"{R}/tables/table_{{table}}.md", **table_item("Markdown: ours, then paper and Δ")),
        tex=report(f"{R}/tables/table_{{table}}.tex", **table_item("LaTeX: ours")),
        tex_vs_paper=report(f"{R}/tables/table_{{table}}_vs_paper.tex", **table_item("LaTeX: paper and Δ")),
        html=report(f"{R}/tables/table_{{table}}.html", **table_item("HTML: ours, then paper and Δ")),
    params:
        spec=lambda w: as_json(table_spec(w.table)),
    log:
        f"{R}/logs/tables/table_{{table}}.log",
    conda:
        ENV
    resources:
        **resources_of("light"),
    shell:
        "python -m mokd table --spec {params.spec:q} --reported {input.reported:q}"
        " --out-md {output.md:q} --out-tex {output.tex:q} --out-tex-vs-paper {output.tex_vs_paper:q}"
        " --out-html {output.html:q} > {log:q} 2>&1"


rule cost:
    input:
        cost_inputs(),
    output:
        cost_metrics(),
    params:
        summaries=lambda w, input: [f"{d}/summary.json" for d in input],
        labels=config["tables"]["s3"]["dino"] + [config["tables"]["s3"]["mokd"]],
        settings=as_json(cost_settings()),
    log:
        f"{R}/logs/eval/cost.log",
    conda:
        ENV
    resources:
        **resources_of("light"),
    shell:
        "python -m mokd cost --settings {params.settings:q} --out {output:q}"
        " --summaries {params.summaries:q} --labels {params.labels:q} > {log:q} 2>&1"


rule figure:
    wildcard_constraints:
        fig="|".join(config["figures"]),
    input:
        lambda w: sorted({export_dir(m[0], M.first_seed) for m in figure_members(w.fig)}),
        lambda w: dataset_inputs(config["figures"][w.fig]["dataset"]),
    output:
        json=f"{R}/figures/{{fig}}.json",
        png=report(f"{R}/figures/{{fig}}.png", **figure_item("PNG")),
        pdf=report(f"{R}/figures/{{fig}}.pdf", **figure_item("PDF")),
    params:
        kind=lambda w: figure_kind(w.fig),
        checkpoints=lambda w: [teacher(m[0], m[1], M.first_seed) for m in figure_members(w.fig)],
        settings=lambda w: as_json(shown_figure_settings(w.fig)),
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
        " --out {output.json:q} --checkpoints {params.checkpoints:q} > {log:q} 2>&1"


rule pretrain_curves:
    input:
        [export_dir(e, M.first_seed) for e in pretrained_runs()],
    output:
        json=f"{R}/figures/pretrain_curves.json",
        png=report(CURVES[0], caption="../report/pretrain_curves.rst", category="Pre-training", labels={"file": "PNG"}),
        pdf=report(CURVES[1], caption="../report/pretrain_curves.rst", category="Pre-training", labels={"file": "PDF"}),
    params:
        settings=as_json(curves_settings()),
    log:
        f"{R}/logs/figures/pretrain_curves.log",
    conda:
        ENV
    resources:
        **resources_of("light"),
    shell:
        "python -m mokd curves --settings {params.settings:q} --out {output.json:q} > {log:q} 2>&1"


# One named target per registered table and figure (`snakemake table_t1`, `snakemake figure_f4`):
# mokd/workflow/targets.py, from the registries in mokd/workflow/table_specs.py and figures.py.
for _target, _files in named_targets(R).items():

    rule:
        name:
            _target
        input:
            _files,


# `snakemake verify`: every table and metrics file of this scale that no longer matches what it was built
# from (mokd/commands/verify.py), with the command that rebuilds it, on the terminal and in its log (the
# shell's pipefail keeps verify's exit status). No output: it runs whenever asked.
rule verify:
    localrule: True
    params:
        results=R,
    log:
        f"{R}/logs/verify.log",
    conda:
        ENV
    shell:
        "python -m mokd verify {params.results:q} 2>&1 | tee {log:q}"
