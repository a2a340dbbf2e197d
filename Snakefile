# cnnpipe: rank FITS/HDF5 frames by how anomalous they are.  Run: snakemake --cores all
from cnnpipe.config import validate


configfile: "config/config.yaml"


# Validate against workflow/schemas/config.schema.yaml (fills defaults) before any job runs.
config = validate(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/preprocess.smk"


rule all:
    default_target: True
    input:
        rules.manifest.output.manifest,
        expand(rules.preprocess.output.features, shard=SHARDS),
