# minilora: every target installs what it needs into .venv (idempotent: stamps skip finished work).
#   make lab        set up and open the course in JupyterLab
#   make test       set up and run all tests, notebooks included
#   make notebooks  re-execute every notebook in place (CPU size), refreshing committed outputs
#   make bench      ratio benchmarks against the references
#   make lint       ruff
#   make e2e        the course in JupyterLab in a real browser (Debian's chromium), every widget moved
#                   (E2E_ARGS="--only 05,06" for some notebooks, "--open-only" for what shows before running)
#   make site       the course as static pages in site/ (links checked)
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PY      := $(BIN)/python
LAB_ARGS ?=
# Jupyter refuses to run as root without --allow-root (containers, CI images).
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
# No NVIDIA GPU: pin the CPU wheel of torch. With one, keep (or get) the user's CUDA build.
# Always: the reference versions the tests compare against (constraints-test.txt).
HAS_NVIDIA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
PIN     := $(if $(HAS_NVIDIA),,-c constraints-cpu.txt) -c constraints-test.txt
# Tests and notebooks never touch a model hub; the shared result cache lives in the repo.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MINILORA_CACHE ?= $(CURDIR)/.cache/minilora

# Browser tests drive Debian's Chromium (apt package `chromium`) with Python Playwright: no browser download.
CHROMIUM ?= /usr/bin/chromium
E2E_ARGS ?=

.PHONY: lab test unit nbtest notebooks bench lint clean venv e2e site chromium

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.notebooks: pyproject.toml constraints-cpu.txt constraints-test.txt | $(PY)
	$(PY) -m pip install -q $(PIN) -e '.[notebooks]'
	touch $@

$(VENV)/.test: pyproject.toml constraints-cpu.txt constraints-test.txt | $(PY)
	$(PY) -m pip install -q $(PIN) -e '.[notebooks,test]' ruff
	touch $@ $(VENV)/.notebooks

venv: $(VENV)/.test

lab: $(VENV)/.notebooks
	$(PY) -m ipykernel install --user --name minilora --display-name "Python (minilora)" >/dev/null
	@# the course's own notebooks: trusted, so Lab draws their saved widgets before anything runs
	$(BIN)/jupyter trust notebooks/*.ipynb >/dev/null
	$(BIN)/jupyter lab notebooks/ $(AS_ROOT) $(LAB_ARGS)

unit: $(VENV)/.test
	$(PY) -m pytest tests/ -q

nbtest: $(VENV)/.test
	CI=$${CI:-true} $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg notebooks/

test: unit nbtest

notebooks: $(VENV)/.test
	CI=true $(PY) scripts/run_notebooks.py notebooks/*.ipynb

bench: $(VENV)/.test
	$(PY) benchmarks/run.py

lint: $(VENV)/.test
	$(BIN)/ruff check minilora tests benchmarks scripts data

$(VENV)/.e2e: $(VENV)/.notebooks
	$(PY) -m pip install -q $(PIN) playwright
	touch $@

# Chromium from Debian's packages: installed here when run as root with apt-get, else say what to install.
chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "e2e: installing Debian's chromium (apt-get install -y chromium)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "e2e: no Chromium at $(CHROMIUM). Install Debian's package: sudo apt-get install -y chromium" \
	       "(or set CHROMIUM=/path/to/chromium)"; exit 1; \
	fi

e2e: $(VENV)/.e2e chromium
	CHROMIUM=$(CHROMIUM) $(PY) scripts/e2e.py $(E2E_ARGS)

site: $(VENV)/.notebooks
	$(PY) scripts/build_site.py
	$(PY) scripts/check_links.py site

clean:
	rm -rf .cache .pytest_cache .ruff_cache .hypothesis build site
