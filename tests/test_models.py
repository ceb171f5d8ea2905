"""The model catalog, name/path resolution, fetch, and GGUF file checks (``models.py``,
``gguf_check.py``), plus how the llama.cpp engine reacts to a broken file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from blendin_local import models
from blendin_local.errors import ModelFileError
from blendin_local.gguf_check import check_gguf
from blendin_local.gguf_info import read_info

import tiny_gguf as tg

TINY_CUTS = (4, 16, 23, 24, 40, 1000, 20000, 100000, -1000, -1)  # negative: from the end


def message(exc: pytest.ExceptionInfo[BaseException], path: Path) -> str:
    """The error text with ``path`` replaced: it must name the file, and the keywords we look
    for must not come from the file's name (tmp dirs are named after the test)."""
    text = str(exc.value)
    assert str(path) in text, text
    assert "\n" not in text, text
    return text.replace(str(path), "<path>")


def cut_copy(src: Path, dst: Path, n: int) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[:n])
    return dst


# --- catalog -----------------------------------------------------------------------------------
def test_catalog_loads_with_the_default_pair():
    entries, default = models.load_catalog()
    assert default == {"base": "gemma3-270m", "guide": "smollm2-135m-instruct"}
    for role, name in default.items():
        e = entries[name]
        assert e.role == role and e.name == name
        assert e.file.endswith(".gguf") and e.size > 0 and len(e.sha256) == 64
        assert e.install in ("assemble", "package-file")
        assert e.path == models.models_dir() / e.file
    assert models.default_model("base") == "gemma3-270m"
    assert models.default_model("guide") == "smollm2-135m-instruct"


def test_models_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BLENDIN_MODELS_DIR", str(tmp_path))
    entries, _ = models.load_catalog()
    entry = entries["gemma3-270m"]
    assert entry.path == tmp_path / entry.file
    assert not entry.fetched
    with pytest.raises(ModelFileError, match=r"'gemma3-270m' is not fetched yet: run "
                                             r"`blendin-local models fetch gemma3-270m`"):
        models.resolve_model("gemma3-270m")


# --- resolve_model -------------------------------------------------------------------------------
def test_resolve_unknown_name_lists_the_catalog():
    with pytest.raises(ModelFileError) as info:
        models.resolve_model("no-such-model")
    msg = str(info.value)
    assert "unknown model 'no-such-model'" in msg
    assert "gemma3-270m" in msg and "smollm2-135m-instruct" in msg


@pytest.mark.parametrize("spec", ["missing.gguf", "some/dir/missing", "/nonexistent/m.GGUF"])
def test_resolve_missing_path(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFileError, match=re.escape(f"model file not found: {spec}") + "$"):
        models.resolve_model(spec)


def test_resolve_existing_path(tiny_gguf, monkeypatch):
    assert models.resolve_model(str(tiny_gguf)) == tiny_gguf
    monkeypatch.setenv("HOME", str(tiny_gguf.parent.parent))
    home_relative = "~/" + str(tiny_gguf.relative_to(tiny_gguf.parent.parent))
    assert models.resolve_model(home_relative) == tiny_gguf


# --- fetch ---------------------------------------------------------------------------------------
@pytest.mark.integration
def test_fetch_is_a_no_op_when_the_file_is_present_and_verified(monkeypatch, default_models):
    entries, _ = models.load_catalog()
    chosen = [entries[name] for name in default_models]

    def forbidden(*args, **kwargs):
        raise AssertionError("fetch() must not install or copy anything for a verified file")

    monkeypatch.setattr(models, "_ensure_package", forbidden)
    monkeypatch.setattr(models.shutil, "copyfile", forbidden)
    monkeypatch.setattr(models.importlib, "import_module", forbidden)
    monkeypatch.setattr(models.subprocess, "run", forbidden)
    for entry in chosen:
        before = entry.path.stat()
        log: list[str] = []
        assert models.fetch(entry, log=log.append) == entry.path
        after = entry.path.stat()
        assert log == []
        assert (after.st_mtime_ns, after.st_size, after.st_ino) == (
            before.st_mtime_ns, before.st_size, before.st_ino)
        assert not entry.path.with_suffix(".part").exists()


# --- check_gguf ----------------------------------------------------------------------------------
def test_check_gguf_accepts_the_tiny_model(tiny_gguf):
    check_gguf(tiny_gguf)


def test_check_gguf_rejects_a_missing_file(tmp_path):
    path = tmp_path / "missing.gguf"
    with pytest.raises(ModelFileError) as info:
        check_gguf(path)
    assert "model file not found" in message(info, path)


def test_check_gguf_rejects_a_directory(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory"):
        check_gguf(tmp_path)


def test_check_gguf_rejects_an_empty_file(tmp_path):
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError) as info:
        check_gguf(path)
    message(info, path)


@pytest.mark.parametrize("content", [b"hello, I am a text file\n" * 10, b"\x00" * 4096,
                                     b"GGU", b"PK\x03\x04 a zip file"])
def test_check_gguf_rejects_a_non_gguf_file(tmp_path, content):
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as info:
        check_gguf(path)
    assert "not a GGUF file" in message(info, path)


@pytest.mark.parametrize("cut", TINY_CUTS)
def test_check_gguf_rejects_a_truncated_file(tiny_gguf, tmp_path, cut):
    """A download cut anywhere (header, metadata, tensor table, tensor data) is caught before
    llama.cpp sees the file, with one line saying it is truncated."""
    path = cut_copy(tiny_gguf, tmp_path / "cut.gguf", cut)
    with pytest.raises(ModelFileError) as info:
        check_gguf(path)
    assert "truncated" in message(info, path)


@pytest.mark.integration
def test_check_gguf_rejects_the_first_megabyte_of_a_real_model(gemma_head):
    path = gemma_head
    with pytest.raises(ModelFileError) as info:
        check_gguf(path)
    assert "truncated" in message(info, path)


# --- the engine on a broken file: ModelFileError, not a crash --------------------------------------
LOAD_SCRIPT = """
import sys
from blendin_local.errors import ModelFileError
from blendin_local.engines.llama import LlamaEngine
try:
    LlamaEngine(sys.argv[1], n_ctx=64)
except ModelFileError as exc:
    print("ModelFileError:", exc)
    sys.exit(3)
print("loaded")
"""


def load_in_subprocess(path: Path) -> subprocess.CompletedProcess[str]:
    # A subprocess: if llama.cpp aborted or segfaulted, the test fails instead of killing pytest.
    return subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("cut", TINY_CUTS)
def test_engine_on_a_truncated_file_raises_model_file_error(tiny_gguf, tmp_path, cut):
    path = cut_copy(tiny_gguf, tmp_path / "cut.gguf", cut)
    proc = load_in_subprocess(path)
    assert proc.returncode == 3, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.startswith("ModelFileError:") and str(path) in proc.stdout
    assert proc.stderr == ""  # llama.cpp's own log lines are silenced


@pytest.mark.integration
def test_engine_on_the_first_megabyte_of_a_real_model(gemma_head):
    path = gemma_head
    proc = load_in_subprocess(path)
    assert proc.returncode == 3, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert str(path) in proc.stdout


def test_engine_on_a_non_gguf_file(tmp_path):
    from blendin_local.engines.llama import LlamaEngine

    path = tmp_path / "notes.gguf"
    path.write_text("not a model\n")
    with pytest.raises(ModelFileError) as info:
        LlamaEngine(path, n_ctx=64)
    assert "not a GGUF file" in message(info, path)


# --- read_info -----------------------------------------------------------------------------------
def test_read_info_on_the_tiny_model(tiny_gguf):
    info = read_info(tiny_gguf)
    tokens, _, _ = tg.vocabulary()
    assert info.path == tiny_gguf
    assert info.architecture == "llama"
    assert info.name == "tiny-test-llama"
    assert info.quantisation == "ALL_F32"
    assert info.context_length == 512
    assert info.vocab_size == len(tokens)
    assert (info.bos_id, info.eos_id, info.eot_id) == (tg.BOS, tg.EOS, None)
    assert info.chat_template is False
    assert info.file_size == tiny_gguf.stat().st_size
    n_embd, n_ff, n_layer, n_kv = 32, 64, 2, 16
    per_layer = 2 * n_embd + 2 * n_embd * n_embd + 2 * n_kv * n_embd + 3 * n_embd * n_ff
    assert info.parameters == 2 * len(tokens) * n_embd + n_embd + n_layer * per_layer
    d = info.to_dict()
    assert d["path"] == str(tiny_gguf)
    assert json.loads(json.dumps(d)) == d  # `models info --json` can print it


@pytest.mark.parametrize("cut", [40, 1000, -1])
def test_read_info_on_a_truncated_file(tiny_gguf, tmp_path, cut):
    path = cut_copy(tiny_gguf, tmp_path / "cut.gguf", cut)
    with pytest.raises(ModelFileError) as info:
        read_info(path)
    assert "truncated" in message(info, path)
