"""The CPU matmul routing of chapter 3's trainer: oneDNN linears equal F.linear, forward and back."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinygpt.pretraining import GPT, GPTConfig, lm_loss
from tinygpt.kernels import cpu_matmul
from tinygpt.kernels.cpu_matmul import OneDNNLinear, linear, onednn_linears, resolve_backend

needs_onednn = pytest.mark.skipif(not cpu_matmul.onednn_available(), reason="torch without oneDNN")


def _grads(fn, *tensors):
    for t in tensors:
        t.grad = None
    out = fn(*tensors)
    out.backward(torch.ones_like(out) + torch.arange(out.shape[-1], dtype=out.dtype))
    return out.detach(), [t.grad.clone() for t in tensors]


@needs_onednn
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bias", [False, True])
def test_onednn_linear_matches_f_linear_forward_and_backward(seed, bias):
    gen = torch.Generator().manual_seed(seed)
    lead = torch.randint(1, 6, (torch.randint(1, 3, (1,), generator=gen).item(),), generator=gen)
    n_in, n_out = (int(v) for v in torch.randint(1, 70, (2,), generator=gen))
    x = torch.randn(*lead.tolist(), n_in, generator=gen, requires_grad=True)
    w = torch.randn(n_out, n_in, generator=gen, requires_grad=True)
    b = torch.randn(n_out, generator=gen, requires_grad=True) if bias else None
    tensors = [t for t in (x, w, b) if t is not None]
    ours = _grads(lambda *t: linear(*t), *tensors)
    ref = _grads(lambda *t: F.linear(*t), *tensors)
    torch.testing.assert_close(ours[0], ref[0], atol=1e-5, rtol=1e-5)
    for got, want in zip(ours[1], ref[1]):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


@needs_onednn
def test_a_strided_input_and_a_transposed_weight_are_fine():
    x = torch.randn(8, 20, requires_grad=True)
    w = torch.randn(6, 12, requires_grad=True)  # (in, out), used transposed: GPT-2's Conv1D layout
    ours = _grads(lambda x, w: linear(x[:, ::2][:, :6], w.t()), x, w)  # a non-contiguous input
    ref = _grads(lambda x, w: F.linear(x[:, ::2][:, :6], w.t()), x, w)
    torch.testing.assert_close(ours[0], ref[0], atol=1e-5, rtol=1e-5)
    for got, want in zip(ours[1], ref[1]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@needs_onednn
def test_inside_the_block_the_model_runs_on_onednn_and_gives_the_same_loss_and_gradients(
        monkeypatch):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=97, block_size=16, n_layer=2, n_head=2, n_embd=32))
    twin = copy.deepcopy(model)
    tokens = torch.randint(0, 97, (3, 16))
    lm_loss(twin(tokens), tokens).backward()
    calls = []
    matmul = cpu_matmul._matmul_t
    monkeypatch.setattr(cpu_matmul, "_matmul_t", lambda *a: calls.append(1) or matmul(*a))
    with onednn_linears(model) as routed:
        loss = lm_loss(model(tokens), tokens)
        loss.backward()
        assert all(type(m) is OneDNNLinear for m in model.modules() if isinstance(m, nn.Linear))
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    # qkv, out, gate_up and down in each block, and the head; x W^T, g W and g^T x for each
    assert routed == n_linear == 2 * 4 + 1 and len(calls) == 3 * n_linear
    assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear))
    assert model.state_dict().keys() == twin.state_dict().keys()
    torch.testing.assert_close(loss, lm_loss(twin(tokens), tokens), atol=1e-5, rtol=1e-5)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


@needs_onednn
def test_layers_are_restored_when_the_block_raises():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(RuntimeError, match="boom"):
        with onednn_linears(model):
            raise RuntimeError("boom")
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear]


@needs_onednn
def test_bf16_inputs_and_autocast_take_f_linear(monkeypatch):
    layer = nn.Sequential(nn.Linear(8, 4))
    calls = []
    matmul = cpu_matmul._matmul_t
    monkeypatch.setattr(cpu_matmul, "_matmul_t", lambda *a: calls.append(1) or matmul(*a))
    with onednn_linears(layer):
        x = torch.randn(3, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert layer(x).dtype == torch.bfloat16
        assert layer.to(torch.bfloat16)(x.bfloat16()).dtype == torch.bfloat16
        assert not calls
        with torch.no_grad():
            layer.float()(x)
        assert calls == [1]


def test_auto_is_onednn_on_amd_and_blas_on_intel(monkeypatch):
    monkeypatch.setattr(cpu_matmul.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu_matmul, "onednn_available", lambda: True)
    monkeypatch.setattr(cpu_matmul, "cpu_vendor", lambda: "AuthenticAMD")
    assert resolve_backend("auto") == "onednn"
    monkeypatch.setattr(cpu_matmul, "cpu_vendor", lambda: "GenuineIntel")
    assert resolve_backend("auto") == "blas"
    assert resolve_backend("onednn") == "onednn" and resolve_backend("blas") == "blas"


def test_blas_changes_nothing_and_bad_names_or_a_missing_onednn_are_clear_errors(monkeypatch):
    model = nn.Sequential(nn.Linear(4, 4))
    with onednn_linears(model, "blas") as routed:
        assert routed == 0 and type(model[0]) is nn.Linear
    with pytest.raises(ValueError, match="must be one of auto, onednn, blas"):
        resolve_backend("mkl")
    monkeypatch.setattr(cpu_matmul, "onednn_available", lambda: False)
    with pytest.raises(ValueError, match="no oneDNN"):
        resolve_backend("onednn")
    assert resolve_backend("auto") == "blas"


def test_the_cpu_vendor_is_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\n")
    assert cpu_matmul.cpu_vendor(info) == "AuthenticAMD"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n")
    assert cpu_matmul.cpu_vendor(info) == "GenuineIntel"


@needs_onednn
def test_torch_compile_keeps_the_onednn_matmul_as_one_call():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32, bias=False), nn.GELU(), nn.Linear(32, 8))
    x = torch.randn(5, 16)
    graphs = []

    def capture(gm, example_inputs):  # the traced graph and its autograd.Function bodies
        graphs.append("".join(m.code for m in gm.modules() if isinstance(m, torch.fx.GraphModule)))
        return gm.forward

    with onednn_linears(model):
        routed = torch.compile(model, backend=capture)(x)
    assert len(graphs) == 1 and graphs[0].count("tinygpt.matmul_t") >= 2
    assert "linear" not in graphs[0].replace("onednn_linear", "")
    torch.testing.assert_close(routed, model(x), atol=1e-5, rtol=1e-5)
