"""The model catalog (``catalog.py``, ``catalog.json``): schema validation where it is read, the
recommended pairs and their RAM estimate, and ``models list`` showing Hub models' fetched status."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from blendin_local import catalog, hub
from blendin_local.errors import ModelFileError

from fakes.hub import FakeHub
from test_cli_errors import assert_one_line_error, run_cli
from tiny_gguf import write_tiny_gguf


def shipped() -> dict:
    return json.loads(catalog.PACKAGE_CATALOG.read_text())


def write_catalog(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


# --- the shipped catalog ---------------------------------------------------------------------------
def test_the_catalog_ships_inside_the_package():
    assert catalog.PACKAGE_CATALOG.parent == Path(catalog.__file__).parent
    assert not (catalog.CHECKOUT_MODELS / "catalog.json").exists()
    assert catalog.catalog_path() == catalog.PACKAGE_CATALOG


def test_recommended_pairs_are_well_formed():
    cat = catalog.load()
    assert {"qwen2.5-7b+0.5b", "llama3.1-8b+3.2-1b", "gemma2-9b+2b", "qwen2.5-1.5b+0.5b"} <= set(cat.pairs)
    for pair in cat.pairs.values():
        assert (pair.base.role, pair.guide.role) == ("base", "guide"), pair.name
        assert pair.base.kv is not None and pair.guide.kv is not None, pair.name
        assert pair.ram_bytes(4096) is not None
    for e in cat.models.values():
        if e.hf:
            ref = hub.parse_ref(e.hf)
            assert ref.filename is not None and ref.filename.endswith(".gguf"), e.name
            assert e.size_exact is False  # sizes as listed on the Hub, not measured here
            assert e.sha256 is None  # never pin a sha256 nobody here has seen
    relation = {p.name: p.tokenizer_relation for p in cat.pairs.values()}
    assert relation["qwen2.5-7b+0.5b"] == "same" and relation["llama3.1-8b+qwen0.5b"] == "cross"


def test_ram_estimate_is_files_plus_f16_kv_caches():
    cat = catalog.load()
    p = cat.pairs["qwen2.5-7b+0.5b"]
    # Qwen2.5-7B: 28 layers x 4 KV heads x 128; Qwen2.5-0.5B: 24 x 2 x 64; K and V, 2 bytes each.
    kv = 2 * 2 * 4096 * (28 * 4 * 128 + 24 * 2 * 64)
    assert p.ram_bytes(4096) == p.base.size + p.guide.size + kv
    assert p.ram_bytes(8192) - p.ram_bytes(4096) == kv


# --- validation ------------------------------------------------------------------------------------
def broken(mutate) -> dict:
    data = copy.deepcopy(shipped())
    mutate(data)
    return data


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["models"]["qwen2.5-7b"].pop("hf"), "at models/qwen2.5-7b"),
    (lambda d: d["models"]["gemma3-270m"].update(size="big"), "at models/gemma3-270m"),
    (lambda d: d["models"]["gemma3-270m"].update(sha256="abc"), "at models/gemma3-270m"),
    (lambda d: d["models"]["qwen2.5-7b"].update(role="teacher"), "at models/qwen2.5-7b"),
    (lambda d: d.pop("default_pair"), "'default_pair' is a required property"),
    (lambda d: d["pairs"]["gemma2-9b+2b"].update(base="gemma2-27b"), "names unknown base 'gemma2-27b'"),
    (lambda d: d["models"]["qwen2.5-7b"].update(hf="hf:o/r:Q4_K_M"), "must name a file"),
    (lambda d: d["models"]["qwen2.5-7b"].update(hf="hf:nope"), "bad Hub reference"),
    # a file name leading out of its folder (issue 16, item 1)
    (lambda d: d["models"]["gemma3-270m"].update(file="../victim.gguf"), "at models/gemma3-270m"),
    (lambda d: d["models"]["qwen2.5-7b"].update(hf="hf:o/r/../../m.gguf"), "bad Hub reference"),
])
def test_a_malformed_catalog_is_one_line(tmp_path, monkeypatch, mutate, needle):
    path = write_catalog(tmp_path / "catalog.json", broken(mutate))
    monkeypatch.setenv("BLENDIN_CATALOG", str(path))
    with pytest.raises(Exception, match=re.escape(needle)):
        catalog.load()
    assert_one_line_error(run_cli("models", "list"), needle)


def test_an_unreadable_catalog_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "catalog.json").write_text("{ not json")
    monkeypatch.setenv("BLENDIN_CATALOG", str(tmp_path / "catalog.json"))
    with pytest.raises(ModelFileError, match="cannot read the model catalog"):
        catalog.load()
    monkeypatch.setenv("BLENDIN_CATALOG", str(tmp_path / "missing.json"))
    assert_one_line_error(run_cli("generate", "hi"), "cannot read the model catalog",
                          path=tmp_path / "missing.json")


# --- list --pairs with fetched status, through a fake Hub -------------------------------------------
def test_list_pairs_shows_fetched_status(tmp_path, monkeypatch):
    server = FakeHub().start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        data = shipped()
        for name, seed in (("qwen2.5-1.5b", 0), ("qwen2.5-0.5b-instruct", 1)):
            ref = hub.parse_ref(data["models"][name]["hf"])
            assert ref.filename is not None
            server.add(ref.repo_id, ref.filename, write_tiny_gguf(tmp_path / f"{seed}.gguf", seed=seed)
                       .read_bytes())
        monkeypatch.setenv("BLENDIN_CATALOG", str(write_catalog(tmp_path / "catalog.json", data)))
        before = run_cli("models", "list", "--pairs")
        assert before.returncode == 0, before.stderr
        assert re.search(r"qwen2\.5-1\.5b\+0\.5b .*tokenizer: same\s+RAM ~1\.6 GB", before.stdout)
        assert "laptop-sized, same family  [0/2 fetched]" in before.stdout
        fetched = run_cli("models", "fetch", "qwen2.5-1.5b+0.5b")
        assert fetched.returncode == 0, fetched.stderr
        after = run_cli("models", "list", "--pairs")
        assert "laptop-sized, same family  [fetched]" in after.stdout
        assert "the paper's Qwen setting: 7B base, 0.5B instruct guide  [1/2 fetched]" in after.stdout
        listing = run_cli("models", "list").stdout
        assert re.search(r"qwen2\.5-0\.5b-instruct +guide +~398 MB .* fetched\n", listing)
    finally:
        server.stop()
