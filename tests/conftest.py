"""Shared fixtures: a tiny generated GGUF (fast engine tests) and the real default pair (loaded once)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blendin_local.pair import ModelPair

from tiny_gguf import write_tiny_gguf

REAL_N_CTX = 1024


@pytest.fixture(autouse=True, scope="session")
def no_real_hub(tmp_path_factory: pytest.TempPathFactory):
    """`make test` never touches the Hugging Face Hub nor the user's Hub cache: the endpoint is a
    closed local port (tests that fetch start their own fake Hub) and the cache a fresh folder."""
    saved = {k: os.environ.get(k) for k in ("HF_ENDPOINT", "HF_HUB_CACHE")}
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
    os.environ["HF_HUB_CACHE"] = str(tmp_path_factory.mktemp("hf-cache"))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny, deterministic Llama/SPM GGUF (~200 KB, loads in milliseconds)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture
def tiny_engine(tiny_gguf: Path):  # -> LlamaEngine
    """A fresh engine on the tiny model; ``n_batch=16`` so batched evaluation is chunked."""
    from blendin_local.engines.llama import LlamaEngine

    engine = LlamaEngine(tiny_gguf, n_ctx=256, n_batch=16, n_threads=2)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def default_models() -> dict[str, Path]:
    """Paths of the fetched default pair by catalog name. `make test` fetches them first, so a
    missing file fails under CI; a bare local pytest run skips instead."""
    from blendin_local.models import load_catalog

    entries, default = load_catalog()
    missing = [n for n in default.values() if not entries[n].fetched]
    if missing:
        message = f"models not fetched ({', '.join(missing)}): run `make models`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return {n: entries[n].path for n in default.values()}


@pytest.fixture
def gemma_head(default_models: dict[str, Path], tmp_path: Path) -> Path:
    """The first megabyte of the real Gemma GGUF: a truncated file with a valid header start."""
    path = tmp_path / "gemma-head.gguf"
    with default_models["gemma3-270m"].open("rb") as f:
        path.write_bytes(f.read(1 << 20))
    return path


@pytest.fixture(scope="session")
def real_pair(default_models: dict[str, Path]) -> ModelPair:
    """The real default pair (Gemma-3-270M base, SmolLM2-135M-Instruct guide), loaded once.

    Tests share it: each one must put the KV caches in the state it needs (``rollback(0)``...).
    """
    from blendin_local.models import load_pair

    return load_pair("gemma3-270m", "smollm2-135m-instruct", n_ctx=REAL_N_CTX)


@pytest.fixture(scope="session")
def gemma_server(default_models: dict[str, Path]):  # -> Iterator[str]
    """A real llama-cpp-python OpenAI server holding the default base; yields its URL (…/v1)."""
    from fakes.servers import llama_cpp_server

    with llama_cpp_server(default_models["gemma3-270m"], "gemma3-270m") as url:
        yield url


@pytest.fixture(scope="session")
def smollm_server(default_models: dict[str, Path]):  # -> Iterator[str]
    """A real llama-cpp-python OpenAI server holding the default guide; yields its URL (…/v1).
    Started only by the tests that ask for it."""
    from fakes.servers import llama_cpp_server

    with llama_cpp_server(default_models["smollm2-135m-instruct"], "smollm2-135m-instruct") as url:
        yield url


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    """llama.cpp's native llama-server: `make test` builds it and passes its path; a bare local
    pytest run without one skips (under CI it fails)."""
    from blendin_local.engines.remote.native_server import find_llama_server
    from blendin_local.errors import UsageError

    try:
        return find_llama_server()
    except UsageError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def native_gemma_server(default_models: dict[str, Path], llama_server_binary: Path):  # -> Iterator[str]
    """llama-server holding the default base; yields its URL (…/v1)."""
    from fakes.servers import native_server

    with native_server(default_models["gemma3-270m"], "gemma3-270m") as url:
        yield url


@pytest.fixture(scope="session")
def native_gemma_server_4(default_models: dict[str, Path], llama_server_binary: Path):  # -> Iterator[str]
    """llama-server holding the default base in 4 slots (4 requests batched at once); yields its
    URL (…/v1)."""
    from fakes.servers import native_server

    with native_server(default_models["gemma3-270m"], "gemma3-270m", parallel=4) as url:
        yield url
