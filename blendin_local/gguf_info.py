"""``models info``: a GGUF's architecture, size, quantisation, context and vocabulary, read from its
metadata by the llama.cpp engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engines.llama import read_metadata


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


def read_info(path: Path) -> GGUFInfo:
    """Architecture, size, quantisation, context, vocabulary and special ids from metadata."""
    import gguf

    raw = read_metadata(path)
    meta: dict[str, str] = raw["metadata"]  # type: ignore[assignment]
    arch = meta.get("general.architecture", "unknown")
    ftype = meta.get("general.file_type")
    try:
        quant = gguf.LlamaFileType(int(ftype)).name.removeprefix("MOSTLY_") if ftype else "?"
    except ValueError:
        quant = f"file_type {ftype}"
    ctx = meta.get(f"{arch}.context_length")
    bos, eos = raw["bos_id"], raw["eos_id"]
    return GGUFInfo(
        path=path,
        architecture=arch,
        name=meta.get("general.name"),
        parameters=int(raw["n_params"]),  # type: ignore[call-overload]
        quantisation=quant,
        context_length=int(ctx) if ctx else None,
        vocab_size=int(raw["n_vocab"]),  # type: ignore[call-overload]
        bos_id=bos if isinstance(bos, int) and bos >= 0 else None,
        eos_id=eos if isinstance(eos, int) and eos >= 0 else None,
        eot_id=raw["eot_id"],  # type: ignore[arg-type]
        chat_template="tokenizer.chat_template" in meta,
        file_size=path.stat().st_size,
    )
