"""What the Snakemake workflow (Snakefile, workflow/rules/*.smk) needs from Python, importable and tested."""
