"""``hf:`` references and fetching from the Hugging Face Hub (``hub.py``), against a fake Hub: a real
HTTP server on 127.0.0.1 (``fakes/hub.py``) that ``HF_ENDPOINT`` points at, serving tiny GGUFs.
Fetch errors are checked through the real console script: one line, non-zero exit, nothing half
written under the final name."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from blendin_local import hub, models
from blendin_local.errors import ModelFileError, UsageError

from fakes.hub import COMMIT, FakeHub
from test_cli_errors import assert_one_line_error, run_cli
from tiny_gguf import write_tiny_gguf

REPO = "tester/tiny-GGUF"
FILE = "tiny.Q4_K_M.gguf"
REF = f"hf:{REPO}/{FILE}"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("BLENDIN_CACHE_DIR", str(tmp_path / "blendin-cache"))
    for var in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_XET"):
        monkeypatch.delenv(var, raising=False)
    return cache


@pytest.fixture
def fake_hub(hub_cache: Path, monkeypatch: pytest.MonkeyPatch):
    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, bytes]:
    d = tmp_path_factory.mktemp("hub-tiny")
    return {seed: write_tiny_gguf(d / f"{seed}.gguf", seed=seed).read_bytes() for seed in (0, 1)}


def leftovers(cache: Path) -> list[str]:
    """Every file in the Hub cache except huggingface_hub's bookkeeping (locks, refs, the cache tag)."""
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")
                  if (p.is_file() or p.is_symlink()) and ".locks" not in p.parts and "refs" not in p.parts
                  and p.name != "CACHEDIR.TAG")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- references ------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [
    ("hf:Qwen/Qwen2.5-7B-GGUF/q.gguf", hub.HubRef("Qwen/Qwen2.5-7B-GGUF", "q.gguf")),
    ("hf:o/r/sub/dir/m.GGUF", hub.HubRef("o/r", "sub/dir/m.GGUF")),
    ("hf:o/r:Q4_K_M", hub.HubRef("o/r", quant="Q4_K_M")),
    ("hf:o/r@v1.0/m.gguf", hub.HubRef("o/r", "m.gguf", revision="v1.0")),
    (f"hf:o/r@{COMMIT}:q8_0", hub.HubRef("o/r", quant="q8_0", revision=COMMIT)),
])
def test_parse_ref(spec, expected):
    ref = hub.parse_ref(spec)
    assert ref == expected
    assert hub.parse_ref(str(ref)) == ref


@pytest.mark.parametrize("spec", ["hf:", "hf:o", "hf:o/r", "hf:o/r/", "hf:o/r/model.bin", "hf:o/r:",
                                  "hf:/r/m.gguf", "hf:o/r:Q4 K", "hf:o/r/../m.gguf:Q4",
                                  # a file path leading out of the repository (issue 16, item 1)
                                  "hf:o/r/../m.gguf", "hf:o/r/a/../../m.gguf", "hf:o/r//etc/m.gguf",
                                  "hf:o/r/./m.gguf", "hf:o/r/a\\..\\m.gguf"])
def test_parse_ref_rejects(spec):
    with pytest.raises(UsageError, match="bad Hub reference"):
        hub.parse_ref(spec)


def test_matching_files_is_a_whole_word_match():
    names = ["m.Q4_K_M.gguf", "m.Q4_K_S.gguf", "m-IQ4_K_M.gguf", "m-q4_k_m-00001-of-00002.gguf",
             "README.md", "Q4_K_M/m.gguf"]
    assert hub.matching_files(names, "q4_k_m") == ["Q4_K_M/m.gguf", "m-q4_k_m-00001-of-00002.gguf",
                                                    "m.Q4_K_M.gguf"]
    assert hub.matching_files(names, "Q8_0") == []


# --- fetch, then use offline -----------------------------------------------------------------------
def test_fetch_then_every_command_finds_it_offline(fake_hub, hub_cache, tiny_bytes, monkeypatch):
    fake_hub.add(REPO, FILE, tiny_bytes[0])
    proc = run_cli("models", "fetch", REF)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.split(": ", 1)[1].split(" (checksum ok)")[0])
    assert path.read_bytes() == tiny_bytes[0]
    assert path.is_relative_to(hub_cache) and path.name == FILE
    blob = path.resolve()
    assert blob.parent.name == "blobs" and blob.name == hashlib.sha256(tiny_bytes[0]).hexdigest()
    assert [r.range for r in fake_hub.gets(FILE)] == [None]

    # Offline from here: the endpoint is a closed port. Fetching again and naming the model work.
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    again = run_cli("models", "fetch", REF)
    assert again.returncode == 0 and str(path) in again.stdout, again.stderr
    assert models.resolve_model(REF) == path
    info = run_cli("models", "info", REF, "--json")
    assert info.returncode == 0 and '"vocab_size"' in info.stdout, info.stderr
    assert len(fake_hub.gets(FILE)) == 1


def test_quantisation_reference_picks_the_one_file(fake_hub, tiny_bytes, monkeypatch):
    fake_hub.add(REPO, "tiny.Q8_0.gguf", tiny_bytes[1])
    fake_hub.add(REPO, FILE, tiny_bytes[0])
    fake_hub.add(REPO, "README.md", b"# tiny\n")
    proc = run_cli("models", "fetch", f"hf:{REPO}:q4_k_m")
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.split(": ", 1)[1].split(" (")[0])
    assert path.name == FILE and path.read_bytes() == tiny_bytes[0]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert models.resolve_model(f"hf:{REPO}:Q4_K_M").read_bytes() == tiny_bytes[0]
    with pytest.raises(ModelFileError, match="not fetched yet"):
        models.resolve_model(f"hf:{REPO}:Q8_0")


def test_quantisation_reference_without_a_match(fake_hub, tiny_bytes):
    fake_hub.add(REPO, FILE, tiny_bytes[0])
    assert_one_line_error(run_cli("models", "fetch", f"hf:{REPO}:Q2_K"), "no Q2_K GGUF in", FILE)


def test_models_pair_on_two_hub_models(fake_hub, tiny_bytes):
    fake_hub.add(REPO, FILE, tiny_bytes[0])
    fake_hub.add("tester/other", "other.gguf", tiny_bytes[1])
    other = "hf:tester/other/other.gguf"
    assert run_cli("models", "fetch", REF, other).returncode == 0
    proc = run_cli("models", "pair", REF, other)
    assert proc.returncode == 0, proc.stderr
    assert "identity (same tokenizer)" in proc.stdout
    assert "guide end '</s>' → base '</s>' (end→EOS)" in proc.stdout


# --- resume ----------------------------------------------------------------------------------------
def test_a_dropped_transfer_resumes_with_a_range_request(fake_hub, tiny_bytes):
    """huggingface_hub writes in 10 MB chunks, so the file is made larger than one (a GGUF followed
    by padding: only the bytes matter here) and the connection drops after 1.2 chunks."""
    from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE

    data = tiny_bytes[0] + bytes(range(256)) * (2 * DOWNLOAD_CHUNK_SIZE // 256)
    cut = DOWNLOAD_CHUNK_SIZE * 6 // 5
    fake_hub.add(REPO, FILE, data, drops=[cut])
    proc = run_cli("models", "fetch", REF)
    assert proc.returncode == 0, proc.stderr
    first, second = (r.range for r in fake_hub.gets(FILE))
    assert first is None and second is not None
    resumed_at = int(second.removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= cut
    assert models.resolve_model(REF).read_bytes() == data


def test_an_interrupted_fetch_resumes_in_the_next_run(fake_hub, hub_cache, tiny_bytes):
    """Every try of the first run drops: one line, no file under the final name, the partial blob
    kept; the next run continues it with a Range request instead of starting over. (Writes are in
    10 MB chunks, so the file is larger than one, as in the test above.)"""
    from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE

    data = tiny_bytes[0] + bytes(range(256)) * (2 * DOWNLOAD_CHUNK_SIZE // 256)
    cut = DOWNLOAD_CHUNK_SIZE * 6 // 5
    fake_hub.add(REPO, FILE, data, drops=[cut] + [0] * 10)
    assert_one_line_error(run_cli("models", "fetch", REF), "interrupted", "run the same command again")
    assert [p for p in leftovers(hub_cache) if not p.endswith(".incomplete")] == []
    with pytest.raises(ModelFileError, match="not fetched yet"):
        models.resolve_model(REF)
    fake_hub.repos[REPO][FILE].drops.clear()
    before = len(fake_hub.gets(FILE))
    assert run_cli("models", "fetch", REF).returncode == 0
    resumed = fake_hub.gets(FILE)[before].range
    assert resumed is not None and 0 < int(resumed.removeprefix("bytes=").removesuffix("-")) <= cut
    assert models.resolve_model(REF).read_bytes() == data
    assert not any(p.endswith(".incomplete") for p in leftovers(hub_cache))


# --- checks ----------------------------------------------------------------------------------------
def test_a_checksum_mismatch_is_discarded(fake_hub, hub_cache, tiny_bytes):
    fake_hub.add(REPO, FILE, tiny_bytes[0], advertised_sha256=hashlib.sha256(b"other").hexdigest())
    assert_one_line_error(run_cli("models", "fetch", REF), "checksum mismatch", "the Hub lists",
                          "discarded")
    assert leftovers(hub_cache) == []


def test_a_pinned_sha256_is_checked_too(fake_hub, hub_cache, tiny_bytes):
    fake_hub.add(REPO, FILE, tiny_bytes[0])
    with pytest.raises(ModelFileError, match="the catalog pins"):
        hub.fetch(REF, sha256="0" * 64, progress=False, log=lambda m: None)
    assert leftovers(hub_cache) == []
    right = hashlib.sha256(tiny_bytes[0]).hexdigest()
    assert hub.fetch(REF, sha256=right, progress=False, log=lambda m: None).read_bytes() == tiny_bytes[0]


def test_a_damaged_cached_file_is_reported_not_deleted(fake_hub, tiny_bytes):
    fake_hub.add(REPO, FILE, tiny_bytes[0])
    assert run_cli("models", "fetch", REF).returncode == 0
    blob = models.resolve_model(REF).resolve()
    blob.write_bytes(tiny_bytes[1])  # the user's cache, damaged after the fetch
    assert_one_line_error(run_cli("models", "fetch", REF), "is damaged", "--force")
    assert blob.read_bytes() == tiny_bytes[1]
    assert run_cli("models", "fetch", "--force", REF).returncode == 0
    assert models.resolve_model(REF).read_bytes() == tiny_bytes[0]


# --- errors ----------------------------------------------------------------------------------------
def test_missing_repository(fake_hub):
    assert_one_line_error(run_cli("models", "fetch", "hf:tester/nope/m.gguf"),
                          "repository tester/nope not found")


def test_missing_file(fake_hub, tiny_bytes):
    fake_hub.add(REPO, FILE, tiny_bytes[0])
    assert_one_line_error(run_cli("models", "fetch", f"hf:{REPO}/missing.gguf"),
                          "missing.gguf not found in", REPO)


def test_missing_revision(fake_hub, tiny_bytes):
    fake_hub.add(REPO, FILE, tiny_bytes[0])
    assert_one_line_error(run_cli("models", "fetch", f"hf:{REPO}@v9/{FILE}"), "revision 'v9' not found")


def test_unreachable_hub(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert_one_line_error(run_cli("models", "fetch", REF), "cannot reach the Hugging Face Hub")
    assert leftovers(hub_cache) == []


def test_not_enough_disk_space(fake_hub, hub_cache, tiny_bytes):
    fake_hub.add(REPO, FILE, tiny_bytes[0], advertised_size=1 << 60)
    assert_one_line_error(run_cli("models", "fetch", REF), "not enough disk space")
    assert fake_hub.gets(FILE) == [] and leftovers(hub_cache) == []


def test_unwritable_cache(fake_hub, tmp_path, tiny_bytes, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    monkeypatch.setenv("HF_HUB_CACHE", str(blocker / "cache"))
    fake_hub.add(REPO, FILE, tiny_bytes[0])
    assert_one_line_error(run_cli("models", "fetch", REF), "cannot write the Hub cache")


def test_naming_an_unfetched_model_never_downloads(fake_hub, tiny_bytes):
    fake_hub.add(REPO, FILE, tiny_bytes[0])
    proc = run_cli("generate", "--base", REF, "--max-tokens", "4", "Hello")
    assert_one_line_error(proc, f"model {REF} is not fetched yet: run `blendin-local models fetch {REF}`")
    assert fake_hub.requests == []


# --- what a Hub answers is checked before anything is written (issue 16, items 1 and 4) ---------------
@pytest.mark.parametrize("body, needle", [
    (b"{not json", "JSONDecodeError"),
    (b'"a string"', "sent a malformed file list for"),
    (b'["a.Q4_K_M.gguf"]', "sent a malformed file list for"),
    (b'[{"type": "file"}]', "sent a malformed file list for"),
    (b'{"path": "x"}', "sent a malformed file list for"),
])
def test_a_malformed_repository_listing_is_one_line(body, needle, fake_hub, hub_cache, tiny_bytes):
    fake_hub.add(REPO, FILE, tiny_bytes[0])
    fake_hub.tree_body = body
    proc = run_cli("models", "fetch", f"hf:{REPO}:Q4_K_M")
    assert_one_line_error(proc, f"the Hub at {fake_hub.url}", needle)
    assert leftovers(hub_cache) == []


def test_a_listed_name_leading_out_of_the_repository_is_refused(fake_hub, hub_cache, tiny_bytes):
    fake_hub.add(REPO, "../../../evil.Q4_K_M.gguf", tiny_bytes[0])
    proc = run_cli("models", "fetch", f"hf:{REPO}:Q4_K_M")
    assert_one_line_error(proc, "lists '../../../evil.Q4_K_M.gguf'", "leading out of the repository")
    assert [r.method for r in fake_hub.requests] == ["GET"]  # the listing only
    assert not hub_cache.exists() or leftovers(hub_cache) == []


def test_an_etag_leading_out_of_the_cache_is_refused(fake_hub, hub_cache, tiny_bytes, tmp_path):
    """huggingface_hub names the blob after the Hub's ETag, unchecked: ``../../../victim`` wrote
    beside the cache."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    fake_hub.add(REPO, FILE, tiny_bytes[0], advertised_sha256="../../../victim")
    assert_one_line_error(run_cli("models", "fetch", REF), "the Hub's etag for", "would lead out of")
    assert victim.read_text() == "precious\n"
    assert fake_hub.gets(FILE) == [] and leftovers(hub_cache) == []
