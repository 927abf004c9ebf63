"""Chapter 6's exported reference passes its own checks, and quantised models keep their
promises: perplexity within the chapter's limits on a trained model, files that reload
to the same logits, one loader for every folder, and clear errors for bad input."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from tinygpt import quantize as command
from tinygpt.checks import ch06 as checks
from tinygpt.deployment import quantize, quantized
from tinygpt.deployment.compare import compare, linear_bits, variant
from tinygpt.deployment.loading import folder_format, load, load_tokenizer
from tinygpt.pretraining import PRESETS
from tinygpt.pretraining.checkpoint import save_checkpoint
from tinygpt.pretraining.config import GPTConfig
from tinygpt.pretraining.model import GPT
from tinygpt.pretraining.trainer import cached_run, cached_run_folder
from conftest import reference_tests

REFERENCE = [
    (checks.check_int8, (quantize.quantize_int8, quantize.dequantize_int8)),
    (checks.check_pack_int4, (quantize.pack_int4, quantize.unpack_int4)),
    (checks.check_int4, (quantize.quantize_int4, quantize.dequantize_int4)),
    (checks.check_quant_linear, (quantized.QuantLinear,)),
    (checks.check_quantize_model, (quantized.quantize_model, quantized.weight_bytes)),
    (checks.check_weight_bytes, (quantized.weight_bytes,)),
    (checks.check_save_load, (quantized.save_quantized, quantized.load_quantized,
                              quantized.quantize_model)),
]


test_every_check_is_run_on_the_reference, test_reference_passes_its_checks = \
    reference_tests(REFERENCE, checks, range(12))


@pytest.fixture(scope="module")
def book_run():
    return cached_run(*PRESETS["book"])  # chapter 3's book run: the book build trains it first


@pytest.fixture(scope="module")
def book_folder(book_run):
    return cached_run_folder(*PRESETS["book"])


def test_perplexity_within_the_chapters_limits(book_run):
    rows = {r["scheme"]: r for r in compare(book_run.model, book_run.data.val,
                                            ["fp32", "int8", "int4 g64"], batches=8)}
    assert abs(rows["int8"]["perplexity_change_pct"]) < 1.0, rows
    assert abs(rows["int4 g64"]["perplexity_change_pct"]) < 5.0, rows
    assert rows["int8"]["memory_bytes"] < 0.5 * rows["fp32"]["memory_bytes"]
    assert 4.5 < linear_bits(variant(book_run.model, "int4 g64")) < 5.0


def test_every_4bit_pattern_round_trips():
    pairs = torch.cartesian_prod(torch.arange(16), torch.arange(16)).flatten()
    packed = quantize.pack_int4(pairs)
    assert sorted(packed.tolist()) == list(range(256))
    assert torch.equal(quantize.unpack_int4(packed), pairs.to(torch.uint8))


def _small() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_kv_head=1,
                         n_embd=32, mlp_hidden=48))


@pytest.mark.parametrize("bits,head", [(8, False), (4, False), (4, True)])
def test_one_loader_reads_float_and_quantised_folders(tmp_path, bits, head):
    model = _small().eval()
    save_checkpoint(tmp_path / "float", model)
    tokens = torch.randint(0, 64, (2, 16))
    assert folder_format(tmp_path / "float") == "tinygpt-checkpoint"
    with torch.no_grad():
        assert torch.equal(load(tmp_path / "float")(tokens), model(tokens))
        quantized.quantize_model(model, bits, group_size=32, head=head)
        quantized.save_quantized(model, tmp_path / "q")
        assert folder_format(tmp_path / "q") == "tinygpt-quantized"
        assert torch.equal(load(tmp_path / "q")(tokens), model(tokens))
    layers = json.loads((tmp_path / "q" / "config.json").read_text())["layers"]
    assert layers["blocks.0.mlp.down"] == {"bits": bits, "group_size": 16 if bits == 4 else None}
    assert ("lm_head" in layers) == head


def test_quantised_layer_under_compile_equals_eager():
    layer = quantized.QuantLinear.from_linear(torch.nn.Linear(64, 24, bias=False), bits=8)
    x = torch.randn(1, 64)
    compiled = torch.compile(layer, backend="aot_eager")  # traces the decode branch, no C compiler
    assert torch.allclose(compiled(x), layer(x), atol=1e-5)


def test_bad_folders_are_clear_errors(tmp_path):
    model = quantized.quantize_model(_small(), 8)
    folder = quantized.save_quantized(model, tmp_path / "q")
    tensors = load_file(folder / "model.safetensors")
    tensors["blocks.1.attn.qkv.scales"] = tensors["blocks.1.attn.qkv.scales"][:-1].clone()
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(ValueError, match="blocks.1.attn.qkv.scales"):
        load(folder)
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="cannot be read"):
        load(folder)
    with pytest.raises(ValueError, match="not a model folder"):
        load(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="without tokenizer.json"):
        load_tokenizer(folder)


def test_float_checkpoint_whose_config_disagrees_names_the_tensor(tmp_path):
    save_checkpoint(tmp_path, _small())
    config = json.loads((tmp_path / "config.json").read_text())
    config["model"]["mlp_hidden"] = 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="blocks.0.mlp.gate_up.weight is"):
        load(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="cannot be read"):
        load(tmp_path)


def test_quantize_command_writes_a_folder_that_loads(book_folder, tmp_path, capsys):
    report = command.main(["save", str(book_folder), str(tmp_path / "out"), "--bits", "4",
                           "--group-size", "64", "--batches", "2"])
    assert report["bytes_after"] < 0.5 * report["bytes_before"]
    assert math.isfinite(report["perplexity_after"])
    model, tok = load(tmp_path / "out"), load_tokenizer(tmp_path / "out")
    assert tok.n_vocab == model.config.vocab_size
    assert "4-bit model in" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["save", "/nonexistent/ckpt", "/tmp/x"], "no checkpoint there"),
    (["save", "CKPT", "OUT", "--group-size", "7", "--bits", "4"], "no even group size"),
])
def test_quantize_command_errors(book_folder, tmp_path, capsys, argv, message):
    argv = [str(book_folder) if a == "CKPT" else str(tmp_path / "out") if a == "OUT"
            else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        command.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "a failed command writes nothing"


@pytest.mark.gpu
def test_quantised_model_on_cuda_in_bf16_matches_the_cpu():
    model = quantized.quantize_model(_small().eval(), 4, group_size=16)
    tokens = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        cpu = model(tokens)
        model.cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            gpu = model(tokens.cuda())
    assert gpu.device.type == "cuda" and (gpu.float().cpu() - cpu).abs().max() < 5e-2
