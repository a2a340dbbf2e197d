rule ingest:
    input:
        input_files,
    output:
        shard="results/frames/shard-{shard}.h5",
        manifest="results/frames/manifest-{shard}.csv",
    log:
        "logs/ingest/shard-{shard}.log",
    benchmark:
        "results/benchmarks/ingest/shard-{shard}.tsv"
    params:
        settings=settings("inputs", "ingest"),
        inputs_digest=inputs_digest,
        exclude=OWN_OUTPUTS,
        keep=DEMO_DIR,
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "cnnpipe ingest --settings {params.settings:q} --shard {wildcards.shard} "
        "--out {output.shard} --manifest {output.manifest} --exclude {params.exclude} --keep {params.keep} 2> {log}"


rule manifest:
    input:
        parts=expand(rules.ingest.output.manifest, shard=SHARDS),
    output:
        manifest="results/manifest.csv",
    log:
        "logs/manifest.log",
    benchmark:
        "results/benchmarks/manifest.tsv"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "cnnpipe manifest {input.parts} --out {output.manifest} 2> {log}"
