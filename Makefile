# minilora: every target installs what it needs into .venv (idempotent: stamps skip finished work).
#   make lab        set up and open the course in JupyterLab
#   make test       set up and run all tests, notebooks included
#   make notebooks  re-execute every notebook in place (CPU size), refreshing committed outputs
#   make bench      ratio benchmarks against the references
#   make lint       ruff
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

.PHONY: lab test unit nbtest notebooks bench lint clean venv

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

clean:
	rm -rf .cache .pytest_cache .ruff_cache .hypothesis
