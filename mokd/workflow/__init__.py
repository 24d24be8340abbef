"""What the Snakemake workflow (Snakefile, workflow/rules/*.smk) needs from Python, importable and tested.

configs      the config: files, `base:` chains, overrides, the schema (tables from the registry)
matrix       `Matrix`: experiments, models, protocols, labels, file paths and dataset inputs of a config
settings     each job's settings: a pre-training's config, an evaluation protocol's settings
table_specs  the registry of tables (`@table`) and the builder of each table's rows
specs        a table's full spec, its inputs and config hash; the `cost` rule's inputs and settings
figures      the registry of figures and the `figure` rule's members and settings
targets      the `all` target's files and the named targets (`table_t1`, `figure_f4`, ...)
launch_args  Snakemake's `gpu` resource and the `mokd pretrain` launch options of config["launch"]
"""
