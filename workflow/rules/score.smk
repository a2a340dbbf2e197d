rule corner_reference:
    input:
        frames=expand(rules.ingest.output.shard, shard=SHARDS),
        manifest=rules.manifest.output.manifest,
    output:
        reference="results/models/corner_reference.h5",
    log:
        "logs/corner_reference.log",
    benchmark:
        "results/benchmarks/corner_reference.tsv"
    params:
        settings=settings("device", "score", "augment"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "cnnpipe reference --settings {params.settings:q} --threads {threads} --manifest {input.manifest} "
        "--out {output.reference} {input.frames} 2> {log}"


rule score:
    input:
        features=rules.preprocess.output.features,
        frames=rules.ingest.output.shard,
        reference=rules.corner_reference.output.reference,
        manifest=rules.manifest.output.manifest,
        vae=rules.train_vae.output.model,
        cnn=rules.train_cnn.output.model if TRAIN_CNN else [],
    output:
        scores="results/scores/shard-{shard}.parquet",
    log:
        "logs/score/shard-{shard}.log",
    benchmark:
        "results/benchmarks/score/shard-{shard}.tsv"
    params:
        # train/ingest/preprocess: the model config a checkpoint must match (refused with one line otherwise)
        settings=settings("device", "score", "train", "ingest", "preprocess", "augment"),
        cnn=lambda wildcards, input: f"--cnn {input.cnn}" if TRAIN_CNN else "",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "cnnpipe score --settings {params.settings:q} --threads {threads} --shard {wildcards.shard} "
        "--features {input.features} --frames {input.frames} --reference {input.reference} --manifest {input.manifest} --vae {input.vae} {params.cnn} "
        "--out {output.scores} 2> {log}"


rule rank:
    input:
        scores=expand(rules.score.output.scores, shard=SHARDS),
        manifest=rules.manifest.output.manifest,
        vae=rules.train_vae.output.model,
        reference=rules.corner_reference.output.reference,
        frames=expand(rules.ingest.output.shard, shard=SHARDS),
        features=expand(rules.preprocess.output.features, shard=SHARDS),
        labels=[LABELS] if os.path.exists(LABELS) else [],
    output:
        anomalies="results/anomalies.csv",
        by_frame="results/anomalies_by_frame.csv",
        latent_map="results/latent_map.csv",
        gallery="results/gallery.h5",
    log:
        "logs/rank.log",
    benchmark:
        "results/benchmarks/rank.tsv"
    params:
        settings=settings("score", "report", "device", "train", "ingest", "preprocess"),
        labels=f"--labels {LABELS}" if os.path.exists(LABELS) else "",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "cnnpipe rank --settings {params.settings:q} --threads {threads} {input.scores} {params.labels} "
        "--manifest {input.manifest} --vae {input.vae} --reference {input.reference} --frames {input.frames} "
        "--features {input.features} --anomalies {output.anomalies} --by-frame {output.by_frame} "
        "--latent-map {output.latent_map} --gallery {output.gallery} 2> {log}"
