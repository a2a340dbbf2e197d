# cnnpipe: rank FITS/HDF5 frames by how anomalous they are.  Run: snakemake --cores all
from cnnpipe.config import validate


configfile: "config/config.yaml"


# Validate against workflow/schemas/config.schema.yaml (fills defaults) before any job runs.
config = validate(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"


rule all:
    default_target: True
    input:
        rules.manifest.output.manifest,
        expand(rules.preprocess.output.features, shard=SHARDS),
        rules.train_cnn.output.model,
        rules.train_vae.output.model,
        rules.generate.output.samples,
        rules.generate.output.interpolation,
