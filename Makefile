# The two README commands: `make main` (set up + main job) and `make test` (set up + whole test suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup main test test-fast lint compare seg-compare bench clean

$(BIN)/mmrobust: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(BIN)/mmrobust

setup: $(BIN)/mmrobust

# Train the modality-dropout baseline on the shipped UCI Multiple Features data and print the
# per-subset table (63 subsets of 6 views); outputs in outputs/main/.
main: setup
	$(BIN)/mmrobust train method=modality_dropout dataset=uci_mfeat hydra.run.dir=outputs/main

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q -n auto --dist worksteal

# The test suite without the end-to-end tests marked slow (subprocess CLI runs, kill -9, 2-process runs).
test-fast: setup
	$(BIN)/pytest -q -n auto --dist worksteal -m "not slow"

# The README comparison (modality dropout vs full vs customized, 3 seeds) and its report.
compare: setup
	$(BIN)/mmrobust train --multirun experiment=uci_compare hydra.sweep.dir=outputs/uci_compare trainer.progress=false
	$(BIN)/mmrobust report outputs/uci_compare

# The segmentation comparison of docs/segmentation.md (6 methods x 3 seeds on synthetic_rgbd) and its report.
seg-compare: setup
	OMP_NUM_THREADS=1 $(BIN)/mmrobust train --multirun experiment=seg_synthetic hydra.sweep.dir=outputs/seg_synthetic trainer.progress=false trainer.tensorboard=false
	$(BIN)/mmrobust report outputs/seg_synthetic

# Every benchmark (about an hour on 2 cores; the figures of docs/benchmarks.md), then the table of the speed
# targets of issues 16 and 17 (benchmarks/targets.py) read from their JSON results.
bench: setup
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/eval_subsets.py
	$(BIN)/python benchmarks/matmul_fraction.py
	$(BIN)/python benchmarks/seg_throughput.py
	$(BIN)/python benchmarks/eval_memory.py
	$(BIN)/python benchmarks/yardstick.py
	env -u OMP_NUM_THREADS $(BIN)/python benchmarks/around_step.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/eval_subsets_batched.py --threads 1
	$(BIN)/python benchmarks/reader_cache.py --repeats 2
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/precision.py
	$(BIN)/python benchmarks/targets.py

clean:
	rm -rf outputs multirun .pytest_cache .mypy_cache .ruff_cache
