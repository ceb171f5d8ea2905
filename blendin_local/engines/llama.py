"""The llama.cpp engine: the only module that imports ``llama_cpp``.

Logits are read zero-copy from llama.cpp's output buffer for the last evaluated position, so
``logits_all`` (n_ctx × n_vocab floats) is never needed and ``Llama.scores`` is never read.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..errors import ContextOverflowError, ModelFileError, UsageError
from ..gguf_check import check_gguf
from .base import LOCAL, EngineKind, InProcess, Position, dense_top_logprobs

log = logging.getLogger(__name__)
EXTRA_BUFFERS_ENV = "BLENDIN_EXTRA_BUFFERS"  # "0" off, "1" on, unset: off only where AMX is built in


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence llama.cpp's C-level log lines during load (``verbose=False`` misses some)."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


class LoadInterrupt:
    """Ctrl-C while llama.cpp loads a model, kept for when the load returns.

    llama.cpp calls back into Python during a load (llama-cpp-python's log callback, for every
    log line), and a KeyboardInterrupt raised inside a ctypes callback is printed (to the silenced
    stderr) and dropped: the load went on as if Ctrl-C had never been pressed. So while loading,
    SIGINT only sets :attr:`pending`; :meth:`keep_loading` (llama.cpp's progress callback) then
    asks llama.cpp to abandon the load, and :func:`_interrupt_after_load` raises the
    KeyboardInterrupt once llama.cpp has returned.
    """

    def __init__(self) -> None:
        self.pending = False

    def on_sigint(self, signum: int, frame: object) -> None:
        self.pending = True

    def keep_loading(self, progress: float, user_data: object) -> bool:
        return not self.pending


@contextlib.contextmanager
def _interrupt_after_load() -> Iterator[LoadInterrupt]:
    """Hold Ctrl-C during a load and raise it as KeyboardInterrupt after (see
    :class:`LoadInterrupt`). Only in the main thread, and only where SIGINT has Python's default
    handler (a background job ignoring it, or a server with its own handler, is left alone)."""
    interrupt = LoadInterrupt()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield interrupt
        return
    signal.signal(signal.SIGINT, interrupt.on_sigint)
    try:
        yield interrupt
    except Exception:
        if interrupt.pending:  # the load was abandoned because of Ctrl-C
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupt.pending:
        raise KeyboardInterrupt


@cache
def gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


@cache
def system_info() -> str:
    """llama.cpp's feature line, e.g. ``CPU : SSE3 = 1 | AVX2 = 1 | ... | AMX_INT8 = 1 |``."""
    import llama_cpp

    return bytes(llama_cpp.llama_print_system_info()).decode("utf-8", errors="replace")


def build_features(info: str) -> dict[str, bool]:
    """``FEATURE = 0/1`` pairs of a system-info line (the CPU features the build was compiled for)."""
    return {name: value == "1" for name, value in re.findall(r"([A-Z][A-Z0-9_]*)\s*=\s*(\d+)", info)}


def extra_buffers_allowed(info: str, override: str | None = None) -> bool:
    """Whether to load weights with llama.cpp's extra (repacking) buffer types.

    A build with AMX kernels (``AMX_INT8 = 1``) crashes in ``ggml_backend_amx_mul_mat`` on Sapphire
    Rapids-class CPUs (llama.cpp #20824); without the extra buffer types those kernels are never
    used. ``override`` is the ``$BLENDIN_EXTRA_BUFFERS`` value: "0" forces them off, "1" on.
    """
    if override in ("0", "1"):
        return override == "1"
    return not build_features(info).get("AMX_INT8", False)


@cache
def use_extra_buffers() -> bool:
    """The runtime AMX guard, decided once per process (and logged once, for --verbose)."""
    allowed = extra_buffers_allowed(system_info(), os.environ.get(EXTRA_BUFFERS_ENV))
    if not allowed:
        why = (f"${EXTRA_BUFFERS_ENV}=0" if os.environ.get(EXTRA_BUFFERS_ENV) == "0"
               else "this llama.cpp build has AMX kernels (AMX_INT8 = 1), which crash on some CPUs")
        log.info("loading models without llama.cpp's extra buffer types: %s", why)
    return allowed


@contextlib.contextmanager
def _model_params(**fields: object) -> Iterator[None]:
    """Set llama.cpp model-parameter fields that ``Llama.__init__`` has no argument for: it starts
    from ``llama_model_default_params()``, so that function is wrapped while a model loads."""
    import llama_cpp.llama_cpp as lib

    if not fields:
        yield
        return
    original = lib.llama_model_default_params

    def patched() -> object:
        params = original()
        for name, value in fields.items():
            setattr(params, name, value)
        return params

    lib.llama_model_default_params = patched
    try:
        yield
    finally:
        lib.llama_model_default_params = original


def backend_devices() -> list[str]:
    """The ggml compute devices of this build, e.g. ``["CUDA0: NVIDIA H100 (79.2 GiB)", "CPU: …"]``."""
    from llama_cpp._ggml import libggml as lib

    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    for fn in (lib.ggml_backend_dev_name, lib.ggml_backend_dev_description):
        fn.argtypes, fn.restype = [ctypes.c_void_p], ctypes.c_char_p
    lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p] + [ctypes.POINTER(ctypes.c_size_t)] * 2
    devices = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        name = (lib.ggml_backend_dev_name(dev) or b"?").decode(errors="replace")
        desc = (lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace")
        memory = f" ({total.value / 2**30:.1f} GiB)" if total.value else ""
        devices.append(f"{name}: {desc}{memory}")
    return devices


def read_metadata(path: Path) -> dict[str, object]:
    """GGUF metadata, parameter count and special ids via a vocabulary-only load (~0.5 s, where
    parsing the whole header in Python takes ~10 s on a 262k vocabulary)."""
    import llama_cpp

    check_gguf(path)
    try:
        with _interrupt_after_load(), _quiet_stderr():
            llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError, OSError):
        raise ModelFileError(
            f"{path}: llama.cpp could not read this GGUF: the file is corrupt or truncated"
        ) from None
    model, vocab = llm._model.model, llm._model.vocab
    eot = llama_cpp.llama_vocab_eot(vocab)
    info: dict[str, object] = {
        "metadata": dict(llm.metadata),
        "n_params": int(llama_cpp.llama_model_n_params(model)),
        "n_vocab": int(llm.n_vocab()),
        "bos_id": int(llama_cpp.llama_vocab_bos(vocab)),
        "eos_id": int(llama_cpp.llama_vocab_eos(vocab)),
        "eot_id": int(eot) if eot >= 0 else None,
    }
    llm.close()
    return info


class LlamaEngine(InProcess):
    """A GGUF model on llama.cpp, implementing :class:`blendin_local.engines.base.Engine`."""

    capabilities = LOCAL

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int = 4096,
        n_gpu_layers: int = -1,
        n_threads: int | None = None,
        seed: int = 0,
        n_batch: int = 512,
        extra_buffers: bool | None = None,
    ) -> None:
        """``extra_buffers``: load with llama.cpp's weight-repacking buffer types; None decides
        with the AMX guard (:func:`use_extra_buffers`)."""
        import llama_cpp

        self._lib = llama_cpp
        path = Path(path)
        check_gguf(path)
        if extra_buffers is None:
            extra_buffers = use_extra_buffers()
        params: dict[str, object] = {} if extra_buffers else {"use_extra_bufts": False}
        try:
            with _interrupt_after_load() as interrupt, _quiet_stderr(), _model_params(
                    progress_callback=llama_cpp.llama_progress_callback(interrupt.keep_loading),
                    **params):
                self._llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_batch=min(n_batch, n_ctx),
                    n_gpu_layers=n_gpu_layers,
                    n_threads=n_threads,
                    # --threads N means N for batches too (llama-cpp-python's default for batches is
                    # every core: oversubscribed when other work shares the machine)
                    n_threads_batch=n_threads,
                    seed=seed,
                    logits_all=False,
                    swa_full=True,  # with False, a KV rollback "works" but gives wrong logits
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError):
            raise ModelFileError(
                f"{path}: llama.cpp could not load this GGUF: the file is corrupt, truncated or of "
                "an unsupported architecture"
            ) from None
        self.name = path.stem
        self.path = path
        # llama.cpp pads the context up to a multiple of 256, but llama-cpp-python's token buffer
        # (input_ids) keeps the requested size: writing past it fails or is silently dropped.
        self.n_ctx = min(self._llm.n_ctx(), len(self._llm.input_ids))
        self.n_vocab = self._llm.n_vocab()
        self._vocab = self._llm._model.vocab
        bos = llama_cpp.llama_vocab_bos(self._vocab)
        self.bos_id: int | None = bos if bos >= 0 else None
        self.eos_id = int(llama_cpp.llama_vocab_eos(self._vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and self.bos_id is not None
        self.metadata: dict[str, str] = dict(self._llm.metadata)
        self.chat_template: str | None = self.metadata.get("tokenizer.chat_template") or None
        self._pieces: list[bytes] | None = None
        self._controls: frozenset[int] | None = None
        self._eog: frozenset[int] | None = None
        self._ready = False  # logits() is the row after the last cached token
        self._group: LlamaSequences | None = None
        self._on_gpu = n_gpu_layers != 0 and gpu_offload_supported()

    def cpu_threads(self) -> int | None:
        """The most threads this model's decodes spin on the CPU (single tokens or batches), or
        None where its layers are offloaded to a GPU (``generation.overlap`` reads it)."""
        if self._on_gpu:
            return None
        params = self._llm.context_params
        return max(int(params.n_threads), int(params.n_threads_batch))

    # --- vocabulary -------------------------------------------------------------------------
    def tokenize(self, text: bytes, *, add_bos: bool = False, special: bool = True) -> list[int]:
        return self._llm.tokenize(text, add_bos=add_bos, special=special)

    def piece(self, token: int, *, special: bool = True) -> bytes:
        """Token bytes, growing the buffer for long pieces (``detokenize`` truncates at 32)."""
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]  # no NUL stripping: Gemma's <0x00> is really b"\x00"
            size = -n

    def pieces(self) -> list[bytes]:
        if self._pieces is None:
            self._pieces = [self.piece(i) for i in range(self.n_vocab)]
        return self._pieces

    def control_ids(self) -> frozenset[int]:
        if self._controls is None:
            is_control = self._lib.llama_vocab_is_control
            self._controls = frozenset(i for i in range(self.n_vocab) if is_control(self._vocab, i))
        return self._controls

    def eog_ids(self) -> frozenset[int]:
        if self._eog is None:
            is_eog = self._lib.llama_vocab_is_eog
            self._eog = frozenset(i for i in range(self.n_vocab) if is_eog(self._vocab, i))
        return self._eog

    # --- evaluation -------------------------------------------------------------------------
    @property
    def tokens(self) -> list[int]:
        return self._llm.input_ids[: self._llm.n_tokens].tolist()

    @property
    def n_past(self) -> int:
        return int(self._llm.n_tokens)

    def _check_room(self, n_new: int) -> None:
        if self._llm.n_tokens + n_new > self.n_ctx:
            raise ContextOverflowError.of(self.name, self._llm.n_tokens + n_new, self.n_ctx)

    @property
    def logits_ready(self) -> bool:
        return self._ready

    def eval(self, ids: Sequence[int]) -> None:
        self._check_room(len(ids))
        self._ready = False  # a failed decode leaves no row for the tokens it kept
        self._llm.eval(list(ids))
        self._ready = bool(ids)

    def rollback(self, n: int) -> None:
        # Llama.eval removes KV positions >= n_tokens before decoding. The logits row stays that of
        # the old last token: no longer the row after the cache's last token.
        self._ready = self._ready and n == self._llm.n_tokens
        self._llm.n_tokens = n

    def logits(self) -> NDArray[np.float32]:
        ptr = self._lib.llama_get_logits_ith(self._llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def eval_logits(self, ids: Sequence[int]) -> NDArray[np.float32]:
        """Append ``ids`` and keep the logits of every one of them (batched, no ``logits_all``)."""
        self._check_room(len(ids))
        self._ready = False
        llm = self._llm
        out = np.empty((len(ids), self.n_vocab), dtype=np.float32)
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        for start in range(0, len(ids), llm.n_batch):
            chunk = list(ids[start : start + llm.n_batch])
            n_past = llm.n_tokens
            llm._batch.set_batch(batch=chunk, n_past=n_past, logits_all=True)
            llm._ctx.decode(llm._batch)
            rows = np.ctypeslib.as_array(
                self._lib.llama_get_logits(llm.ctx), shape=(len(chunk), self.n_vocab)
            )
            out[start : start + len(chunk)] = rows
            llm.input_ids[n_past : n_past + len(chunk)] = chunk
            llm.n_tokens += len(chunk)
        self._ready = bool(ids)
        return out

    def top_logprobs(self, prompt: str, k: int) -> Position | None:
        return dense_top_logprobs(self, prompt, k)

    # --- reference path (benchmarks and tests compare against llama-cpp-python itself) -------
    def reference_completion(self, prompt: bytes, max_tokens: int) -> tuple[list[int], float]:
        """Greedy decoding by llama-cpp-python's own loop (``Llama.generate``, what
        ``create_completion`` runs) on this same loaded model: (generated ids, decode seconds
        from its first sampled token to its last, prompt processing excluded)."""
        prompt_ids = self.tokenize(prompt, add_bos=self.add_bos)
        eog = self.eog_ids()
        ids: list[int] = []
        stamps = []
        # Not create_completion: it never evaluates its last sampled token, so reading the ids
        # back from input_ids loses that one.
        for token in self._llm.generate(prompt_ids, top_k=1, temp=0.0, reset=True):
            stamps.append(time.perf_counter())
            if token in eog:
                break
            ids.append(int(token))
            if len(ids) >= max_tokens:
                break
        self._llm.reset()
        self._ready = False
        return ids, (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0

    # --- many sequences ------------------------------------------------------------------------
    def sequences(self, n: int, *, unified_kv: bool = False) -> list[LlamaSequence]:
        """``n`` sequence views of this model in one context with ``n_seq_max = n`` (each an
        :class:`~blendin_local.engines.base.Engine` with room for ``n_ctx`` tokens); their
        group's ``eval_many`` decodes pending tokens of several in one ``llama_decode``. The
        context is kept for the next call with the same ``n`` and KV layout, else replaced."""
        group = self._group
        if group is None or len(group.views) != n or group.unified_kv != unified_kv:
            if group is not None:
                group.close()
                self._group = None
            group = self._group = LlamaSequences(self, n, unified_kv=unified_kv)
        return list(group.views)

    def max_sequences(self, share: float = 0.5) -> int:
        """How many sequences of ``n_ctx`` tokens fit in ``share`` of the available memory."""
        free = available_memory()
        per_seq = max(self.kv_bytes(self.n_ctx), 1)
        return 1 << 16 if free is None else int(share * free // per_seq)

    def kv_bytes(self, n_tokens: int) -> int:
        """Estimated KV cache size of ``n_tokens`` positions (f16 K and V in every layer; with
        ``swa_full`` a sliding-window layer holds every position too)."""
        lib, model = self._lib, self._llm._model.model
        arch = self.metadata.get("general.architecture", "")
        n_head = max(int(lib.llama_model_n_head(model)), 1)
        head = int(lib.llama_model_n_embd(model)) // n_head
        k = int(self.metadata.get(f"{arch}.attention.key_length", head))
        v = int(self.metadata.get(f"{arch}.attention.value_length", head))
        per_token = int(lib.llama_model_n_layer(model)) * int(lib.llama_model_n_head_kv(model)) * (k + v) * 2
        return n_tokens * per_token

    def close(self) -> None:
        if self._group is not None:
            self._group.close()
            self._group = None
        self._llm.close()


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``; None elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class LlamaSequences:
    """One llama.cpp context holding ``n`` sequences of ``engine``'s model (weights shared).

    Each sequence may take ``n_ctx`` positions (``check_room``) of ``n × n_ctx`` KV cells: in one
    buffer for all (``unified_kv``: a batch of any sequences and token counts is one ubatch; the
    caller's choice, see :func:`~blendin_local.generation.many.unified_kv`) or one stream each
    (llama.cpp then splits a batch at every break in sequence ids or token counts), and
    ``swa_full`` as for the single engine (spec §9). Logits rows are read zero-copy; a sequence
    whose row the next decode would overwrite gets a copy first (:meth:`eval_many`), so each
    view's ``logits()`` stays valid until its own next ``eval``.
    """

    def __init__(self, engine: LlamaEngine, n: int, *, unified_kv: bool = False) -> None:
        if n < 1:
            raise UsageError(f"the number of sequences must be >= 1, got {n}")
        lib = engine._lib
        self._lib = lib
        self.engine = engine
        need = engine.kv_bytes(engine.n_ctx * n)
        free = available_memory()
        if free is not None and need > 0.8 * free:
            raise UsageError(
                f"{n} sequences of {engine.n_ctx} tokens need ~{need / 2**30:.1f} GiB of KV cache "
                f"for {engine.name}, but {free / 2**30:.1f} GiB of memory is available: lower "
                "--batch or --n-ctx"
            )
        params = lib.llama_context_params.from_buffer_copy(engine._llm.context_params)
        params.n_seq_max = n
        params.n_ctx = engine.n_ctx * n
        params.kv_unified = self.unified_kv = unified_kv
        params.swa_full = True  # with False, a KV rollback "works" but gives wrong logits
        # llama.cpp decodes any batch of more than one token with n_threads_batch (by default every
        # core, meant for prompts), so one token each of B sequences would run there too; they are
        # a decode step: the single-token thread count (the same unless --threads was left unset).
        # On the shared 2-core machine 2 threads spinning on barriers made an eval 5x slower.
        params.n_threads_batch = params.n_threads
        self.n_batch = int(params.n_batch)
        self.threads = int(params.n_threads)
        with _quiet_stderr():
            self.ctx = lib.llama_init_from_model(engine._llm._model.model, params)
        if not self.ctx:
            raise ModelFileError(f"{engine.name}: llama.cpp could not create a context of {n} "
                                 f"sequences × {engine.n_ctx} tokens")
        self.n_ctx_seq = min(engine.n_ctx, int(lib.llama_n_ctx_seq(self.ctx)))
        self.memory = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(self.n_batch, 0, 1)
        self.n_vocab = engine.n_vocab
        self.views = tuple(LlamaSequence(self, i) for i in range(n))
        self.decodes = 0  # llama_decode calls, for tests and benchmarks

    def row(self, i: int) -> NDArray[np.float32]:
        """Zero-copy view of the logits of batch row ``i`` of the last decode."""
        ptr = self._lib.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def remove(self, seq: int, start: int) -> None:
        """Drop KV positions >= ``start`` of sequence ``seq``."""
        if not self._lib.llama_memory_seq_rm(self.memory, seq, start, -1):
            raise RuntimeError(f"llama.cpp could not roll sequence {seq} back to {start}")

    def eval_many(self, requests: Sequence[tuple[object, Sequence[int]]],
                  *, all_rows: bool = False) -> list[NDArray[np.float32]]:
        """Append each request's ids to its sequence (views of this group), as few
        ``llama_decode`` calls as ``n_batch`` allows, with a logits row for each sequence's last
        id. With ``all_rows``: copies of every id's row, per request (``eval_logits``)."""
        work: list[tuple[LlamaSequence, list[int]]] = []
        for v, ids in requests:
            if not isinstance(v, LlamaSequence) or v.group is not self:
                raise ValueError("eval_many takes views of this group only")
            v.check_room(len(ids))
            if ids:
                work.append((v, list(ids)))
        work.sort(key=lambda w: w[0].seq)  # llama.cpp splits a batch at every break in seq order
        views = [v for v, _ in work]
        for other in self.views:  # rows the next decode overwrites, still wanted
            if other not in views:
                other.keep_row()
        for v in views:  # their old rows are stale from now on
            v._row = v._kept = None
        flat = [(v, pos, t, j == len(ids) - 1)
                for v, ids in work for j, (pos, t) in enumerate(enumerate(ids, len(v._tokens)))]
        out: list[list[NDArray[np.float32]]] = [[] for _ in work]
        index = {id(v): k for k, v in enumerate(views)}
        b, lib = self.batch, self._lib
        for start in range(0, len(flat), self.n_batch):
            chunk = flat[start : start + self.n_batch]
            if start:  # the previous chunk's rows are about to be overwritten
                for v in views:
                    v.keep_row()
            b.n_tokens = len(chunk)
            for i, (v, pos, t, last) in enumerate(chunk):
                b.token[i] = t
                b.pos[i] = pos
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = v.seq
                b.logits[i] = all_rows or last
            rc = lib.llama_decode(self.ctx, b)
            self.decodes += 1
            if rc != 0:
                raise RuntimeError(f"llama_decode failed ({rc}) on {len(chunk)} tokens")
            for i, (v, _, t, last) in enumerate(chunk):
                v._tokens.append(t)
                if all_rows:
                    out[index[id(v)]].append(self.row(i).copy())
                if last:
                    v._row, v._kept = i, None
        return [np.stack(rows) if rows else np.empty((0, self.n_vocab), np.float32)
                for rows in out]

    def close(self) -> None:
        if self.ctx:
            self._lib.llama_batch_free(self.batch)
            self._lib.llama_free(self.ctx)
            self.ctx = None
            for v in self.views:
                v._row = None


class LlamaSequence(InProcess):
    """One sequence of a :class:`LlamaSequences` context: an
    :class:`~blendin_local.engines.base.Engine` (vocabulary from its model's engine)."""

    capabilities = LOCAL

    def __init__(self, group: LlamaSequences, seq: int) -> None:
        engine = group.engine
        self.group = group
        self.seq = seq
        self._engine = engine
        self.name = engine.name
        self.path = engine.path
        self.n_ctx = group.n_ctx_seq
        self.n_vocab = engine.n_vocab
        self.bos_id = engine.bos_id
        self.eos_id = engine.eos_id
        self.add_bos = engine.add_bos
        self.metadata = engine.metadata
        self.chat_template = engine.chat_template
        self._tokens: list[int] = []
        self._row: int | None = None  # batch row of this sequence's logits in the last decode
        self._kept: NDArray[np.float32] | None = None  # a copy, once another decode came

    def tokenize(self, text: bytes, *, add_bos: bool = False, special: bool = True) -> list[int]:
        return self._engine.tokenize(text, add_bos=add_bos, special=special)

    def cpu_threads(self) -> int | None:
        return None if self._engine.cpu_threads() is None else self.group.threads

    def pieces(self) -> list[bytes]:
        return self._engine.pieces()

    def control_ids(self) -> frozenset[int]:
        return self._engine.control_ids()

    def eog_ids(self) -> frozenset[int]:
        return self._engine.eog_ids()

    @property
    def tokens(self) -> list[int]:
        return list(self._tokens)

    def check_room(self, n_new: int) -> None:
        if len(self._tokens) + n_new > self.n_ctx:
            raise ContextOverflowError.of(self.name, len(self._tokens) + n_new, self.n_ctx)

    def keep_row(self) -> None:
        if self._row is not None:
            self._kept = self.group.row(self._row).copy()
            self._row = None

    def eval(self, ids: Sequence[int]) -> None:
        self.group.eval_many([(self, ids)])

    def rollback(self, n: int) -> None:
        if n < len(self._tokens) or n == 0:
            self.group.remove(self.seq, n)
            del self._tokens[n:]
        self._row = self._kept = None

    @property
    def logits_ready(self) -> bool:
        return self._row is not None or self._kept is not None

    def logits(self) -> NDArray[np.float32]:
        if self._kept is not None:
            return self._kept
        if self._row is None:
            raise RuntimeError(f"{self.name}[{self.seq}]: logits read before an eval")
        return self.group.row(self._row)

    def eval_logits(self, ids: Sequence[int]) -> NDArray[np.float32]:
        return self.group.eval_many([(self, ids)], all_rows=True)[0]

    def top_logprobs(self, prompt: str, k: int) -> Position | None:
        return dense_top_logprobs(self, prompt, k)


KIND = EngineKind(name="local", spelling="a catalog name, a GGUF path or a fetched hf: reference",
                  claims=lambda spec: True, open=LlamaEngine, reads_file=True, fallback=True)
