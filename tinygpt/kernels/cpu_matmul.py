"""Which matrix-multiply library runs the model's ``nn.Linear`` layers on the CPU.

Used by chapter 3's trainer (pre-training); infrastructure rather than an exercise. PyTorch's
x86 wheels hand a float32 ``nn.Linear`` to MKL's ``sgemm``, and MKL picks its kernels
by CPU vendor: on AMD processors it runs a path that, measured on the course's 2-core
AMD EPYC (Zen 5, AVX-512), reaches about 100 GFLOP/s per core where oneDNN, the other
matmul library inside the same wheel, reaches about 215 at the course model's shapes.
Most of a small model's training step is matmuls, so the library is the single largest
factor in CPU step time (chapter 3's "How fast" section measures it).

``onednn_linears(model)`` is a context manager that, for its duration, runs every
float32 ``nn.Linear`` of ``model`` on the CPU through oneDNN, forward and backward
(:class:`OneDNNLinearFunction`: ``y = x W^T + b``, ``dx = g W``, ``dW = g^T x``,
``db = sum g``), also inside ``torch.compile``, which keeps each such matmul as one call
and fuses the element-wise work around it; anything else (CUDA, bf16, autocast) takes
``F.linear`` as before.
Parameters, state dicts and checkpoints are untouched: only the class of each layer
changes, and it changes back on exit. ``resolve_backend("auto")`` chooses oneDNN on AMD
x86 CPUs and the wheel's default elsewhere (on Intel CPUs MKL is fast).
"""
from __future__ import annotations

import platform
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from tinygpt.runtime import cpu_info

BACKENDS = ("auto", "onednn", "blas")  # blas: whatever torch was built with (MKL on x86)


def onednn_available() -> bool:
    """Whether this torch has oneDNN and its dense linear operator."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's vendor string ("AuthenticAMD", "GenuineIntel", ...), or "" if unknown."""
    return cpu_info(cpuinfo)["vendor"]


def resolve_backend(name: str) -> str:
    """"onednn" or "blas" for ``name`` in BACKENDS; "auto" is oneDNN on AMD x86 CPUs."""
    if name not in BACKENDS:
        raise ValueError(f"cpu_matmul must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "auto":
        amd = cpu_vendor() == "AuthenticAMD" and platform.machine().lower() in ("x86_64", "amd64")
        return "onednn" if amd and onednn_available() else "blas"
    if name == "onednn" and not onednn_available():
        raise ValueError("cpu_matmul 'onednn' was asked for, but this torch build has no oneDNN "
                         "(torch.backends.mkldnn.is_available() is False); use 'blas' or 'auto'")
    return name


def _plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` (2-D) if it is row- or column-major, which oneDNN reads in place; else a copy."""
    return t if t.is_contiguous() or t.t().is_contiguous() else t.contiguous()


@torch.library.custom_op("tinygpt::matmul_t", mutates_args=())
def _matmul_t(a: torch.Tensor, b: torch.Tensor, bias: Optional[torch.Tensor] = None
              ) -> torch.Tensor:
    """a @ b^T (+ bias) by oneDNN; a (M, K), b (N, K), any strides.

    A custom operator, so that ``torch.compile`` keeps it as one opaque call (and fuses
    the element-wise work around it) instead of lowering it to its own matmul.
    """
    return torch.ops.mkldnn._linear_pointwise(_plain(a), _plain(b), bias, "none", [], "")


@_matmul_t.register_fake
def _(a, b, bias=None):
    return a.new_empty(a.shape[0], b.shape[0])


class OneDNNLinearFunction(torch.autograd.Function):
    """``F.linear`` for float32 CPU tensors with oneDNN matmuls in both directions."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        x2 = x.reshape(-1, x.shape[-1])
        ctx.save_for_backward(x2, weight)
        return _matmul_t(x2, weight, bias).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x2, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _matmul_t(g2, weight.t()).view(*grad.shape[:-1], weight.shape[1])
        if ctx.needs_input_grad[1]:
            # dW = g^T x sums over the rows of both, and oneDNN wants its first operand
            # row-major over the summed axis: it copies that one. Copy the narrower.
            n_out, n_in = weight.shape
            dw = _matmul_t(g2.t(), x2.t()) if n_out <= n_in else _matmul_t(x2.t(), g2.t()).t()
        if ctx.needs_input_grad[2]:  # False when there is no bias
            db = g2.sum(0)
        return dx, dw, db


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, by oneDNN when all are float32 on the CPU outside autocast."""
    tensors = [x, weight] + ([] if bias is None else [bias])
    if (all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and x.numel() and not torch.is_autocast_enabled("cpu")):
        return OneDNNLinearFunction.apply(x, weight, bias)
    return F.linear(x, weight, bias)


class OneDNNLinear(nn.Linear):
    """An ``nn.Linear`` whose float32 CPU forward (and backward) runs on oneDNN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


@contextmanager
def swapped_class(layers: list[nn.Module], cls: type) -> Iterator[int]:
    """Give each of ``layers`` the class ``cls`` inside the block; yields how many.

    ``cls`` must be a subclass of each layer's own class that only overrides methods,
    so the parameters and buffers stay what they are; each layer gets its own class
    back on exit, also when the block raises.
    """
    originals = [type(m) for m in layers]
    for m in layers:
        m.__class__ = cls
    try:
        yield len(layers)
    finally:
        for m, original in zip(layers, originals):
            m.__class__ = original


@contextmanager
def onednn_linears(model: nn.Module, backend: str = "onednn") -> Iterator[int]:
    """Run ``model``'s ``nn.Linear`` layers on oneDNN inside the block; yields how many.

    ``backend`` is resolved by :func:`resolve_backend`: with "blas" (or "auto" on a
    CPU where MKL is fast) nothing changes and the count is 0.
    """
    routed = resolve_backend(backend) == "onednn"
    layers = [m for m in model.modules() if type(m) is nn.Linear] if routed else []
    with swapped_class(layers, OneDNNLinear) as count:
        yield count
