rule report:
    input:
        anomalies=rules.rank.output.anomalies,
        by_frame=rules.rank.output.by_frame,
        gallery=rules.rank.output.gallery,
        latent_map=rules.rank.output.latent_map,
        manifest=rules.manifest.output.manifest,
        cnn_metrics=rules.train_cnn.output.metrics if TRAIN_CNN else [],
        vae_metrics=rules.train_vae.output.metrics,
        samples=rules.generate.output.samples,
        interpolation=rules.generate.output.interpolation,
        frame_maps=rules.frame_maps.output.maps,
        labels=[LABELS] if os.path.exists(LABELS) else [],
    output:
        html=report(
            "results/report/index.html",
            caption="../report/index.rst",
            category="Anomaly report",
        ),
        latent_map=report(
            "results/report/latent_map.png",
            caption="../report/latent_map.rst",
            category="Latent space",
        ),
        curves=report(
            "results/report/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
    log:
        "logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    params:
        # the page shows the whole validated config, so any config change re-renders it
        settings=settings(*config),
        benchmarks="results/benchmarks",  # every rule's benchmark file: the page's run time per step
        cnn_metrics=lambda wildcards, input: f"--cnn-metrics {input.cnn_metrics}" if TRAIN_CNN else "",
        labels=f"--labels {LABELS}" if os.path.exists(LABELS) else "",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    shell:
        "cnnpipe report --settings {params.settings:q} --anomalies {input.anomalies} --by-frame {input.by_frame} "
        "--gallery {input.gallery} --latent-map {input.latent_map} --manifest {input.manifest} "
        "{params.cnn_metrics} --vae-metrics {input.vae_metrics} --samples {input.samples} "
        "--interpolation {input.interpolation} --benchmarks {params.benchmarks} "
        "--frame-maps {input.frame_maps} {params.labels} --out {output.html} 2> {log}"
