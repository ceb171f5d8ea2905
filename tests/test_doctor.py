"""``blendin-local doctor`` and the AMX runtime guard: the guard's decision from a system-info line,
the model-parameter override, and doctor's report, including a native crash in its child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from blendin_local import doctor
from blendin_local.cli import cli
from blendin_local.engines.llama import LlamaEngine, _model_params, build_features, extra_buffers_allowed

SCRIPT = Path(sys.executable).with_name("blendin-local")
REAL_PROBE = doctor.probe_command

AMX_BUILD = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
             "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | "
             "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ")
NO_AMX_BUILD = AMX_BUILD.replace("AMX_INT8 = 1", "AMX_INT8 = 0")
OLD_BUILD = "AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "  # no AMX_INT8 entry at all


def segfault_command(*_args: str) -> list[str]:
    return [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]


# --- the runtime guard -----------------------------------------------------------------------
@pytest.mark.parametrize(("info", "override", "allowed"), [
    (AMX_BUILD, None, False),
    (NO_AMX_BUILD, None, True),
    (OLD_BUILD, None, True),
    ("", None, True),
    (AMX_BUILD, "1", True),      # the user insists
    (NO_AMX_BUILD, "0", False),  # the user switches them off anyway
    (AMX_BUILD, "yes", False),   # anything else: automatic
])
def test_extra_buffers_follow_amx_in_the_build(info, override, allowed):
    assert extra_buffers_allowed(info, override) is allowed


def test_build_features_parses_the_system_info_line():
    features = build_features(AMX_BUILD)
    assert features["AMX_INT8"] is True and features["AVX2"] is True and "SSE4" not in features
    assert build_features(NO_AMX_BUILD)["AMX_INT8"] is False


def test_model_params_override_is_applied_while_loading_only():
    import llama_cpp.llama_cpp as lib

    assert lib.llama_model_default_params().use_extra_bufts is True
    with _model_params(use_extra_bufts=False):
        assert lib.llama_model_default_params().use_extra_bufts is False
    assert lib.llama_model_default_params().use_extra_bufts is True
    with pytest.raises(RuntimeError), _model_params(use_extra_bufts=False):
        raise RuntimeError("a failed load")
    assert lib.llama_model_default_params().use_extra_bufts is True


def test_engine_without_extra_buffers_gives_the_same_logits(tiny_gguf):
    """The tiny model is F32 (nothing to repack), so both loads compute the same numbers."""
    rows = []
    for extra in (True, False):
        engine = LlamaEngine(tiny_gguf, n_ctx=64, n_threads=2, extra_buffers=extra)
        engine.eval([1, 5, 9, 12])
        rows.append(engine.logits().copy())
        engine.close()
    np.testing.assert_allclose(rows[0], rows[1], atol=1e-5)


@pytest.mark.integration
def test_verbose_says_once_that_extra_buffers_are_off(default_models):
    env = {**os.environ, "BLENDIN_EXTRA_BUFFERS": "0"}
    proc = subprocess.run([str(SCRIPT), "-v", "generate", "--max-tokens", "2", "Hi"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("without llama.cpp's extra buffer types") == 1, proc.stderr
    quiet = subprocess.run([str(SCRIPT), "generate", "--max-tokens", "2", "Hi"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert "extra buffer types" not in quiet.stderr


# --- doctor's pieces --------------------------------------------------------------------------
def test_a_child_killed_by_sigsegv_is_described_not_fatal():
    result = doctor.run_child(segfault_command())
    assert result.returncode == -signal.SIGSEGV
    assert doctor.describe_exit(result) == "signal 11 (SIGSEGV)"
    assert doctor.child_json(result) is None


def test_a_child_that_fails_or_hangs_is_described():
    failed = doctor.run_child([sys.executable, "-c", "import sys; sys.exit('no such model')"])
    assert doctor.describe_exit(failed) == "exit 1: no such model"
    hung = doctor.run_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert hung.returncode is None and "no answer within" in doctor.describe_exit(hung, 0.5)


def test_child_json_wants_a_json_object_on_the_last_line():
    ok = doctor.ChildResult(0, 'llama log\n{"token": 5}\n', "")
    assert doctor.child_json(ok) == {"token": 5}
    assert doctor.child_json(doctor.ChildResult(0, "[1, 2]\n", "")) is None
    assert doctor.child_json(doctor.ChildResult(0, "", "")) is None
    assert doctor.child_json(doctor.ChildResult(1, '{"token": 5}', "")) is None


def test_missing_cpu_features_maps_build_names_to_cpu_flags():
    build = build_features(AMX_BUILD)
    laptop = {"pni", "ssse3", "avx", "avx2", "f16c", "fma", "bmi2"}
    assert doctor.missing_cpu_features(build, laptop) == [
        "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8"]
    everything = laptop | {"avx512f", "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_int8"}
    assert doctor.missing_cpu_features(build, everything) == []


# --- doctor through the CLI ------------------------------------------------------------------
@pytest.mark.integration
def test_doctor_reports_a_working_machine(default_models):
    proc = subprocess.run([str(SCRIPT), "doctor"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for needle in ("llama-cpp-python", "llama.cpp features", "amx guard", "gpu offload", "threads",
                   "models dir", "decode gemma3-270m", "decode smollm2-135m-instruct", "everything works"):
        assert needle in out, out
    assert "FAIL" not in out and "Traceback" not in proc.stderr


@pytest.mark.integration
def test_doctor_reports_a_native_crash_as_one_line(default_models, monkeypatch):
    def crash_on_decode(*args: str) -> list[str]:
        return segfault_command() if args[0] == "decode" else REAL_PROBE(*args)

    monkeypatch.setattr(doctor, "probe_command", crash_on_decode)
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1, result.output
    assert ("llama.cpp crashed decoding gemma3-270m: signal 11 (SIGSEGV); see README Troubleshooting"
            in result.output)
    assert "2 problem(s) found" in result.output  # both default models


def test_doctor_reports_a_crash_at_start_and_a_foreign_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("BLENDIN_MODELS_DIR", str(tmp_path))  # nothing fetched: no decode probes
    monkeypatch.setattr(doctor, "probe_command", segfault_command)
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1
    assert "llama.cpp crashed while starting: signal 11 (SIGSEGV)" in result.output
    assert "not fetched (default base)" in result.output

    monkeypatch.setattr(doctor, "probe_command", REAL_PROBE)
    monkeypatch.setattr(doctor, "host_cpu", lambda: ("Old laptop", {"pni", "ssse3", "avx"}))
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1
    assert "which this CPU lacks" in result.output and "AVX2" in result.output

