# The workflow is workflow/Snakefile (the Snakemake workflow catalog's layout), included here so that a plain
# `snakemake --cores all` from this folder runs it, with workflow/profiles/default (found through ./profiles).
include: "workflow/Snakefile"


# Snakemake takes the default target only from this file, never from an included one: the workflow's results.
rule all:
    default_target: True
    input:
        rules.results.input,
