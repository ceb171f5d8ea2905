# blendin-local: `make run` (install + fetch default models + demo) and `make test`.
# The virtualenv is rebuilt only when requirements.lock / pyproject.toml / CUDA change, and the
# llama-cpp-python wheel (a ~7 minute compile) is kept in a wheel cache outside the checkout.
PYTHON ?= python3
CUDA ?= 0
VENV := .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.36
VARIANT := $(if $(filter 1,$(CUDA)),cuda,cpu)
WHEEL_CACHE ?= $(HOME)/.cache/blendin-local/wheels/$(VARIANT)-$(LLAMA_VERSION)
KEY := $(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)-$(VARIANT)
STAMP := $(VENV)/.installed-$(KEY)
PYTEST_ARGS ?=

.PHONY: install models run test lint bench clean help

help:
	@echo "make run    install, fetch the default model pair, run a demo generation"
	@echo "make test   install, fetch models, run the whole test suite"
	@echo "make lint   ruff + mypy;  make bench   speed/memory benchmark"
	@echo "CUDA=1      build llama-cpp-python with -DGGML_CUDA=on"

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if ! ls $(WHEEL_CACHE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) ($(VARIANT)); the first build takes ~7 minutes"; \
	  mkdir -p $(WHEEL_CACHE); \
	  CMAKE_ARGS="$(if $(filter 1,$(CUDA)),-DGGML_CUDA=on,)" \
	    $(BIN)/python -m pip wheel --no-cache-dir --no-deps -w $(WHEEL_CACHE) llama-cpp-python==$(LLAMA_VERSION); \
	fi
	$(BIN)/python -m pip install --quiet --find-links $(WHEEL_CACHE) --only-binary llama-cpp-python -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

models: install
	$(BIN)/blendin-local models fetch

run: models
	$(BIN)/blendin-local generate --show --max-tokens 64 "What is the capital of France?"

test: models
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check blendin_local tui tests
	$(BIN)/mypy blendin_local tui

bench: models
	$(BIN)/blendin-local bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
