"""Child-process probes for ``doctor``: anything that touches llama.cpp's native code runs here, so a
crash (SIGSEGV on an AMX CPU, SIGILL from a wheel built for another CPU) kills the child, not doctor.

``python -m blendin_local.probe info`` prints llama.cpp's build facts as JSON;
``python -m blendin_local.probe decode MODEL.gguf`` loads a model and decodes one token.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def info() -> dict[str, Any]:
    import llama_cpp

    from .engines.llama import backend_devices, gpu_offload_supported, system_info, use_extra_buffers

    return {
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": system_info(),
        "gpu_offload": gpu_offload_supported(),
        "devices": backend_devices(),
        "extra_buffers": use_extra_buffers(),
    }


def decode(path: str) -> dict[str, Any]:
    from .engines.llama import LlamaEngine

    t0 = time.perf_counter()
    engine = LlamaEngine(path, n_ctx=64)
    loaded = time.perf_counter()
    engine.eval(engine.tokenize(b"The capital of France is", add_bos=engine.add_bos))
    token = int(engine.logits().argmax())
    done = time.perf_counter()
    piece = engine.pieces()[token].decode("utf-8", errors="replace")
    engine.close()
    return {"token": token, "piece": piece, "load_s": loaded - t0, "decode_s": done - loaded}


def main(argv: list[str]) -> int:
    if len(argv) == 1 and argv[0] == "info":
        result = info()
    elif len(argv) == 2 and argv[0] == "decode":
        result = decode(argv[1])
    else:
        print("usage: python -m blendin_local.probe info | decode MODEL.gguf", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
