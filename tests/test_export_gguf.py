"""``python -m tinygpt.export gguf``: the GGUF file is the course model, in llama.cpp's layout.

There is no llama.cpp here, so the file is read back with ``gguf``'s own reader and run
by a forward pass written in this test the way llama.cpp's Llama runs (RMSNorm, RoPE on
*interleaved* pairs, grouped-query attention, SwiGLU, the output layer tied to
``token_embd``), from the file's tensors and metadata alone. Its logits must equal the
course model's within 1e-4; the same pass with the q and k rows left in the course's
rotate-half order must not. The vocabulary, merges, token types and chat template are
checked against the course tokenizer; bad input is a usage error that writes nothing.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGUFReader, TokenType

from tinygpt import export
from tinygpt.checks.ch04.shared import chat_tokenizer
from tinygpt.pretraining.checkpoint import save_checkpoint
from test_export import random_gpt


@pytest.fixture(scope="module", params=[2, None], ids=["gqa", "mha"])
def written(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"gguf-{request.param}")
    model, tokenizer = random_gpt(request.param), chat_tokenizer()
    save_checkpoint(root / "run", model)
    tokenizer.save(root / "run" / "tokenizer.json")
    export.main(["gguf", str(root / "run"), str(root / "model.gguf")])
    return model, tokenizer, GGUFReader(root / "model.gguf")


def _field(reader: GGUFReader, key: str):
    return reader.get_field(key).contents()


def _tensors(reader: GGUFReader) -> dict[str, torch.Tensor]:
    return {t.name: torch.from_numpy(np.array(t.data)).float() for t in reader.tensors}


def _rope_pairs(x: torch.Tensor, base: float) -> torch.Tensor:
    """RoPE on interleaved pairs (2i, 2i + 1), llama.cpp's LLAMA rope; x is (B, H, T, D)."""
    d, t = x.shape[-1], x.shape[-2]
    angles = torch.arange(t)[:, None] * base ** (-torch.arange(0, d, 2) / d)
    cos, sin = angles.cos(), angles.sin()
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


def _llama_forward(reader: GGUFReader, idx: torch.Tensor, unpermute: bool = False) -> torch.Tensor:
    w = _tensors(reader)
    n_layer = int(_field(reader, "llama.block_count"))
    heads, kv = int(_field(reader, "llama.attention.head_count")), int(_field(reader, "llama.attention.head_count_kv"))
    eps, base = float(_field(reader, "llama.attention.layer_norm_rms_epsilon")), float(_field(reader, "llama.rope.freq_base"))

    def norm(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    def undo(m, h):  # back to rotate-half rows: the wrong layout for llama.cpp's rope
        return m.reshape(h, m.shape[0] // h // 2, 2, m.shape[1]).transpose(1, 2).reshape(m.shape)

    x = w["token_embd.weight"][idx]
    b, t, _ = x.shape
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    for i in range(n_layer):
        p = f"blk.{i}."
        wq, wk = w[p + "attn_q.weight"], w[p + "attn_k.weight"]
        if unpermute:
            wq, wk = undo(wq, heads), undo(wk, kv)
        h = norm(x, w[p + "attn_norm.weight"])
        q = (h @ wq.T).view(b, t, heads, -1).transpose(1, 2)
        k = (h @ wk.T).view(b, t, kv, -1).transpose(1, 2)
        v = (h @ w[p + "attn_v.weight"].T).view(b, t, kv, -1).transpose(1, 2)
        q, k = _rope_pairs(q, base), _rope_pairs(k, base)
        k, v = k.repeat_interleave(heads // kv, 1), v.repeat_interleave(heads // kv, 1)
        att = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
        out = att.masked_fill(~causal, float("-inf")).softmax(-1) @ v
        x = x + out.transpose(1, 2).reshape(b, t, -1) @ w[p + "attn_output.weight"].T
        h = norm(x, w[p + "ffn_norm.weight"])
        gate, up = h @ w[p + "ffn_gate.weight"].T, h @ w[p + "ffn_up.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "ffn_down.weight"].T
    return norm(x, w["output_norm.weight"]) @ w["token_embd.weight"].T  # no output.weight: tied


def test_metadata_and_tensors(written):
    model, _, reader = written
    c = model.config
    assert _field(reader, "general.architecture") == "llama"
    assert (int(_field(reader, "llama.embedding_length")), int(_field(reader, "llama.block_count")),
            int(_field(reader, "llama.feed_forward_length")),
            int(_field(reader, "llama.attention.head_count_kv")),
            int(_field(reader, "llama.context_length"))) == (c.n_embd, c.n_layer, c.hidden,
                                                              c.kv_heads, c.block_size)
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names and len(names) == 2 + 9 * c.n_layer
    assert all(t.data.dtype == np.float32 for t in reader.tensors)


def test_logits_match_a_llama_cpp_style_forward(written):
    model, _, reader = written
    idx = torch.randint(0, model.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model(idx)
    assert ours.std() > 0.5
    torch.testing.assert_close(_llama_forward(reader, idx), ours, atol=1e-4, rtol=0)
    assert (_llama_forward(reader, idx, unpermute=True) - ours).abs().max() > 1e-2


def test_vocabulary_merges_and_template(written):
    model, tokenizer, reader = written
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    merges = _field(reader, "tokenizer.ggml.merges")
    assert len(tokens) == model.config.vocab_size and len(merges) == len(tokenizer.merges)
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "llama-bpe"
    spell = export.bytes_to_unicode()
    for i in (0, 65, 255, 300, tokenizer.n_vocab - len(tokenizer.special_tokens) - 1):
        assert tokens[i] == "".join(spell[b] for b in tokenizer.vocab[i]), i
    for text, i in tokenizer.special_tokens.items():
        assert tokens[i] == text and types[i] == TokenType.CONTROL
    a, b = next(iter(tokenizer.merges))  # the first merge learned: rank 0
    assert merges[0] == f"{tokens[a]} {tokens[b]}"
    assert int(_field(reader, "tokenizer.ggml.eos_token_id")) == tokenizer.special_tokens["<|end|>"]
    assert _field(reader, "tokenizer.chat_template") == export.chat_template()


def test_bad_input_writes_nothing(written, tmp_path, capsys):
    taken = tmp_path / "taken.gguf"
    taken.write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        export.main(["gguf", str(tmp_path / "nowhere"), str(tmp_path / "a.gguf")])
    assert exit_info.value.code == 2 and not (tmp_path / "a.gguf").exists()
    with pytest.raises(SystemExit):
        export.main(["gguf", str(tmp_path / "nowhere"), str(taken)])
    assert "exists" in capsys.readouterr().err and taken.read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["taken.gguf"]
