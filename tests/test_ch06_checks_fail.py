"""Every chapter 6 check rejects a plausible wrong answer (a test must be able to fail)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from tinygpt.checks import ch06 as checks
from tinygpt.deployment import quantize as q
from tinygpt.deployment import quantized as qm
from tinygpt.pretraining.config import GPTConfig
from tinygpt.pretraining.model import GPT
from conftest import mutant_tests


def _int8_over_128(w):  # the grid's top is never used
    qv, s = q.quantize_int8(w)
    s = s * 127 / 128
    return torch.round(w.float() / s[:, None]).clamp(-127, 127).to(torch.int8), s


def _int8_floor(w):  # truncates instead of rounding: errs by up to a whole step
    qv, s = q.quantize_int8(w)
    return torch.trunc(w.float() / s[:, None]).clamp(-127, 127).to(torch.int8), s


def _int8_per_tensor(w):  # one scale for the whole matrix: small rows lose their precision
    s = (w.abs().max() / 127).expand(w.shape[0]).clone().float()
    return torch.round(w.float() / s[:, None]).clamp(-127, 127).to(torch.int8), s


def _int8_zero_row_nan(w):  # a row of zeros divides by zero
    s = w.float().abs().amax(1) / 127
    return torch.round(w.float() / s[:, None]).nan_to_num(0).clamp(-127, 127).to(torch.int8), s


def _int8_accepting_1d(w):
    return q.quantize_int8(w if w.dim() == 2 else w[None])


def _dequant8_transposed_scale(qv, s):  # scales the columns instead of the rows
    return qv.float() * s[: qv.shape[1]].float() if qv.shape[0] >= qv.shape[1] else qv.float()


def _pack_high_first(qv):
    if qv.is_floating_point() or qv.shape[-1] % 2 or (qv.numel() and (qv.min() < 0 or qv.max() > 15)):
        raise ValueError("bad")
    qv = qv.to(torch.uint8)
    return (qv[..., 0::2] << 4) | qv[..., 1::2]


def _unpack_high_first(p):
    if p.dtype != torch.uint8:
        raise ValueError("bad")
    return torch.stack([p >> 4, p & 15], dim=-1).flatten(-2)


def _pack_wrapping(qv):  # 16 silently becomes 0
    if qv.is_floating_point() or qv.shape[-1] % 2:
        raise ValueError("bad")
    return q.pack_int4(qv & 15)


def _int4_without_zero_in_range(w, group_size=64, symmetric=False):  # 0.0 is not exact
    if symmetric:
        return q.quantize_int4(w, group_size, True)
    n, k = w.shape
    qw = q.quantize_int4(w, group_size)
    g = w.float().reshape(n, k // group_size, group_size)
    lo, hi = g.amin(-1), g.amax(-1)
    scale = torch.where(hi > lo, (hi - lo) / 15, torch.ones_like(lo))
    zero = torch.round(-lo / scale).clamp(0, 15)
    values = (torch.round(g / scale[..., None]) + zero[..., None]).clamp(0, 15)
    return q.Int4Weight(q.pack_int4(values.reshape(n, k).to(torch.uint8)), scale,
                        zero.to(torch.uint8), qw.group_size)


def _int4_sym_over_8(w, group_size=64, symmetric=False):  # clips the largest weight
    if not symmetric:
        return q.quantize_int4(w, group_size)
    n, k = w.shape
    qw = q.quantize_int4(w, group_size, True)
    g = w.float().reshape(n, k // group_size, group_size)
    scale = g.abs().amax(-1) / 8
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    values = (torch.round(g / scale[..., None]) + 8).clamp(0, 15)
    return q.Int4Weight(q.pack_int4(values.reshape(n, k).to(torch.uint8)), scale, qw.zeros,
                        group_size)


def _int4_groups_down_columns(w, group_size=64, symmetric=False):  # groups the wrong axis
    if w.shape[0] % group_size == 0 and w.shape[0] != w.shape[1]:
        qt = q.quantize_int4(w.T.contiguous(), group_size, symmetric)
        return qt
    return q.quantize_int4(w + 0.003 * w.abs().max(), group_size, symmetric)


def _int4_any_group(w, group_size=64, symmetric=False):  # a group size that does not divide
    n, k = w.shape
    if k % group_size:
        group_size = k
    return q.quantize_int4(w, group_size if group_size % 2 == 0 else k, symmetric)


def _dequant4_ignoring_zero(weight):
    return q.dequantize_int4(q.Int4Weight(weight.packed, weight.scales,
                                          torch.zeros_like(weight.zeros), weight.group_size))


class _LinearWithoutScales(qm.QuantLinear):
    def forward(self, x):
        return F.linear(x, self.qweight.float() if self.bits == 8 else self.dequantized())


class _LinearAsParameters(qm.QuantLinear):  # float parameters: neither small nor frozen
    def __init__(self, in_features, out_features, bits=8, group_size=64):
        super().__init__(in_features, out_features, bits, group_size)
        self.kept = nn.Parameter(torch.zeros(out_features, in_features))


class _LinearIgnoringSymmetric(qm.QuantLinear):
    @classmethod
    def from_linear(cls, linear, bits=8, group_size=64, symmetric=False):
        return super().from_linear(linear, bits, group_size, False)


class _LinearAlwaysFloat32(qm.QuantLinear):
    def dequantized(self, dtype=torch.float32):
        return super().dequantized(torch.float32)


def _quantize_head_too(model, bits=8, group_size=64, head=False, symmetric=False):
    return qm.quantize_model(model, bits, group_size, True, symmetric)


def _quantize_attention_only(model, bits=8, group_size=64, head=False, symmetric=False):
    if bits not in (4, 8):
        raise ValueError("bits")
    for block in model.blocks:
        block.attn.qkv = qm.QuantLinear.from_linear(block.attn.qkv, bits, group_size, symmetric)
        block.attn.out = qm.QuantLinear.from_linear(block.attn.out, bits, group_size, symmetric)
    return model


def _quantize_partly_on_error(model, bits=8, group_size=64, head=False, symmetric=False):
    if bits not in (4, 8):
        raise ValueError("bits")
    for name, m in list(model.named_modules()):  # replaces layer by layer, then fails midway
        if type(m) is nn.Linear and name != "lm_head":
            group = group_size
            while bits == 4 and group > 2 and m.in_features % group:
                group //= 2
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr,
                    qm.QuantLinear.from_linear(m, bits, group, symmetric))
    return model


def _bytes_tied_twice(model):
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _bytes_of_parameters(model):  # forgets the integer buffers
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _bytes_with_every_buffer(model):  # counts the RoPE tables that are not saved
    return qm.weight_bytes(model) + sum(
        b.numel() * b.element_size() for n, b in model.named_buffers()
        if n.split(".")[-1] not in dict(model.state_dict()) and n not in model.state_dict())


def _save_with_head_copy(model, directory):  # the tied matrix twice
    directory = qm.save_quantized(model, directory)
    from safetensors.torch import save_file
    tensors = load_file(directory / "model.safetensors")
    tensors["lm_head.weight"] = tensors["tok_emb.weight"].clone()
    save_file(tensors, directory / "model.safetensors")
    return directory


def _load_trusting_the_file(directory, device="cpu"):  # torch's error, or a silent mismatch
    directory = Path(directory)
    meta = json.loads((directory / "config.json").read_text())
    model = GPT(GPTConfig.from_dict(meta["model"]))
    for name, scheme in meta["layers"].items():
        linear = model.get_submodule(name)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, qm.QuantLinear(
            linear.in_features, linear.out_features, scheme["bits"], scheme["group_size"] or 64))
    model.load_state_dict(load_file(directory / "model.safetensors"), strict=False)
    return model.eval()


def _load_in_training_mode(directory, device="cpu"):
    return qm.load_quantized(directory, device).train()


MUTANTS = [
    (checks.check_int8, (_int8_over_128, q.dequantize_int8)),
    (checks.check_int8, (_int8_floor, q.dequantize_int8)),
    (checks.check_int8, (_int8_per_tensor, q.dequantize_int8)),
    (checks.check_int8, (_int8_zero_row_nan, q.dequantize_int8)),
    (checks.check_int8, (_int8_accepting_1d, q.dequantize_int8)),
    (checks.check_int8, (q.quantize_int8, _dequant8_transposed_scale)),
    (checks.check_pack_int4, (_pack_high_first, _unpack_high_first)),
    (checks.check_pack_int4, (_pack_wrapping, q.unpack_int4)),
    (checks.check_pack_int4, (q.pack_int4, _unpack_high_first)),
    (checks.check_int4, (_int4_without_zero_in_range, q.dequantize_int4)),
    (checks.check_int4, (_int4_sym_over_8, q.dequantize_int4)),
    (checks.check_int4, (_int4_groups_down_columns, q.dequantize_int4)),
    (checks.check_int4, (_int4_any_group, q.dequantize_int4)),
    (checks.check_int4, (q.quantize_int4, _dequant4_ignoring_zero)),
    (checks.check_quant_linear, (_LinearWithoutScales,)),
    (checks.check_quant_linear, (_LinearAsParameters,)),
    (checks.check_quant_linear, (_LinearIgnoringSymmetric,)),
    (checks.check_quant_linear, (_LinearAlwaysFloat32,)),
    (checks.check_quantize_model, (_quantize_head_too, qm.weight_bytes)),
    (checks.check_quantize_model, (_quantize_attention_only, qm.weight_bytes)),
    (checks.check_quantize_model, (_quantize_partly_on_error, qm.weight_bytes)),
    (checks.check_weight_bytes, (_bytes_tied_twice,)),
    (checks.check_weight_bytes, (_bytes_of_parameters,)),
    (checks.check_weight_bytes, (_bytes_with_every_buffer,)),
    (checks.check_save_load, (_save_with_head_copy, qm.load_quantized, qm.quantize_model)),
    (checks.check_save_load, (qm.save_quantized, _load_trusting_the_file, qm.quantize_model)),
    (checks.check_save_load, (qm.save_quantized, _load_in_training_mode, qm.quantize_model)),
]


test_check_rejects_a_wrong_answer, test_every_check_has_a_mutant, test_stubs_fail_every_check = \
    mutant_tests(MUTANTS, checks)
