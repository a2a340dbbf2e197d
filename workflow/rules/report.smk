rule report:
    input:
        anomalies=rules.rank.output.anomalies,
        by_frame=rules.rank.output.by_frame,
        gallery=rules.rank.output.gallery,
        latent_map=rules.rank.output.latent_map,
        manifest=rules.manifest.output.manifest,
        cnn_metrics=rules.train_cnn.output.metrics,
        vae_metrics=rules.train_vae.output.metrics,
        generated=rules.generate.output,
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
        results=lambda wildcards, input: os.path.dirname(input.anomalies),
        labels=f"--labels {LABELS}" if os.path.exists(LABELS) else "",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    shell:
        "cnnpipe report --settings {params.settings:q} --results {params.results} "
        "--frame-maps {input.frame_maps} {params.labels} --out {output.html} 2> {log}"
