# Glassbox: two commands on a fresh machine.
#   make demo   virtual environment + pinned stack, demo workspace if missing, app on http://127.0.0.1:8501
#   make test   the same install plus Debian chromium, poppler-utils, pango (browser test, PDF report), then pytest
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install chromium bench

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# chromium: the browser test and kaleido's static plots; poppler-utils: the report tests read PDFs; pango: WeasyPrint
chromium:
	@{ command -v chromium && command -v pdftotext && ldconfig -p | grep -q libpangoft2; } >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium poppler-utils libpango-1.0-0 libpangoft2-1.0-0; }

demo: install
	$(BIN)/glassbox demo
	$(BIN)/glassbox serve --port $(PORT)

test: install chromium
	$(BIN)/python -m pytest

bench: install
	$(BIN)/glassbox demo
	$(BIN)/python benchmarks/integrated_gradients.py
	$(BIN)/python benchmarks/subgroup_bootstrap.py
	$(BIN)/python benchmarks/paired_comparison.py
	$(BIN)/python benchmarks/cluster_coverage.py --sims 200 --resamples 400
	$(BIN)/python benchmarks/review_concurrency.py
	$(BIN)/python benchmarks/million_cases.py
	$(BIN)/python benchmarks/precompute_scaling.py
	$(BIN)/python benchmarks/drift_windows.py
