# `make test` works on a machine with only Python 3: it builds .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BROWSER_STAMP := $(VENV)/.installed-browser

.PHONY: test demo install clean bench

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

install: $(STAMP)

test: $(STAMP) $(BROWSER_STAMP)
	$(BIN)/python -m pytest -m "not benchmark"

demo: $(STAMP)
	$(BIN)/python data/build_shakespeare.py
	$(BIN)/charrnn train configs/demo.yaml
	$(BIN)/charrnn sample runs/demo/best.safetensors --prime "ROMEO:" --temperature 0.8 -n 500 --seed 1

bench: $(STAMP)
	$(BIN)/charrnn bench --cell lstm --hidden 128

clean:
	rm -rf $(VENV) build *.egg-info
