"""``blendin-local doctor``: one screen to paste into a bug report.

Everything that runs llama.cpp's native code runs in a child process (:mod:`blendin_local.probe`),
so a crash there becomes one line here instead of killing doctor.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

OK, WARN, FAIL = "ok", "warn", "FAIL"
TROUBLESHOOTING = "see README Troubleshooting"
PROBE_TIMEOUT_S = 180.0

# llama.cpp system-info feature → the Linux /proc/cpuinfo flag a CPU needs to run that code.
CPU_FLAG_OF = {
    "SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "F16C": "f16c", "FMA": "fma",
    "BMI2": "bmi2", "AVX_VNNI": "avx_vnni", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8",
}


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN or FAIL
    detail: str


@dataclass(frozen=True)
class ChildResult:
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str


ProbeCommand = Callable[..., list[str]]


def probe_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "blendin_local.probe", *args]


def run_child(argv: list[str], timeout: float = PROBE_TIMEOUT_S) -> ChildResult:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return ChildResult(None, out, "")
    return ChildResult(proc.returncode, proc.stdout, proc.stderr)


def describe_exit(result: ChildResult, timeout: float = PROBE_TIMEOUT_S) -> str:
    """How a child ended: ``signal 11 (SIGSEGV)``, ``exit 1: <last stderr line>``, a time-out."""
    code = result.returncode
    if code is None:
        return f"no answer within {timeout:.0f} s"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"signal {-code} ({name})"
    last = (result.stderr.strip().splitlines() or ["no message"])[-1]
    return f"exit {code}: {last}"


def child_json(result: ChildResult) -> dict[str, Any] | None:
    """The probe's JSON answer, or None when it crashed or printed something else."""
    if result.returncode != 0:
        return None
    try:
        value = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return value if isinstance(value, dict) else None


def host_cpu() -> tuple[str, set[str] | None]:
    """(CPU model name, its feature flags) from /proc/cpuinfo; flags None where unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), None
    model, flags = platform.machine(), None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == platform.machine():
            model = value.strip()
        elif key in ("flags", "Features") and flags is None:
            flags = set(value.split())
    return model, flags


def missing_cpu_features(build: dict[str, bool], host_flags: set[str]) -> list[str]:
    """Features the llama.cpp build was compiled to use that this CPU does not have."""
    return [f for f, on in build.items() if on and f in CPU_FLAG_OF and CPU_FLAG_OF[f] not in host_flags]


def _versions() -> Iterator[Check]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    yield Check("blendin-local", OK, version("blendin-local"))
    yield Check("python", OK, f"{platform.python_version()} ({sys.executable})")
    yield Check("platform", OK, platform.platform())
    yield Check("numpy", OK, version("numpy"))


def _llama_build(probe: ProbeCommand, host_flags: set[str] | None) -> Iterator[Check]:
    from .engines.llama import build_features

    result = run_child(probe("info"))
    info = child_json(result)
    if info is None:
        yield Check("llama.cpp", FAIL, f"llama.cpp crashed while starting: {describe_exit(result)}; "
                                       f"{TROUBLESHOOTING}")
        return
    features = build_features(str(info.get("system_info", "")))
    yield Check("llama-cpp-python", OK, str(info.get("llama_cpp_python")))
    yield Check("llama.cpp features", OK, " ".join(f for f, on in features.items() if on) or "none")
    if host_flags is not None:
        missing = missing_cpu_features(features, host_flags)
        if missing:
            yield Check("cpu match", FAIL, f"llama.cpp was built for {', '.join(missing)}, which this CPU "
                                           f"lacks (a venv or wheel from another machine?); "
                                           f"{TROUBLESHOOTING}")
        else:
            yield Check("cpu match", OK, "this CPU has every feature the build uses")
    if features.get("AMX_INT8"):
        yield Check("amx guard", WARN, "this build has AMX kernels: models load without llama.cpp's "
                                       "extra buffer types to avoid the AMX crash")
    elif not info.get("extra_buffers", True):
        yield Check("amx guard", WARN, "extra buffer types off ($BLENDIN_EXTRA_BUFFERS=0)")
    else:
        yield Check("amx guard", OK, "no AMX kernels in this build; extra buffer types on")
    devices = ", ".join(info.get("devices") or []) or "none"
    if info.get("gpu_offload"):
        yield Check("gpu offload", OK, f"supported; devices: {devices}")
    else:
        yield Check("gpu offload", OK, f"not in this build (CPU only; `make run CUDA=1` for CUDA); "
                                       f"devices: {devices}")


def _threads() -> Check:
    from .generation.overlap import ENV, cpu_count, overlap_mode

    cores = os.cpu_count() or 1
    usable = cpu_count()
    decode = max(cores // 2, 1)  # llama-cpp-python's defaults, used unless --threads is given
    mode = overlap_mode()
    beside = (f"{ENV}={mode}" if mode != "auto" else
              f"on for batched answers (eval, serve), and for one answer (generate, chat) with "
              f"--threads N where 2N <= {usable}" if 2 * decode <= usable else "off")
    return Check("threads", OK, f"{cores} cores ({usable} usable); decode uses {decode} "
                                f"thread{'s' if decode != 1 else ''} unless --threads is given, "
                                f"prompt processing {cores}; the guide beside the base: {beside}")


def _models(probe: ProbeCommand) -> Iterator[Check]:
    from .errors import BlendinError
    from .models import load_catalog, models_dir, sha256_file

    directory = models_dir()
    writable = os.access(directory, os.W_OK) if directory.exists() else os.access(directory.parent, os.W_OK)
    yield Check("models dir", OK if writable else WARN,
                f"{directory}" + ("" if writable else " (not writable: fetching will fail)"))
    try:
        entries, default = load_catalog()
    except BlendinError as exc:
        yield Check("catalog", FAIL, str(exc))
        return
    defaults = set(default.values())
    optional = []
    for entry in entries.values():
        role = f" (default {entry.role})" if entry.name in defaults else ""
        if not entry.fetched:
            if entry.name in defaults:
                yield Check(entry.name, FAIL, f"not fetched{role}: `blendin-local models fetch`")
            else:
                optional.append(entry.name)
            continue
        if entry.sha256 is None:  # a Hub entry: checked against the Hub's sha256 when fetched
            yield Check(entry.name, OK, f"fetched from the Hub (no pinned sha256){role}")
        elif sha256_file(entry.path) != entry.sha256:
            yield Check(entry.name, FAIL, f"sha256 mismatch{role}: delete {entry.path} and fetch again")
            continue
        else:
            yield Check(entry.name, OK, f"fetched, sha256 verified{role}")
        if entry.name in defaults:
            yield _decode_check(probe, entry.name, entry.path)
    if optional:
        yield Check("other catalog models", OK, f"not fetched: {', '.join(optional)}")


def _decode_check(probe: ProbeCommand, name: str, path: Path) -> Check:
    result = run_child(probe("decode", str(path)))
    answer = child_json(result)
    if answer is None:
        return Check(f"decode {name}", FAIL,
                     f"llama.cpp crashed decoding {name}: {describe_exit(result)}; {TROUBLESHOOTING}")
    return Check(f"decode {name}", OK,
                 f"1 token ({answer.get('piece')!r}) in {float(answer.get('decode_s', 0)):.2f} s after a "
                 f"{float(answer.get('load_s', 0)):.2f} s load (child process)")


def run_checks(probe: ProbeCommand | None = None) -> Iterator[Check]:
    """Every check, in the order shown; ``probe`` builds a child command (default
    :func:`probe_command`, looked up at call time so tests can swap it)."""
    probe = probe or probe_command
    yield from _versions()
    model, flags = host_cpu()
    amx = "" if flags is None else (", AMX" if "amx_int8" in flags else ", no AMX")
    yield Check("cpu", OK, f"{model}{amx}")
    yield from _llama_build(probe, flags)
    yield _threads()
    yield from _models(probe)
