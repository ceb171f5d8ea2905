"""Read GGUF metadata with the ``gguf`` package: file checks before llama.cpp sees a file, and
``models info``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelFileError

GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """Fail with one clear line on a missing, empty, non-GGUF or truncated file."""
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFileError(f"model path is a directory, not a GGUF file: {path}")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
    if head[:4] != GGUF_MAGIC:
        raise ModelFileError(f"not a GGUF file (bad magic {head[:4]!r}): {path}")
    if size < 24:
        raise ModelFileError(f"truncated GGUF file ({size} bytes): {path}")


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    architecture: str
    name: str | None
    parameters: int
    quantisation: str
    context_length: int | None
    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    chat_template: bool
    file_size: int

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["path"] = str(self.path)
        return d


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return None
    return f.contents()


def read_info(path: Path) -> GGUFInfo:
    """Architecture, size, quantisation, context, vocabulary and special ids from metadata."""
    import gguf

    check_gguf(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, IndexError, KeyError) as exc:
        raise ModelFileError(f"corrupt or truncated GGUF file {path}: {exc}") from None
    arch = _field(reader, "general.architecture") or "unknown"
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens.data) if tokens is not None else 0
    params = sum(int(t.n_elements) for t in reader.tensors)
    ftype = _field(reader, "general.file_type")
    try:
        quant = gguf.LlamaFileType(ftype).name.removeprefix("MOSTLY_") if ftype is not None else "?"
    except ValueError:
        quant = f"file_type {ftype}"
    return GGUFInfo(
        path=path,
        architecture=str(arch),
        name=_field(reader, "general.name"),
        parameters=params,
        quantisation=quant,
        context_length=_field(reader, f"{arch}.context_length"),
        vocab_size=n_vocab,
        bos_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        eot_id=_field(reader, "tokenizer.ggml.eot_token_id"),
        chat_template=_field(reader, "tokenizer.chat_template") is not None,
        file_size=path.stat().st_size,
    )
