rule train_cnn:
    input:
        features=expand(rules.preprocess.output.features, shard=SHARDS),
        manifest=rules.manifest.output.manifest,
    output:
        model="results/models/cnn.pt",
        metrics="results/models/cnn_metrics.csv",
        summary="results/models/cnn_metrics.json",
    log:
        "logs/train_cnn.log",
    benchmark:
        "results/benchmarks/train_cnn.tsv"
    params:
        settings=train_settings("cnn"),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "cnnpipe train-cnn --settings {params.settings:q} --threads {threads} --features {input.features} "
        "--manifest {input.manifest} --out {output.model} --metrics {output.metrics} 2> {log}"


rule train_vae:
    input:
        features=expand(rules.preprocess.output.features, shard=SHARDS),
        manifest=rules.manifest.output.manifest,
    output:
        model="results/models/vae.pt",
        metrics="results/models/vae_metrics.csv",
        summary="results/models/vae_metrics.json",
    log:
        "logs/train_vae.log",
    benchmark:
        "results/benchmarks/train_vae.tsv"
    params:
        settings=train_settings("vae"),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "cnnpipe train-vae --settings {params.settings:q} --threads {threads} --features {input.features} "
        "--manifest {input.manifest} --out {output.model} --metrics {output.metrics} 2> {log}"


rule generate:
    input:
        model=rules.train_vae.output.model,
        features=expand(rules.preprocess.output.features, shard=SHARDS),
        manifest=rules.manifest.output.manifest,
    output:
        samples="results/generate/samples.png",
        interpolation="results/generate/interpolation.png",
    log:
        "logs/generate.log",
    benchmark:
        "results/benchmarks/generate.tsv"
    params:
        settings=settings("seed", "device"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "cnnpipe generate --settings {params.settings:q} --threads {threads} --model {input.model} "
        "--features {input.features} --manifest {input.manifest} --samples {output.samples} "
        "--interpolation {output.interpolation} 2> {log}"
