# blendin-local: `make run` (install + fetch default models + demo) and `make test`.
# The virtualenv is rebuilt only when requirements.lock / pyproject.toml / CUDA change, and the
# llama-cpp-python wheel (a ~7 minute compile) is kept in a wheel cache outside the checkout.
PYTHON ?= python3
CUDA ?= 0
CUDA_ARCH ?=
VENV := .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.36
VARIANT := $(if $(filter 1,$(CUDA)),cuda$(if $(CUDA_ARCH),-sm$(CUDA_ARCH),),cpu)
# AMX kernels in llama.cpp segfault on Sapphire Rapids-class CPUs (llama.cpp #20824): compile them out
# while keeping -march=native (explicit -mno-* flags win over -march in GCC and Clang). "noamx" in the
# cache key means a wheel built before this fix is never reused.
# Only where the compiler knows the flags (x86-64 GCC >= 11 / Clang): others cannot emit AMX anyway, and
# Clang on arm64 rejects x86 flags.
NO_AMX := $(shell echo 'int x;' | $(CC) -mno-amx-tile -mno-amx-int8 -mno-amx-bf16 -Werror -x c -c -o /dev/null - 2>/dev/null && echo -mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
LLAMA_CMAKE_ARGS := $(if $(NO_AMX),-DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)',)$(if $(filter 1,$(CUDA)), -DGGML_CUDA=on $(if $(CUDA_ARCH),-DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCH),),)
# -march=native code crashes (SIGILL) on a CPU lacking the build machine's features: the cache is also
# keyed by this CPU's feature flags, so a shared home directory never hands a wheel to another CPU.
CPU_KEY := $(shell (grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -m) | sha256sum | cut -c1-8)
WHEEL_CACHE ?= $(HOME)/.cache/blendin-local/wheels/$(VARIANT)-noamx-$(CPU_KEY)-$(LLAMA_VERSION)
# The wheel-cache folder name is part of the key: a venv holding a wheel built with other flags is rebuilt.
KEY := $(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)-$(notdir $(WHEEL_CACHE))
STAMP := $(VENV)/.installed-$(KEY)
PYTEST_ARGS ?=

# llama.cpp's own llama-server (cheap logprobs: the remote-engine speed bench and tests use it), built from the
# llama.cpp tree vendored in the same pinned llama-cpp-python sdist, with the wheel's flags and cache key.
# Offline: no curl, no OpenSSL, no web-UI download (the server runs without its embedded UI).
LLAMA_SDIST_SHA256 := 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
LLAMA_SERVER := $(HOME)/.cache/blendin-local/llama-server/$(notdir $(WHEEL_CACHE))/llama-server
LLAMA_SERVER_CMAKE_ARGS := -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install models run test lint bench bench-remote clean help llama-server

help:
	@echo "make run    install, fetch the default model pair, run a demo generation"
	@echo "make test   install, fetch models, run the whole test suite"
	@echo "make lint   ruff + mypy;  make bench   speed/memory benchmark"
	@echo "make bench-remote   chunked vs per-token requests against llama-server (builds it once)"
	@echo "make llama-server   build llama.cpp's native llama-server once (cached; ~12 CPU-minutes)"
	@echo "CUDA=1      build llama-cpp-python with -DGGML_CUDA=on (CUDA_ARCH=90 builds for one GPU architecture)"

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if ! ls $(WHEEL_CACHE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) ($(VARIANT)); the first build takes ~7 minutes"; \
	  mkdir -p $(WHEEL_CACHE); \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
	    $(BIN)/python -m pip wheel --no-cache-dir --no-deps -w $(WHEEL_CACHE) llama-cpp-python==$(LLAMA_VERSION); \
	fi
	$(BIN)/python -m pip install --quiet --find-links $(WHEEL_CACHE) --only-binary llama-cpp-python -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

models: install
	$(BIN)/blendin-local models fetch

run: models
	$(BIN)/blendin-local generate --show --max-tokens 64 "What is the capital of France?"

# The suite also runs BlendIn against llama.cpp's native llama-server (a small functional set): built
# once per machine (cached like the wheel), its path handed to the tests.
test: models llama-server
	BLENDIN_LLAMA_SERVER=$(LLAMA_SERVER) $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check blendin_local tui tests
	$(BIN)/mypy blendin_local tui

bench: models
	$(BIN)/blendin-local bench

# Chunked vs per-token remote loops against llama-server holding the default base (started
# on a free loopback port for the run, stopped after) at 0, 5, 20 and 50 ms of round trip (a delay
# proxy), on shared cores and with the server on its own core(s).
BENCH_REMOTE_ARGS ?= --remote-native base --max-tokens 128 --rounds 1 --rtt 0,5,20,50 --pin-server
bench-remote: models llama-server
	$(BIN)/blendin-local bench --llama-server $(LLAMA_SERVER) $(BENCH_REMOTE_ARGS)

llama-server: $(LLAMA_SERVER)

$(LLAMA_SERVER):
	@echo "building llama-server from llama-cpp-python $(LLAMA_VERSION)'s llama.cpp ($(VARIANT))"
	rm -rf $(@D)/build && mkdir -p $(@D)/build
	$(PYTHON) -m pip download --quiet --no-deps --no-binary :all: -d $(@D)/build llama-cpp-python==$(LLAMA_VERSION)
	echo "$(LLAMA_SDIST_SHA256)  $(@D)/build/llama_cpp_python-$(LLAMA_VERSION).tar.gz" | sha256sum -c --quiet
	tar -xzf $(@D)/build/llama_cpp_python-$(LLAMA_VERSION).tar.gz -C $(@D)/build
	cmake -S $(@D)/build/llama_cpp_python-$(LLAMA_VERSION)/vendor/llama.cpp -B $(@D)/build/out \
	  $(LLAMA_SERVER_CMAKE_ARGS) $(LLAMA_CMAKE_ARGS) >$(@D)/build/cmake.log 2>&1 \
	  || { tail -30 $(@D)/build/cmake.log; exit 1; }
	cmake --build $(@D)/build/out --target llama-server -j $(JOBS) >$(@D)/build/build.log 2>&1 \
	  || { tail -30 $(@D)/build/build.log; exit 1; }
	cp $(@D)/build/out/bin/llama-server $@.tmp && mv $@.tmp $@
	rm -rf $(@D)/build

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
