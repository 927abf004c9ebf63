"""The export command: a course checkpoint as a Hugging Face ``transformers`` Llama checkpoint.

    python -m tinygpt.export hf CHECKPOINT OUT_DIR
    python -m tinygpt.export hf .cache/runs/cpu-aligned exported/   # then, anywhere:
    # LlamaForCausalLM.from_pretrained("exported/"), AutoTokenizer.from_pretrained("exported/")

Hand-written infrastructure; chapter 6 builds on it, so that a learner can leave the
course's server and run the model with any tool that reads Hugging Face checkpoints. The
course GPT is LLaMA's shape (RoPE, RMSNorm, SwiGLU, no biases, grouped-query heads, tied
embeddings), so the export renames weights and splits the two fused matrices (``attn.qkv``
into q, k and v; ``mlp.gate_up`` into gate and up). RoPE needs no permutation: the course
rotates halves (feature ``i`` with ``i + D/2``, GPT-NeoX's layout), as HF's Llama does;
Meta's original checkpoints rotate interleaved pairs, which is why HF's own converter
permutes their q and k rows. The tokenizer becomes a ``tokenizer.json`` of the
``tokenizers`` library (byte-level BPE with the same merges in rank order, the same split
regex, the control tokens at their ids) plus the course's chat template, so HF encodes
text to the course's ids. One difference: HF always reads control-token text such as
``<|user|>`` as the control token, as the course's ``encode(text, allowed_special="all")``
does; the course's default ``encode`` refuses such text and ``encode_ordinary`` (which
the chat template uses for message content) spells it out as plain text.

    python -m tinygpt.export gguf CHECKPOINT OUT.gguf   # llama.cpp's single-file format

The GGUF export (``gguf``, the format's own Python writer) holds the same float32
weights under llama.cpp's tensor names, with the byte-level BPE vocabulary, merges and
chat template as metadata. llama.cpp's Llama rotates *interleaved* pairs (feature
``2i`` with ``2i + 1``), so there the q and k rows of each head are permuted from the
course's halves into pairs (row ``i`` to ``2i``, row ``i + D/2`` to ``2i + 1``), as
llama.cpp's own converter does for Hugging Face checkpoints. Mixture-of-experts models
are refused (Llama has no experts; Mixtral's format would be another exporter).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import gguf
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer
from transformers import PreTrainedTokenizerFast

from tinygpt.pretraining.checkpoint import load_model
from tinygpt.pretraining.model import GPT
from tinygpt.pretraining.trainer import run_tokenizer
from tinygpt.tokenizer import Tokenizer
from tinygpt.tokenizer.control import CONTROL_TOKENS, END, END_THINK, EOT, ROLES, THINK
from tinygpt.tokenizer.openai import O200K_PATTERN
from tinygpt.tokenizer.primitives import GPT4_PATTERN

# llama.cpp picks its pre-tokenizer regex by name: these are the course's two patterns
GGUF_PRE = {GPT4_PATTERN: "llama-bpe", O200K_PATTERN: "gpt-4o"}
GGUF_NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
              "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def hf_config(model: GPT, tokenizer: Tokenizer) -> dict:
    """``config.json`` of the ``LlamaForCausalLM`` with the course model's shape."""
    c = model.config
    eot = tokenizer.special_tokens.get(EOT)
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": c.vocab_size, "hidden_size": c.n_embd, "intermediate_size": c.hidden,
        "num_hidden_layers": c.n_layer, "num_attention_heads": c.n_head,
        "num_key_value_heads": c.kv_heads, "head_dim": c.head_dim,
        "max_position_embeddings": c.block_size, "rms_norm_eps": c.norm_eps,
        # rope_theta for transformers 4, rope_parameters for 5
        "rope_theta": c.rope_base, "rope_parameters": {"rope_type": "default",
                                                       "rope_theta": c.rope_base},
        "hidden_act": "silu", "attention_bias": False, "attention_dropout": 0.0,
        "mlp_bias": False, "tie_word_embeddings": True, "torch_dtype": "float32",
        "initializer_range": 0.02, "use_cache": True,
        # <|endoftext|> separates documents in pre-training: it is both ends of one
        "bos_token_id": eot, "eos_token_id": eot, "pad_token_id": None,
    }


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The weights under HF Llama's names, fused matrices split; the tied matrix once."""
    c = model.config
    sd = {n: p.detach().float().cpu() for n, p in model.named_parameters()}
    q, kv = c.n_head * c.head_dim, c.kv_heads * c.head_dim
    out = {"model.embed_tokens.weight": sd["tok_emb.weight"], "model.norm.weight": sd["norm.weight"]}
    for i in range(c.n_layer):
        src, dst = f"blocks.{i}.", f"model.layers.{i}."
        wq, wk, wv = sd[src + "attn.qkv.weight"].split([q, kv, kv], dim=0)
        gate, up = sd[src + "mlp.gate_up.weight"].chunk(2, dim=0)
        out.update({
            dst + "input_layernorm.weight": sd[src + "norm1.weight"],
            dst + "self_attn.q_proj.weight": wq, dst + "self_attn.k_proj.weight": wk,
            dst + "self_attn.v_proj.weight": wv,
            dst + "self_attn.o_proj.weight": sd[src + "attn.out.weight"],
            dst + "post_attention_layernorm.weight": sd[src + "norm2.weight"],
            dst + "mlp.gate_proj.weight": gate, dst + "mlp.up_proj.weight": up,
            dst + "mlp.down_proj.weight": sd[src + "mlp.down.weight"],
        })
    return {k: v.contiguous() for k, v in out.items()}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map of the 256 bytes to printable characters, which byte-level BPE spells tokens in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def byte_level_names(tokenizer: Tokenizer) -> dict[int, str]:
    """Each ordinary token's bytes spelt in GPT-2's printable characters, by id."""
    spell = bytes_to_unicode()
    return {i: "".join(spell[b] for b in tokenizer.vocab[i])
            for i in range(256 + len(tokenizer.merges))}


def oniguruma(pattern: str) -> str:
    """``pattern`` in the dialect of ``tokenizers``' regex engine (Oniguruma), which reads
    ``{1,3}+`` as a repeated interval, not a possessive one: unchecked, " 1616" would be
    one piece there and two (" 161", "6") here. No backtracking can happen into a count
    that ends its alternative, so the plain interval splits the same."""
    return pattern.replace("{1,3}+", "{1,3}")


def hf_tokenizer(tokenizer: Tokenizer) -> HFTokenizer:
    """The course tokenizer as a ``tokenizers`` byte-level BPE with the same ids."""
    names = byte_level_names(tokenizer)
    vocab = {name: i for i, name in names.items()}
    if len(vocab) != len(names):
        raise ValueError("two merges produce the same bytes; a BPE vocabulary needs unique tokens")
    clash = set(vocab) & set(tokenizer.special_tokens)
    if clash:
        raise ValueError(f"special tokens {sorted(clash)} are also ordinary tokens")
    vocab.update(tokenizer.special_tokens)  # so that add_special_tokens keeps their ids
    merges = [(names[a], names[b]) for a, b in tokenizer.merges]  # rank order
    hf = HFTokenizer(models.BPE(vocab, merges, fuse_unk=False, byte_fallback=False,
                                ignore_merges=False))
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(oniguruma(tokenizer.pattern)), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(s, special=True, normalized=False)
                           for s in sorted(tokenizer.special_tokens, key=tokenizer.special_tokens.get)])
    for s, i in tokenizer.special_tokens.items():
        if hf.token_to_id(s) != i:
            raise ValueError(f"special token {s!r} got id {hf.token_to_id(s)}, not {i}")
    return hf


def chat_template() -> str:
    """``tinygpt.posttraining.template.render`` as the Jinja template HF's apply_chat_template runs."""
    roles = json.dumps(ROLES)
    return ("{%- set roles = " + roles + " -%}"
            "{%- for m in messages -%}{{ roles[m['role']] }}"
            "{%- if m['thinking'] is defined -%}" + THINK + "{{ m['thinking'] }}" + END_THINK
            + "{%- endif -%}{{ m['content'] }}" + END + "{%- endfor -%}"
            "{%- if add_generation_prompt -%}" + ROLES["assistant"] + "{%- endif -%}")


def _write_hf(model: GPT, tokenizer: Tokenizer, folder: Path) -> None:
    config = hf_config(model, tokenizer)
    (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    specials = tokenizer.special_tokens
    stops = [specials[t] for t in (EOT, END) if t in specials]  # a chat turn ends at <|end|>
    generation = {"bos_token_id": config["bos_token_id"], "eos_token_id": stops or None,
                  "do_sample": False}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=1) + "\n")
    save_file(hf_state_dict(model), folder / "model.safetensors", metadata={"format": "pt"})
    extra = {"bos_token": EOT, "eos_token": EOT} if EOT in specials else {}
    if all(t in specials for t in CONTROL_TOKENS):
        extra["chat_template"] = chat_template()
    fast = PreTrainedTokenizerFast(tokenizer_object=hf_tokenizer(tokenizer),
                                   model_max_length=model.config.block_size,
                                   clean_up_tokenization_spaces=False, **extra)
    fast.save_pretrained(folder)


def export_hf(model: GPT, tokenizer: Tokenizer, out_dir: str | Path) -> Path:
    """Write ``model`` and ``tokenizer`` to ``out_dir`` (absent or empty) as an HF Llama checkpoint.

    Everything is written to a temporary folder beside ``out_dir`` and renamed into place,
    so a failure leaves no half-written folder. ``ValueError`` for what Llama cannot hold.
    """
    out_dir = Path(out_dir)
    if model.config.n_expert:
        raise ValueError(f"a mixture-of-experts model ({model.config.n_expert} experts) has no "
                         "Llama equivalent; export a dense checkpoint")
    if tokenizer.n_vocab > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.n_vocab} ids, the model only "
                         f"{model.config.vocab_size}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"{out_dir} exists and is not an empty folder; pick a new OUT_DIR")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _write_hf(model, tokenizer, staging)
        os.replace(staging, out_dir)  # replaces an empty out_dir too
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def interleave_rope_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """q or k rows of each head from rotate-half order (i with i + D/2) to pairs (2i, 2i + 1)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def gguf_vocabulary(tokenizer: Tokenizer, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """The tokens (byte-level spelling, ``vocab_size`` of them), their types and the merges."""
    names = byte_level_names(tokenizer)
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]  # ids the embedding has and the tokenizer not
    types = [int(gguf.TokenType.UNUSED)] * vocab_size
    for i, name in names.items():
        tokens[i], types[i] = name, int(gguf.TokenType.NORMAL)
    for text, i in tokenizer.special_tokens.items():
        tokens[i], types[i] = text, int(gguf.TokenType.CONTROL)
    merges = [f"{names[a]} {names[b]}" for a, b in tokenizer.merges]  # rank order
    return tokens, types, merges


def export_gguf(model: GPT, tokenizer: Tokenizer, out_file: str | Path) -> Path:
    """Write ``model`` and ``tokenizer`` as one llama.cpp GGUF file (float32), atomically."""
    c, out_file = model.config, Path(out_file)
    if c.n_expert:
        raise ValueError("a mixture-of-experts model has no Llama GGUF equivalent")
    if tokenizer.pattern not in GGUF_PRE:
        raise ValueError("llama.cpp names its pre-tokenizers; this tokenizer's split pattern "
                         "is neither GPT-4's nor o200k's")
    if tokenizer.n_vocab > c.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.n_vocab} ids, the model only {c.vocab_size}")
    if out_file.exists():
        raise ValueError(f"{out_file} exists; pick a new file name")
    staging = out_file.with_name(f".{out_file.name}.tmp")
    try:
        _write_gguf(model, tokenizer, staging)
        os.replace(staging, out_file)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return out_file


def _write_gguf(model: GPT, tokenizer: Tokenizer, path: Path) -> None:
    c = model.config
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tinygpt")
    writer.add_context_length(c.block_size)
    writer.add_embedding_length(c.n_embd)
    writer.add_block_count(c.n_layer)
    writer.add_feed_forward_length(c.hidden)
    writer.add_head_count(c.n_head)
    writer.add_head_count_kv(c.kv_heads)
    writer.add_rope_dimension_count(c.head_dim)
    writer.add_rope_freq_base(c.rope_base)
    writer.add_layer_norm_rms_eps(c.norm_eps)
    writer.add_vocab_size(c.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens, types, merges = gguf_vocabulary(tokenizer, c.vocab_size)
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(GGUF_PRE[tokenizer.pattern])
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    specials = tokenizer.special_tokens
    if EOT in specials:
        writer.add_bos_token_id(specials[EOT])
        writer.add_eos_token_id(specials.get(END, specials[EOT]))  # a chat turn ends at <|end|>
    if all(t in specials for t in CONTROL_TOKENS):
        writer.add_chat_template(chat_template())
    for name, w in hf_state_dict(model).items():
        if name.endswith("q_proj.weight"):
            w = interleave_rope_rows(w, c.n_head)
        elif name.endswith("k_proj.weight"):
            w = interleave_rope_rows(w, c.kv_heads)
        writer.add_tensor(gguf_name(name), w.contiguous().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_name(hf_name: str) -> str:
    """llama.cpp's name for an HF Llama weight (``model.layers.3.mlp.up_proj.weight`` ->
    ``blk.3.ffn_up.weight``)."""
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    _, _, layer, rest = hf_name.split(".", 3)
    return f"blk.{layer}.{GGUF_NAMES[rest.removesuffix('.weight')]}.weight"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    hf = formats.add_parser("hf", help="a Hugging Face transformers Llama checkpoint")
    hf.add_argument("checkpoint", type=Path, help="a course checkpoint folder (config.json, "
                    "model.safetensors, tokenizer.json), e.g. .cache/runs/cpu-aligned")
    hf.add_argument("out", type=Path, help="the new folder (absent or empty)")
    gg = formats.add_parser("gguf", help="a llama.cpp GGUF file (float32)")
    gg.add_argument("checkpoint", type=Path, help="a course checkpoint folder")
    gg.add_argument("out", type=Path, help="the new .gguf file")
    args = parser.parse_args(argv)
    out = args.out
    if args.format == "hf" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        parser.error(f"{out} exists and is not an empty folder; pick a new OUT_DIR")
    if args.format == "gguf" and out.exists():
        parser.error(f"{out} exists; pick a new file name")
    try:
        model = load_model(args.checkpoint)
        tokenizer = run_tokenizer(args.checkpoint)
    except (ValueError, OSError, KeyError, TypeError, SafetensorError) as err:
        parser.error(f"{err}\n(a course checkpoint folder holds config.json and "
                     "model.safetensors; `make train` writes one to .cache/runs/cpu)")
    try:
        (export_hf if args.format == "hf" else export_gguf)(model, tokenizer, out)
    except (ValueError, OSError) as err:
        parser.error(str(err))
    how = (f"transformers.LlamaForCausalLM.from_pretrained({str(out)!r})" if args.format == "hf"
           else f"llama.cpp (llama-cli -m {out}) or gguf.GGUFReader")
    print(f"exported {args.checkpoint} to {out}: load it with {how}")
    return out


if __name__ == "__main__":
    main()
