# `make test` works on a machine with only Python 3: it builds .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BROWSER_STAMP := $(VENV)/.installed-browser
TORCH_STAMP := $(VENV)/.installed-torch
# the torch engine's tests: PyTorch's CPU build. pip takes it from its configured find-links
# (a local wheel) or index; elsewhere, CPU wheels come from PyTorch's index, e.g.
# make test TORCH_PIP="--index-url https://download.pytorch.org/whl/cpu torch==2.13.0"
TORCH_PIP ?= torch==2.13.0

.PHONY: test test-kernels demo install clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# the tests' extra: selenium drives Chromium for the `browser` tests (.ci/run installs Chromium)
$(BROWSER_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,browser]'
	touch $(BROWSER_STAMP)

# only when no torch is importable; never fails the build (the torch tests then skip, saying why)
$(TORCH_STAMP): $(STAMP)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH_PIP) \
		|| echo "make: PyTorch could not be installed; the torch tests will skip" >&2
	touch $(TORCH_STAMP)

install: $(STAMP)

test: $(STAMP) $(BROWSER_STAMP) $(TORCH_STAMP)
	@$(BIN)/python -m tests.blas_kernel
	$(BIN)/python -m pytest -m "not benchmark"

# The tests that compare numbers computed through the BLAS, run again under another OpenBLAS
# kernel than this CPU picks (tests/blas_kernel.py says which): a test tuned to one kernel's
# rounding fails here rather than on a user's machine. .ci/run calls it after `make test`.
KERNEL_TESTS := $(addprefix tests/test_,$(addsuffix .py,checkpoint_compat evaluate generate \
	blocks stepproduct cells min_cells optim parallel documents inspect cli_sample_eval train diagnose))

test-kernels: $(STAMP)
	@other=$$(env -u OPENBLAS_CORETYPE $(BIN)/python -m tests.blas_kernel --other) && \
	OPENBLAS_CORETYPE=$$other $(BIN)/python -m tests.blas_kernel && \
	OPENBLAS_CORETYPE=$$other $(BIN)/python -m pytest -m "not benchmark" $(KERNEL_TESTS)

demo: $(STAMP)
	$(BIN)/python data/build_shakespeare.py
	$(BIN)/charrnn train configs/demo.yaml
	$(BIN)/charrnn sample runs/demo/best.safetensors --prime "ROMEO:" --temperature 0.8 -n 500 --seed 1

bench: $(STAMP)
	$(BIN)/charrnn bench --standard

clean:
	rm -rf $(VENV) build *.egg-info
