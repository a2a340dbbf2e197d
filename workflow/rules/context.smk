rule regions:
    input:
        anomalies=rules.rank.output.anomalies,
        manifest=rules.manifest.output.manifest,
    output:
        regions=directory("results/regions"),
    log:
        "logs/regions.log",
    benchmark:
        "results/benchmarks/regions.tsv"
    params:
        settings=settings("report", "ingest"),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "cnnpipe regions --settings {params.settings:q} --anomalies {input.anomalies} "
        "--manifest {input.manifest} --out {output.regions} 2> {log}"


rule frame_maps:
    input:
        frames=expand(rules.ingest.output.shard, shard=SHARDS),
        anomalies=rules.rank.output.anomalies,
        by_frame=rules.rank.output.by_frame,
        manifest=rules.manifest.output.manifest,
    output:
        maps="results/frame_maps.h5",
    log:
        "logs/frame_maps.log",
    benchmark:
        "results/benchmarks/frame_maps.tsv"
    params:
        settings=settings("report", "ingest"),
    resources:
        mem_mb=2000,
        runtime=15,
    shell:
        "cnnpipe frame-maps --settings {params.settings:q} --anomalies {input.anomalies} "
        "--by-frame {input.by_frame} --manifest {input.manifest} --out {output.maps} {input.frames} 2> {log}"
