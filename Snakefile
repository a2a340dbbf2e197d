# cnnpipe: rank FITS/HDF5 frames by how anomalous they are.  Run: snakemake --cores all
from cnnpipe.config import validate
from cnnpipe.summary import run_summary


configfile: "config/config.yaml"


# Validate against workflow/schemas/config.schema.yaml (fills defaults) before any job runs.
config = validate(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/context.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.report.output.html,
        rules.rank.output.by_frame,
        rules.regions.output.regions,


onsuccess:
    print("\n" + run_summary(rules.report.output.html, rules.rank.output.anomalies, rules.manifest.output.manifest))
