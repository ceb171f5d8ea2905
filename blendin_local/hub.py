"""Models from the Hugging Face Hub: ``hf:`` references, fetching into huggingface_hub's cache, checks.

References:
    ``hf:OWNER/REPO/PATH/FILE.gguf``  one file;
    ``hf:OWNER/REPO:Q4_K_M``          the repository's one GGUF of that quantisation;
    ``hf:OWNER/REPO@REVISION/...``    either, at a branch, tag or commit (default ``main``).

Files live in huggingface_hub's cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``); the endpoint is ``$HF_ENDPOINT`` and the token the usual one (``$HF_TOKEN``
or ``hf auth login``). Only :func:`fetch` talks to the network; :func:`resolve` reads the cache alone,
so naming an ``hf:`` model at generate time never downloads anything. This is the one module that
imports huggingface_hub, and it does so lazily (commands that name local models never load it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import ModelFileError, UsageError
from .fileio import path_inside

PREFIX = "hf:"
DEFAULT_ENDPOINT = "https://huggingface.co"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REF = re.compile(
    rf"hf:(?P<repo>{_NAME}/{_NAME})(?:@(?P<rev>[A-Za-z0-9][A-Za-z0-9._-]*))?"
    r"(?:/(?P<file>[^\s:@]+\.(?i:gguf))|:(?P<quant>[A-Za-z0-9][A-Za-z0-9_.-]*))"
)
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubRef:
    """A parsed ``hf:`` reference: a file, or a quantisation to pick from the repository."""

    repo_id: str
    filename: str | None = None
    quant: str | None = None
    revision: str = "main"

    def __str__(self) -> str:
        rev = "" if self.revision == "main" else f"@{self.revision}"
        tail = f"/{self.filename}" if self.filename else f":{self.quant}"
        return f"{PREFIX}{self.repo_id}{rev}{tail}"


def is_hub_ref(spec: str) -> bool:
    return spec.startswith(PREFIX)


def parse_ref(spec: str) -> HubRef:
    m = _REF.fullmatch(spec.strip())
    if m is None:
        raise UsageError(f"bad Hub reference {spec!r}: expected hf:OWNER/REPO/FILE.gguf or "
                         "hf:OWNER/REPO:QUANT (OWNER/REPO@REVISION for a branch, tag or commit)")
    if m["file"] is not None and not is_repo_path(m["file"]):
        raise UsageError(f"bad Hub reference {spec!r}: the file must be a path inside the repository "
                         "(no '.' or '..' parts, no leading or doubled '/')")
    return HubRef(repo_id=m["repo"], filename=m["file"], quant=m["quant"], revision=m["rev"] or "main")


def is_repo_path(name: str) -> bool:
    """A file path inside a repository, as the Hub lists them: ``dir/file.gguf``, never ``../x``,
    ``/x``, ``a//b`` or ``./x`` (the cache folder is built from it)."""
    parts = name.split("/")
    return "\\" not in name and all(part not in ("", ".", "..") for part in parts)


def endpoint() -> str:
    """``$HF_ENDPOINT`` read at call time (huggingface_hub reads it once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_cache() -> Path:
    """huggingface_hub's cache folder; ``$HF_HUB_CACHE`` is read at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


# --- choosing a file by quantisation ----------------------------------------------------------------
def matching_files(names: list[str], quant: str) -> list[str]:
    """The GGUF files among ``names`` whose name carries ``quant`` as a whole word (case-insensitive):
    ``Q4_K_M`` matches ``Qwen2.5-7B.Q4_K_M.gguf`` but neither ``…Q4_K_S.gguf`` nor ``…IQ4_K_M.gguf``."""
    word = re.compile(rf"(?:^|[-._/]){re.escape(quant)}(?:$|[-._/])", re.IGNORECASE)
    return sorted(n for n in names if n.lower().endswith(".gguf") and word.search(n[: -len(".gguf")]))


def _pick(names: list[str], ref: HubRef) -> str:
    assert ref.quant is not None
    found = matching_files(names, ref.quant)
    whole = [n for n in found if not _SPLIT.search(n)]
    if len(whole) == 1:
        return whole[0]
    where = f"{ref.repo_id}@{ref.revision}"
    if not found:
        ggufs = sorted(n for n in names if n.lower().endswith(".gguf"))
        listed = ", ".join(ggufs[:12]) + (" ..." if len(ggufs) > 12 else "") if ggufs else "none"
        raise ModelFileError(f"no {ref.quant} GGUF in {where} (GGUF files: {listed})")
    if not whole:
        raise ModelFileError(f"{ref.quant} in {where} is split into several files ({found[0]} ...); "
                             "split GGUFs are not supported: pick another quantisation")
    raise ModelFileError(f"{len(whole)} GGUF files match {ref.quant} in {where} ({', '.join(whole)}): "
                         f"name one, e.g. hf:{ref.repo_id}/{whole[0]}")


def _storage(ref: HubRef) -> Path:
    """huggingface_hub's cache folder of one repository."""
    return hub_cache() / ("models--" + ref.repo_id.replace("/", "--"))


def _snapshot_dir(ref: HubRef) -> Path | None:
    storage = _storage(ref)
    commit = ref.revision
    if not _HEX40.fullmatch(commit):
        ref_file = storage / "refs" / ref.revision
        if not ref_file.is_file():
            return None
        commit = ref_file.read_text().strip()
    snap = storage / "snapshots" / commit
    return snap if snap.is_dir() else None


def _cached_file_name(ref: HubRef) -> str | None:
    if ref.filename is not None:
        return ref.filename
    snap = _snapshot_dir(ref)
    if snap is None:
        return None
    names = [p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.suffix.lower() == ".gguf"]
    return _pick(names, ref) if matching_files(names, ref.quant or "") else None


# --- the cache, offline ------------------------------------------------------------------------------
def cached_path(ref: HubRef) -> Path | None:
    """The cached file of ``ref`` (no network), or None when it was never fetched."""
    from huggingface_hub import try_to_load_from_cache

    filename = _cached_file_name(ref)
    if filename is None:
        return None
    found = try_to_load_from_cache(ref.repo_id, filename, cache_dir=str(hub_cache()), revision=ref.revision)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def resolve(spec: str) -> Path:
    """``hf:`` reference → its cached file. Never downloads: an unfetched reference is an error."""
    path = cached_path(parse_ref(spec))
    if path is None:
        raise ModelFileError(f"model {spec} is not fetched yet: run `blendin-local models fetch {spec}`")
    return path


# --- checks ------------------------------------------------------------------------------------------
def file_digest(path: Path, algorithm: str = "sha256", header: bytes = b"") -> str:
    h = hashlib.new(algorithm, header)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _mismatch(path: Path, etag: str | None, pinned: str | None) -> str | None:
    """What disagrees about ``path``: the Hub's LFS sha256 (64-hex etag), the git blob id of a small
    non-LFS file (40-hex etag), or the catalog's pinned sha256; None when everything agrees."""
    sha = file_digest(path) if (pinned or (etag and _HEX64.fullmatch(etag))) else None
    if etag and _HEX64.fullmatch(etag) and sha != etag:
        return f"sha256 {sha} but the Hub lists {etag}"
    if etag and _HEX40.fullmatch(etag):
        blob = file_digest(path, "sha1", b"blob %d\0" % path.stat().st_size)
        if blob != etag:
            return f"git blob id {blob} but the Hub lists {etag}"
    if pinned and sha != pinned:
        return f"sha256 {sha} but the catalog pins {pinned}"
    return None


def _blob_etag(path: Path) -> str | None:
    """The etag of a cached file: huggingface_hub names each blob after it (``blobs/<etag>``)."""
    blob = path.resolve()
    return blob.name if blob.parent.name == "blobs" else None


def _discard(path: Path) -> None:
    """Remove a download that failed its check: the snapshot link and the blob it points to."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path and blob.parent.name == "blobs":
        blob.unlink(missing_ok=True)


def _check_space(size: int, folder: Path, what: str) -> None:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return  # creating the folder fails below, with its own message
    free = shutil.disk_usage(existing).free
    if free < size:
        raise ModelFileError(f"not enough disk space for {what}: {size / 1e9:.2f} GB needed, "
                             f"{free / 1e9:.2f} GB free in {existing}")


# --- errors ------------------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return next(line.strip() for line in text.splitlines() if line.strip())


@contextlib.contextmanager
def _hub_errors(ref: HubRef, filename: Callable[[], str | None]) -> Iterator[None]:
    """Every failure of a Hub call → one ModelFileError line naming what to do."""
    import httpx
    from huggingface_hub import errors as hf

    where = f"{ref.repo_id}@{ref.revision}"
    try:
        yield
    except hf.GatedRepoError:
        raise ModelFileError(f"{ref.repo_id} is gated: accept its licence on the Hub, then set HF_TOKEN "
                             "(or run `hf auth login`)") from None
    except hf.RepositoryNotFoundError:
        raise ModelFileError(f"repository {ref.repo_id} not found on {endpoint()} "
                             "(private repositories need HF_TOKEN)") from None
    except hf.RevisionNotFoundError:
        raise ModelFileError(f"revision {ref.revision!r} not found in {ref.repo_id}") from None
    except hf.RemoteEntryNotFoundError:
        raise ModelFileError(f"{filename() or ref.quant} not found in {where} on {endpoint()}") from None
    except hf.OfflineModeIsEnabled:
        raise ModelFileError(f"HF_HUB_OFFLINE is set: cannot fetch {ref}") from None
    except hf.HfHubHTTPError as exc:
        raise ModelFileError(f"the Hub at {endpoint()} refused {ref}: {_first_line(exc)}") from None
    except (httpx.ConnectError, httpx.ConnectTimeout, hf.LocalEntryNotFoundError) as exc:
        raise ModelFileError(f"cannot reach the Hugging Face Hub at {endpoint()} ({_first_line(exc)}); "
                             "check the network, or HF_ENDPOINT") from None
    except httpx.TransportError as exc:
        raise ModelFileError(f"download of {ref} interrupted ({_first_line(exc)}); run the same "
                             "command again to resume it") from None
    except hf.HFValidationError as exc:
        raise UsageError(f"bad Hub reference {ref}: {_first_line(exc)}") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ModelFileError(f"disk full while downloading {ref} into {hub_cache()}") from None
        if exc.errno is None:  # huggingface_hub's size check after a short transfer
            raise ModelFileError(f"download of {ref} incomplete ({_first_line(exc)}); nothing was kept: "
                                 "run the same command again") from None
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(hub_cache()) else ""
        raise ModelFileError(f"cannot write the Hub cache {hub_cache()}: {exc.strerror}{where}") from None


# --- what the Hub answers ---------------------------------------------------------------------------
def _list_files(ref: HubRef) -> list[str]:
    """The repository's file paths; a listing that is not JSON, or not a list of files, is one
    ModelFileError line (the Hub's HTTP errors pass on to :func:`_hub_errors`)."""
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf

    try:
        names = HfApi(endpoint=endpoint()).list_repo_files(ref.repo_id, revision=ref.revision)
    except (hf.HfHubHTTPError, hf.HFValidationError):
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelFileError(f"the Hub at {endpoint()} sent a malformed file list for {ref.repo_id} "
                             f"({type(exc).__name__}: {_first_line(exc)})") from None
    if not all(isinstance(n, str) for n in names):
        raise ModelFileError(f"the Hub at {endpoint()} sent a malformed file list for {ref.repo_id}")
    return names


def _pick_listed(names: list[str], ref: HubRef) -> str:
    """:func:`_pick` on a listing from the Hub, whose chosen name must be a path inside the
    repository (the cache path is built from it)."""
    name = _pick(names, ref)
    if not is_repo_path(name):
        raise ModelFileError(f"the Hub at {endpoint()} lists {name!r} in {ref.repo_id}: a file name "
                             "leading out of the repository is refused")
    return name


def _check_cache_paths(ref: HubRef, name: str, commit: str | None, etag: str | None) -> None:
    """huggingface_hub files a download under ``snapshots/<commit>/<name>`` and ``blobs/<etag>``,
    all three taken from the Hub's answers: each must stay in the repository's cache folder."""
    if not commit or not etag:
        raise ModelFileError(f"the Hub at {endpoint()} sent no {'commit id' if not commit else 'etag'} "
                             f"for {ref.repo_id}/{name}")
    storage = _storage(ref)
    path_inside(storage / "snapshots", f"{commit}/{name}", f"the Hub's commit id and file name for {ref}:")
    path_inside(storage / "blobs", etag, f"the Hub's etag for {ref}:")


# --- fetch -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _progress(show: bool) -> Iterator[None]:
    """huggingface_hub's progress bar and its retry warnings, or neither (when stderr is no terminal,
    a failed fetch then prints exactly one line)."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
        logging,
    )

    was_disabled, level = are_progress_bars_disabled(), logging.get_verbosity()
    if not show:
        disable_progress_bars()
        logging.set_verbosity_error()
    try:
        yield
    finally:
        if not show and not was_disabled:
            enable_progress_bars()
        logging.set_verbosity(level)


RESUME_TRIES = 5


def _download_resuming(download: Callable[[], Path]) -> Path:
    """Run ``download`` again (up to RESUME_TRIES times) when the transfer drops: huggingface_hub
    keeps the partial ``<etag>.incomplete`` blob and continues it with an HTTP Range request, within
    this call and in the next run alike. Connection refusals are not retried (the Hub is down)."""
    import httpx

    for attempt in range(RESUME_TRIES):
        try:
            return download()
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise
        except httpx.TransportError:
            if attempt == RESUME_TRIES - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


def fetch(spec: str | HubRef, *, sha256: str | None = None, force: bool = False,
          progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Download ``spec`` into the Hub cache (progress bar, resumes a dropped transfer) and check it.

    A file already cached is checked, not downloaded (no network), unless ``force``. The check is
    the Hub's LFS sha256 (or git blob id) and, when given, the pinned ``sha256``; a fresh download
    that fails it is removed, so nothing is left under the final name. A transfer that drops is
    resumed (HTTP Range) up to 5 times within this call; one that still fails keeps its partial
    ``.incomplete`` blob (never a file under the final name), which the next run resumes.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    ref = parse_ref(spec) if isinstance(spec, str) else spec
    chosen: list[str] = []
    with _progress(progress), _hub_errors(ref, lambda: chosen[0] if chosen else ref.filename):
        cached = None if force else cached_path(ref)
        if cached is not None:
            problem = _mismatch(cached, _blob_etag(cached), sha256)
            if problem:
                raise ModelFileError(f"the cached {ref} ({cached}) is damaged: {problem}; "
                                     f"`blendin-local models fetch --force {ref}` downloads it again")
            return cached
        if ref.filename is None:
            chosen.append(_pick_listed(_list_files(ref), ref))
            log(f"{ref} → {chosen[0]}")
        name = chosen[0] if chosen else ref.filename
        assert name is not None
        url = hf_hub_url(ref.repo_id, name, revision=ref.revision, endpoint=endpoint())
        meta = get_hf_file_metadata(url, endpoint=endpoint())
        _check_cache_paths(ref, name, meta.commit_hash, meta.etag)
        if meta.size:
            _check_space(meta.size, hub_cache(), f"{ref.repo_id}/{name}")
            log(f"downloading {ref.repo_id}/{name} ({meta.size / 1e6:.0f} MB) from {endpoint()}")
        path = _download_resuming(lambda: Path(hf_hub_download(
            ref.repo_id, name, revision=ref.revision, cache_dir=str(hub_cache()),
            endpoint=endpoint(), force_download=force)))
    problem = _mismatch(path, meta.etag, sha256)
    if problem:
        _discard(path)
        raise ModelFileError(f"{replace(ref, filename=name, quant=None)}: checksum mismatch ({problem}); "
                             "the download was discarded")
    return path
