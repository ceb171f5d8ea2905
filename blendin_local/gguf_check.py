"""File checks with the ``gguf`` package before llama.cpp sees a file (``models info`` is in
:mod:`gguf_info`)."""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from .errors import ModelFileError

GGUF_MAGIC = b"GGUF"

_SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def _required_size(path: Path) -> int:
    """Bytes the GGUF header says the file has: metadata, tensor table, then the tensor data.

    Raises struct.error / KeyError when the header itself is cut or malformed.
    """
    import gguf

    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        pos = 4

        def read(fmt: str) -> int:
            nonlocal pos
            (value,) = struct.unpack_from("<" + fmt, m, pos)  # struct.error past the end
            pos += struct.calcsize(fmt)
            return value

        def skip(vtype: int) -> None:
            nonlocal pos
            if vtype == _STRING:
                n = read("Q")
                pos += n
            elif vtype == _ARRAY:
                sub, n = read("I"), read("Q")
                if sub in _SCALAR_SIZE:
                    pos += _SCALAR_SIZE[sub] * n
                else:
                    for _ in range(n):
                        skip(sub)
            else:
                pos += _SCALAR_SIZE[vtype]

        read("I")  # version
        n_tensors, n_kv = read("Q"), read("Q")
        alignment = 32
        for _ in range(n_kv):
            key_len = read("Q")
            key = m[pos : pos + key_len]
            pos += key_len
            vtype = read("I")
            if key == b"general.alignment" and vtype == 4:
                alignment = read("I")
            else:
                skip(vtype)
        end = 0
        for _ in range(n_tensors):
            name_len = read("Q")
            pos += name_len
            dims = [read("Q") for _ in range(read("I"))]
            ttype, offset = read("I"), read("Q")
            block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
            n = 1
            for d in dims:
                n *= d
            end = max(end, offset + n // block * type_size)
        data_start = -(-pos // alignment) * alignment
        return data_start + end if n_tensors else pos


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
    try:
        need = _required_size(path)
    except (struct.error, KeyError, ValueError, OverflowError):
        raise ModelFileError(f"truncated or corrupt GGUF file (header cut short): {path}") from None
    if size < need:
        raise ModelFileError(f"truncated GGUF file ({size} of {need} bytes): {path}")
