"""Chapter 6's checks for notebook 1: int8 per channel, 4-bit packing, int4 in groups.

Each scheme is compared with an oracle written here one row and one group at a time in
plain Python floats (``round`` is Python's, which like ``torch.round`` rounds halves to
even), on random weights of fresh shapes with the cases that break a careless scheme:
a row or group of zeros, one large outlier, all-positive groups, values that sit
exactly on a half step. Part of ``tinygpt.checks.ch06``.
"""
from __future__ import annotations

import random

import torch

from tinygpt.checks.common import mismatch, raises_value_error


def random_weight(rng: random.Random, gen: torch.Generator, n: int, k: int) -> torch.Tensor:
    """An (n, k) weight with the awkward cases: a zero row, an outlier, a positive row."""
    w = torch.randn(n, k, generator=gen) * rng.choice([0.02, 0.1, 1.0])
    w[rng.randrange(n)] = 0.0
    w[rng.randrange(n), rng.randrange(k)] *= 40.0
    row = rng.randrange(n)
    w[row] = w[row].abs() + 0.01
    return w


def _int8_oracle(w: torch.Tensor) -> tuple[list[list[int]], list[float]]:
    qs, scales = [], []
    for row in w.tolist():
        m = max(abs(v) for v in row)
        s = torch.tensor(m / 127 if m > 0 else 1.0, dtype=torch.float32).item()
        scales.append(s)
        qs.append([max(-127, min(127, round(torch.tensor(v / s, dtype=torch.float32).item())))
                   for v in row])
    return qs, scales


def check_int8(quantize_int8, dequantize_int8, seed: int) -> None:
    """int8 values and per-row scales equal the oracle's (within a step where float32
    division lands on a half), dequantised weights within half a step of the input,
    int8 and float32 dtypes, clear errors for a 1-D or an integer weight."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(3):
        n, k = rng.randrange(2, 12), rng.randrange(1, 40)
        w = random_weight(rng, gen, n, k)
        q, scale = quantize_int8(w)
        if not isinstance(q, torch.Tensor) or q.dtype != torch.int8 or q.shape != w.shape:
            raise mismatch("quantize_int8's values", f"a ({n}, {k}) weight",
                           f"int8 of shape {(n, k)}", getattr(q, "dtype", type(q)))
        if scale.dtype != torch.float32 or tuple(scale.shape) != (n,):
            raise mismatch("quantize_int8's scales", f"a ({n}, {k}) weight",
                           f"float32 of shape ({n},)", f"{scale.dtype} {tuple(scale.shape)}")
        want_q, want_s = _int8_oracle(w)
        if not torch.allclose(scale, torch.tensor(want_s), rtol=1e-6, atol=0):
            raise mismatch("quantize_int8's scales (max |row| / 127, 1 for a zero row)",
                           w, want_s, scale.tolist())
        if (q.long() - torch.tensor(want_q)).abs().max() > 1 or \
                (q.long() != torch.tensor(want_q)).float().mean() > 0.01:
            raise mismatch("quantize_int8's values (round(w / scale), clamped)", w, want_q,
                           q.tolist())
        back = dequantize_int8(q, scale)
        if back.dtype != torch.float32 or back.shape != w.shape:
            raise mismatch("dequantize_int8", "int8 values and scales", f"float32 {(n, k)}",
                           f"{back.dtype} {tuple(back.shape)}")
        if not torch.allclose(back, q.double().mul(scale.double()[:, None]).float(), atol=1e-7):
            raise mismatch("dequantize_int8 (q * scale)", q, "q * scale", back)
        if ((back - w).abs() > scale[:, None] / 2 * (1 + 1e-5) + 1e-8).any():
            raise AssertionError("int8 round trip: a weight is more than half a step away")
    raises_value_error("quantize_int8 of a 1-D weight", lambda: quantize_int8(torch.ones(4)))
    raises_value_error("quantize_int8 of an integer weight", lambda: quantize_int8(
        torch.ones(2, 4, dtype=torch.int64)))


def check_pack_int4(pack_int4, unpack_int4, seed: int) -> None:
    """Bytes laid out as low | high << 4 along the last dimension (compared with a loop),
    every pattern round-trips exactly, any leading shape; clear errors for values out of
    [0, 15], floats, an odd last dimension, or unpacking anything but uint8."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(3):
        lead = [rng.randrange(1, 5) for _ in range(rng.randrange(0, 3))]
        k = 2 * rng.randrange(1, 20)
        dtype = rng.choice([torch.uint8, torch.int32, torch.int64])
        q = torch.randint(0, 16, (*lead, k), generator=gen).to(dtype)
        packed = pack_int4(q)
        if packed.dtype != torch.uint8 or tuple(packed.shape) != (*lead, k // 2):
            raise mismatch("pack_int4", f"{dtype} values of shape {tuple(q.shape)}",
                           f"uint8 of shape {(*lead, k // 2)}",
                           f"{packed.dtype} {tuple(packed.shape)}")
        flat, got = q.reshape(-1, k).tolist(), packed.reshape(-1, k // 2).tolist()
        want = [[row[2 * i] | row[2 * i + 1] << 4 for i in range(k // 2)] for row in flat]
        if got != want:
            raise mismatch("pack_int4 (element 2i low, 2i + 1 high)", flat, want, got)
        back = unpack_int4(packed)
        if back.dtype != torch.uint8 or not torch.equal(back, q.to(torch.uint8)):
            raise mismatch("unpack_int4(pack_int4(q))", q, q.to(torch.uint8), back)
    every = torch.arange(256, dtype=torch.uint8)
    if not torch.equal(pack_int4(unpack_int4(every)), every):
        raise AssertionError("pack_int4(unpack_int4(b)) must give back every byte b")
    raises_value_error("pack_int4 of a 16", lambda: pack_int4(torch.tensor([16, 0])))
    raises_value_error("pack_int4 of a -1", lambda: pack_int4(torch.tensor([-1, 0])))
    raises_value_error("pack_int4 of floats", lambda: pack_int4(torch.zeros(4)))
    raises_value_error("pack_int4 of an odd last dimension", lambda: pack_int4(
        torch.zeros(2, 3, dtype=torch.uint8)))
    raises_value_error("unpack_int4 of int64", lambda: unpack_int4(torch.zeros(4, dtype=torch.int64)))


def _int4_oracle(w: torch.Tensor, g: int, symmetric: bool):
    """Group by group in Python floats: (values, scales, zeros) as nested lists."""
    values, scales, zeros = [], [], []
    f32 = lambda v: torch.tensor(v, dtype=torch.float32).item()  # noqa: E731
    for row in w.tolist():
        vr, sr, zr = [], [], []
        for start in range(0, len(row), g):
            group = row[start:start + g]
            if symmetric:
                s = f32(max(abs(v) for v in group) / 7) or 1.0
                z = 8
            else:
                lo, hi = min(min(group), 0.0), max(max(group), 0.0)
                s = f32((f32(hi) - f32(lo)) / 15) or 1.0
                z = max(0, min(15, round(f32(-lo / s))))
            vr += [max(0, min(15, round(f32(v / s)) + z)) for v in group]
            sr.append(s)
            zr.append(z)
        values.append(vr)
        scales.append(sr)
        zeros.append(zr)
    return values, scales, zeros


def _unpacked(packed: torch.Tensor) -> torch.Tensor:
    """The 4-bit values of packed bytes, low nibble first (the checks' own unpacking)."""
    rows = [[v for byte in row for v in (byte & 15, byte >> 4)] for row in packed.tolist()]
    return torch.tensor(rows, dtype=torch.int64)


def check_int4(quantize_int4, dequantize_int4, seed: int) -> None:
    """Packed values, scales and zeros per group equal the oracle's (asymmetric and
    symmetric, group sizes 32/64/128 and odd ones), dequantised weights within half a
    step, zero stored exactly; clear errors for a group size that does not divide the
    width, an odd or non-positive group size, a 1-D weight."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(3):
        g = rng.choice([2, 6, 32, 64, 128])
        n, k = rng.randrange(2, 8), g * rng.randrange(1, 4)
        symmetric = rng.random() < 0.4
        w = random_weight(rng, gen, n, k)
        w[0, 0] = 0.0
        qw = quantize_int4(w, g, symmetric=symmetric)
        what = f"quantize_int4 of a ({n}, {k}) weight, group {g}, symmetric={symmetric}"
        shapes = {"packed": (n, k // 2), "scales": (n, k // g), "zeros": (n, k // g)}
        dtypes = {"packed": torch.uint8, "scales": torch.float32, "zeros": torch.uint8}
        for field, shape in shapes.items():
            t = getattr(qw, field)
            if t.dtype != dtypes[field] or tuple(t.shape) != shape:
                raise mismatch(f"{what}: .{field}", w.shape, f"{dtypes[field]} {shape}",
                               f"{t.dtype} {tuple(t.shape)}")
        if qw.group_size != g:
            raise mismatch(f"{what}: .group_size", g, g, qw.group_size)
        values, scales, zeros = _int4_oracle(w, g, symmetric)
        if not torch.allclose(qw.scales, torch.tensor(scales), rtol=1e-5, atol=0):
            raise mismatch(f"{what}: scales", w, scales, qw.scales.tolist())
        if qw.zeros.tolist() != zeros:
            raise mismatch(f"{what}: zero points", w, zeros, qw.zeros.tolist())
        got = _unpacked(qw.packed)
        off = (got - torch.tensor(values)).abs()
        if off.max() > 1 or (off > 0).float().mean() > 0.01:
            raise mismatch(f"{what}: 4-bit values", w, values, got.tolist())
        back = dequantize_int4(qw)
        if back.dtype != torch.float32 or back.shape != w.shape:
            raise mismatch("dequantize_int4", what, f"float32 {(n, k)}",
                           f"{back.dtype} {tuple(back.shape)}")
        steps = qw.scales.repeat_interleave(g, dim=1)
        want = ((got.float() - qw.zeros.float().repeat_interleave(g, dim=1)) * steps)
        if not torch.allclose(back, want, atol=1e-6):
            raise mismatch("dequantize_int4 ((q - zero) * scale)", qw, want, back)
        if ((back - w).abs() > steps / 2 * (1 + 1e-5) + 1e-7).any():
            raise AssertionError(f"{what}: a weight is more than half a step away")
        if back[0, 0].item() != 0.0:
            raise AssertionError(f"{what}: a weight of 0.0 reads back as {back[0, 0].item()}")
    raises_value_error("quantize_int4 with a group size of 48 on a width of 64",
                       lambda: quantize_int4(torch.randn(2, 64), 48))
    raises_value_error("quantize_int4 with an odd group size", lambda: quantize_int4(
        torch.randn(2, 6), 3))
    raises_value_error("quantize_int4 with a group size of 0", lambda: quantize_int4(
        torch.randn(2, 6), 0))
    raises_value_error("quantize_int4 of a 1-D weight", lambda: quantize_int4(torch.randn(64), 32))
