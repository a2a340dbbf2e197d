# The workflow lives in workflow/Snakefile (the Snakemake workflow catalog's layout); run: snakemake --cores all
include: "workflow/Snakefile"
