rule demo_data:
    output:
        truth=f"{DEMO_DIR}/truth.csv",
    log:
        "logs/demo_data.log",
    benchmark:
        "results/benchmarks/demo_data.tsv"
    params:
        settings=settings("demo", "seed"),
        out=DEMO_DIR,
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "cnnpipe demo-data --settings {params.settings:q} --out {params.out} 2> {log}"
