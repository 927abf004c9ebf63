"""``python -m tinygpt.export hf``: the exported Llama checkpoint is the course model.

A small random course GPT (with grouped-query heads and without) and the chapter-4 chat
tokenizer are saved as a course checkpoint and exported with the command's ``main``.
Then ``transformers`` loads the folder offline and must agree with the course: logits
within 1e-4 on random batches (one token, a batch of one, the full context), greedy
``generate`` gives the tokens of the course's own greedy loop, ``AutoTokenizer`` gives
the course tokenizer's ids (control-token text included, as ``encode`` with
``allowed_special="all"``) and its chat template renders the course's. Bad input is a
usage error (exit status 2) that leaves no folder behind.
"""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from tinygpt import export
from tinygpt.checks.ch04.shared import chat_tokenizer
from tinygpt.posttraining.template import encode_chat, render
from tinygpt.pretraining.checkpoint import save_checkpoint
from tinygpt.pretraining.config import GPTConfig
from tinygpt.pretraining.model import GPT
from tinygpt.tokenizer import Tokenizer
from tinygpt.tokenizer.control import CONTROL_TOKENS

TEXTS = [
    "Where does Wren Quill live? She lives in the old mill.",
    "  leading spaces, trailing spaces   ",
    "numbers 1234567 and 3.14159, dates 2024-01-31; it's, we'll, THEY'RE",
    "tabs\tand\r\nnewlines\n\n\nand unicode: héllo wörld, 日本語, emoji 🙂👍🏽",
    "<|user|>Where is it?<|end|><|assistant|>Here.<|end|><|endoftext|>",
    "control text inside words: a<|think|>b <|/think|> <|tool_call|>{}<|/tool_call|>",
    "almost control tokens: <|user| <user|> <||> |>",
    "",
    " ",
    "\n",
]

CHAT = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where does Wren Quill live?"},
        {"role": "assistant", "content": "In the mill.", "thinking": "a lookup"},
        {"role": "tool", "content": "mill"},
        {"role": "user", "content": "And 12 + 30?"}]


def random_gpt(n_kv_head: int | None, seed: int = 0) -> GPT:
    """A 2-layer course GPT with weights large enough that logits differ by whole units."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=384, block_size=32, n_layer=2, n_head=4,
                          n_kv_head=n_kv_head, n_embd=64, rope_base=500.0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15)
            else:  # norm gains: not all ones, so that a swapped norm would show
                p.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return chat_tokenizer()


@pytest.fixture(scope="module", params=[2, None], ids=["gqa", "mha"])
def exported(request, tmp_path_factory, tokenizer):
    """(course model, exported folder) for a model with and without grouped-query heads."""
    root = tmp_path_factory.mktemp(f"export-{request.param}")
    model = random_gpt(request.param)
    save_checkpoint(root / "run", model)
    tokenizer.save(root / "run" / "tokenizer.json")
    export.main(["hf", str(root / "run"), str(root / "hf")])
    return model, root / "hf"


def test_folder_and_config(exported, tokenizer):
    model, out = exported
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json"} <= names
    config = json.loads((out / "config.json").read_text())
    c = model.config
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"],
            config["num_attention_heads"], config["num_key_value_heads"]) == \
        (c.n_embd, c.hidden, c.n_layer, c.n_head, c.kv_heads)
    assert config["max_position_embeddings"] == c.block_size
    assert config["rope_theta"] == c.rope_base and config["tie_word_embeddings"] is True
    assert config["eos_token_id"] == tokenizer.special_tokens["<|endoftext|>"]


def test_logits_match(exported):
    model, out = exported
    hf = LlamaForCausalLM.from_pretrained(out).eval()
    assert hf.config.num_key_value_heads == model.config.kv_heads
    gen = torch.Generator().manual_seed(1)
    for shape in [(4, 32), (1, 17), (3, 1)]:
        idx = torch.randint(0, model.config.vocab_size, shape, generator=gen)
        with torch.no_grad():
            ours, theirs = model(idx), hf(idx).logits
        assert ours.std() > 0.5  # weights large enough that a wrong layout would show
        torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)


def test_rope_needs_no_permutation(exported):
    """The course rotates halves as HF does: Meta's interleaved-pair permutation breaks it."""
    model, out = exported
    hf = LlamaForCausalLM.from_pretrained(out).eval()
    c = model.config

    def permute(w, heads):  # HF's convert_llama_weights_to_hf.py
        return w.view(heads, c.head_dim // 2, 2, w.shape[1]).transpose(1, 2).reshape(w.shape)

    with torch.no_grad():
        for layer in hf.model.layers:
            layer.self_attn.q_proj.weight.copy_(permute(layer.self_attn.q_proj.weight, c.n_head))
            layer.self_attn.k_proj.weight.copy_(permute(layer.self_attn.k_proj.weight, c.kv_heads))
        idx = torch.randint(0, c.vocab_size, (2, 32), generator=torch.Generator().manual_seed(2))
        assert (hf(idx).logits - model(idx)).abs().max() > 1e-2


def test_greedy_generate_matches(exported, tokenizer):
    model, out = exported
    hf = LlamaForCausalLM.from_pretrained(out).eval()
    hf.generation_config.eos_token_id = None  # 12 tokens each, as the course loop makes
    for prompt in ["Where does", "The bank by the river", "<|user|>Hi<|end|><|assistant|>"]:
        ids = torch.tensor([tokenizer.encode(prompt, allowed_special="all")])
        with torch.no_grad():
            theirs = hf.generate(ids, max_new_tokens=12, do_sample=False)
            ours = ids
            for _ in range(12):
                ours = torch.cat([ours, model(ours)[:, -1].argmax(-1, keepdim=True)], dim=1)
        assert theirs.tolist() == ours.tolist(), prompt


def test_tokenizer_matches(exported, tokenizer):
    _, out = exported
    hf = AutoTokenizer.from_pretrained(out)
    for text in TEXTS:
        ids = tokenizer.encode(text, allowed_special="all")
        assert hf(text)["input_ids"] == ids, text
        assert hf.decode(ids) == tokenizer.decode(ids)
    assert hf.convert_tokens_to_ids(list(CONTROL_TOKENS)) == \
        [tokenizer.special_tokens[t] for t in CONTROL_TOKENS]


def test_tokenizer_with_many_merges_matches():
    """A tokenizer with more merges than the chat one, on the texts, in ``tokenizers``."""
    course = Tokenizer.train(" ".join(TEXTS[:4]) * 3, 256 + 150, special_tokens=["<|endoftext|>"])
    hf = export.hf_tokenizer(course)
    for text in TEXTS + ["".join(TEXTS)]:
        assert hf.encode(text).ids == course.encode(text, allowed_special="all"), text


@pytest.mark.parametrize("text", [" 1616", "1113 and 36,201", "123456789", "x12345y", "٣٤٥٦٧"])
def test_numbers_split_in_threes_as_the_course_does(text):
    """Oniguruma reads ``{1,3}+`` as a repeated interval: every digit run would be one piece."""
    import regex
    hf = export.hf_tokenizer(chat_tokenizer())
    pieces = [p for p, _ in hf.pre_tokenizer.pre_tokenize_str(text)]
    spell = export.bytes_to_unicode()
    want = ["".join(spell[b] for b in p.encode()) for p in
            regex.findall(chat_tokenizer().pattern, text)]
    assert pieces == want


def test_chat_template_matches(exported, tokenizer):
    _, out = exported
    hf = AutoTokenizer.from_pretrained(out)
    text = hf.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert text == render(CHAT, generation_prompt=True)
    assert hf(text)["input_ids"] == encode_chat(tokenizer, CHAT, generation_prompt=True).ids


def _usage_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        export.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_bad_input_is_a_usage_error(tmp_path, capsys, tokenizer):
    run = tmp_path / "run"
    save_checkpoint(run, random_gpt(2))
    tokenizer.save(run / "tokenizer.json")
    for folder in [tmp_path / "missing", tmp_path]:  # absent; a folder without config.json
        err = _usage_error(capsys, ["hf", str(folder), str(tmp_path / "out")])
        assert "not a checkpoint" in err and "Traceback" not in err
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "config.json").write_text('{"format": "something else"}')
    assert "not a tinygpt-checkpoint" in _usage_error(capsys, ["hf", str(tmp_path / "fake"),
                                                                str(tmp_path / "out")])
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert "not an empty folder" in _usage_error(capsys, ["hf", str(run), str(full)])
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    assert "not an empty folder" in _usage_error(capsys, ["hf", str(run),
                                                          str(full / "keep.txt")])
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()  # an empty OUT_DIR is fine
    export.main(["hf", str(run), str(tmp_path / "empty")])
    assert (tmp_path / "empty" / "model.safetensors").exists()


def test_failure_leaves_no_half_written_folder(tmp_path, tokenizer, monkeypatch):
    moe = GPT(GPTConfig(vocab_size=384, block_size=16, n_layer=1, n_head=2, n_embd=32,
                        n_expert=2, top_k=1))
    with pytest.raises(ValueError, match="mixture-of-experts"):
        export.export_hf(moe, tokenizer, tmp_path / "moe")

    def broken(model, tokenizer, folder):
        (folder / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(export, "_write_hf", broken)
    with pytest.raises(OSError, match="disk full"):
        export.export_hf(random_gpt(None), tokenizer, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
