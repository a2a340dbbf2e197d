rule preprocess:
    input:
        frames=rules.ingest.output.shard,
    output:
        features="results/features/shard-{shard}.h5",
    log:
        "logs/preprocess/shard-{shard}.log",
    benchmark:
        "results/benchmarks/preprocess/shard-{shard}.tsv"
    params:
        settings=settings("ingest", "preprocess", "device"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "cnnpipe preprocess --settings {params.settings:q} --threads {threads} "
        "--frames {input.frames} --out {output.features} 2> {log}"
