"""A tiny, valid, deterministic GGUF model (Llama architecture, SentencePiece vocabulary) for fast
engine tests: a few hundred KB, loads in milliseconds, random weights from a seeded Generator.

The vocabulary has the SPM specials, all 256 byte tokens ``<0x00>..<0xFF>`` (so any text encodes),
a few word pieces and one piece longer than 32 bytes (``detokenize`` truncates those, spec §9).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

UNK, BOS, EOS = 0, 1, 2
N_SPECIAL = 3
BYTE_BASE = N_SPECIAL  # id of <0x00>; byte b has id BYTE_BASE + b
LONG_PIECE = "\u2581" + "abcdefghij" * 8  # 83 bytes as UTF-8 ("▁" is 3): > 64, the first buffer
WORDS = (
    "\u2581", "\u2581the", "\u2581a", "\u2581of", "\u2581and", "\u2581to", "\u2581is", "\u2581in",
    "\u2581capital", "\u2581France", "\u2581Paris", "\u2581The", "\u2581Answer", "\u2581Question",
    "e", "t", "a", "o", "n", "s", "th", "he", "in", "er", "an", ":", ".", ",", "?", "1", "2", "3",
    LONG_PIECE,
)


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, token types) of the tiny SPM vocabulary."""
    import gguf

    tt = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + list(WORDS)
    types = [tt.UNKNOWN, tt.CONTROL, tt.CONTROL] + [tt.BYTE] * 256 + [tt.NORMAL] * len(WORDS)
    scores = [0.0] * (N_SPECIAL + 256) + [-float(i) for i in range(len(WORDS))]
    return tokens, scores, [int(t) for t in types]


def write_tiny_gguf(
    path: str | Path,
    *,
    seed: int = 0,
    n_embd: int = 32,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 64,
    n_ctx_train: int = 512,
) -> Path:
    """Write the tiny model to ``path`` and return it. Same arguments ⇒ the same bytes."""
    import gguf

    path = Path(path)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)
    head_dim = n_embd // n_head
    rng = np.random.default_rng(seed)

    def weight(*shape: int, scale: float = 0.5) -> np.ndarray:
        # numpy shape is ggml's ne reversed: (rows = outputs, cols = inputs)
        return (rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(np.float32)

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name("tiny-test-llama")
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    w.add_vocab_size(n_vocab)

    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)
    w.add_unk_token_id(UNK)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    # Embeddings with a large scale so the logits are far from uniform (distinct argmaxes).
    w.add_tensor("token_embd.weight", (rng.standard_normal((n_vocab, n_embd))).astype(np.float32))
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", weight(n_embd, n_embd))
        w.add_tensor(p + "attn_k.weight", weight(n_head_kv * head_dim, n_embd))
        w.add_tensor(p + "attn_v.weight", weight(n_head_kv * head_dim, n_embd))
        w.add_tensor(p + "attn_output.weight", weight(n_embd, n_embd))
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", weight(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", weight(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", weight(n_embd, n_ff))
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("output.weight", weight(n_vocab, n_embd, scale=4.0))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


if __name__ == "__main__":  # python tests/tiny_gguf.py /tmp/tiny.gguf
    import sys

    print(write_tiny_gguf(sys.argv[1] if len(sys.argv) > 1 else "tiny.gguf"))
