# Two commands set everything up on a fresh machine (Python 3.11 and pip):
#   make course   creates .venv if missing, then executes every notebook into outputs/notebooks/
#   make test     creates .venv if missing, then runs ruff, the unit tests and every notebook once (the smoke course)
#   make test-fast  ruff and the unit tests only: no notebook, no browser, nothing slow (a contributor's loop)
# GPU=1 (make course GPU=1, make test GPU=1) installs requirements-gpu.txt: TensorFlow's CUDA build instead of
# tensorflow-cpu, everything else the same; PyTorch's wheel is a CUDA build either way. make test-gpu runs
# tests/test_gpu.py (every notebook in smoke on CUDA, one step of each training loop); it skips without CUDA.
# make release  the class's nbgrader assignments (instructor and student versions) in outputs/classroom/
# make book     the notebooks `make course` executed, as a static site in outputs/book/ (nothing re-run)
# Other targets: make lab, make test-browser, make prefetch [ITEMS=cifar100], make bench (bench-data, bench-torch, bench-keras,
# bench-adapt, bench-distill, bench-layers, bench-ssl, bench-meta, bench-sweep, bench-scratch,
# bench-transfer-recipe),
# make sweep GRID=... [WORKERS=N | SCHEDULER=tcp://host:8786], make sync.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= auto
GPU ?= 0
ifeq ($(GPU),1)
REQUIREMENTS := requirements-gpu.txt
STAMP := $(VENV)/.installed-gpu
OTHER_STAMP := $(VENV)/.installed
else
REQUIREMENTS := requirements.txt
STAMP := $(VENV)/.installed
OTHER_STAMP := $(VENV)/.installed-gpu
endif

.PHONY: setup teach release book course test test-fast test-gpu test-browser lab prefetch bench bench-data bench-torch bench-keras bench-adapt bench-distill bench-layers bench-ssl bench-meta bench-sweep bench-scratch bench-transfer-recipe sweep sync clean-outputs

setup: $(STAMP)

# Switching between the CPU and GPU sets removes the other TensorFlow build first (both provide `tensorflow`).
$(STAMP): requirements-base.txt $(REQUIREMENTS) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if [ -e $(OTHER_STAMP) ]; then $(BIN)/python -m pip uninstall --quiet --yes tensorflow tensorflow-cpu; \
		rm $(OTHER_STAMP); fi
	$(BIN)/python -m pip install --quiet -r $(REQUIREMENTS)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Grading and the book (requirements-teach.txt): installed by release, book and the test targets (their tests
# import nbgrader and Sphinx), not by setup or course.
teach: $(VENV)/.installed-teach

$(VENV)/.installed-teach: requirements-teach.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-teach.txt
	touch $@

release: teach
	$(BIN)/python -m helpers.classroom

book: teach
	$(BIN)/python -m helpers.book

course: setup
	$(BIN)/python -m helpers.course --profile $(PROFILE)

test: setup teach
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-fast: setup teach
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not notebook and not browser and not slow and not gpu"

test-gpu: setup
	$(BIN)/python -m pytest -p no:cacheprovider tests/test_gpu.py

test-browser: setup teach
	$(BIN)/python -m pytest -p no:cacheprovider tests/test_browser.py tests/test_book.py

lab: setup
	$(BIN)/jupyter lab notebooks/

prefetch: setup
	$(BIN)/python -m helpers.prefetch $(ITEMS)

bench: bench-data bench-scratch bench-transfer-recipe bench-torch bench-keras bench-adapt bench-distill bench-layers bench-ssl bench-meta bench-sweep

bench-data: setup
	$(BIN)/python -m benchmarks.data_loading

bench-torch: setup
	$(BIN)/python -m benchmarks.pytorch_transfer

bench-keras: setup
	$(BIN)/python -m benchmarks.keras_transfer

bench-adapt: setup
	$(BIN)/python -m benchmarks.adaptation

bench-distill: setup
	$(BIN)/python -m benchmarks.distillation

bench-layers: setup
	$(BIN)/python -m benchmarks.layers

bench-ssl: setup
	$(BIN)/python -m benchmarks.ssl

bench-meta: setup
	$(BIN)/python -m benchmarks.meta

bench-scratch: setup
	$(BIN)/python -m benchmarks.scratch_recipe

bench-transfer-recipe: setup
	$(BIN)/python -m benchmarks.transfer_recipe

bench-sweep: setup
	$(BIN)/python -m benchmarks.sweep_dask

sweep: setup
	$(BIN)/python -m helpers.sweep $(GRID) $(if $(WORKERS),--workers $(WORKERS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

sync: setup
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.py

clean-outputs:
	rm -rf outputs/
