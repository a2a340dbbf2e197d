# Two commands for a new user: `make demo` runs the embedded demo, `make test` runs every test.
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test test-fast bench suite lint clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0      # CPU build from local disk; before the project, or pip pulls CUDA
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	snakemake --cores $(CORES)
	@echo "Ranked list: results/anomalies.csv   Report: results/report/index.html"

test: $(BIN)/.installed
	pytest -v

test-fast: $(BIN)/.installed
	pytest -m "not slow and not slurm"

bench: $(BIN)/.installed
	python benchmarks/run_all.py

# Detection suite: cnnpipe vs baselines on labelled dev and held-out sets -> benchmarks/SUITE.md
suite: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[bench]'
	python -m benchmarks.suite.run

lint: $(BIN)/.installed
	snakemake --lint

clean:
	rm -rf results logs .snakemake
