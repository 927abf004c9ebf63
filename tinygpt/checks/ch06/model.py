"""Chapter 6's checks for notebook 2: the quantised linear layer, whole-model conversion,
weight bytes, and the safetensors format with its errors.

Oracles written here: per-row and per-group dequantisation from the int8 and int4
oracles of ``quantize`` (Python floats, group by group), a float model whose linear
weights are replaced by those dequantised weights, byte counts over distinct storages.
Bad files are made here too: a config that no longer matches the tensors, a truncated
file, a tensor missing, one stored in the wrong dtype; each must be a ``ValueError``
that names the tensor. Models are chapter 3's small random GPTs. Part of
``tinygpt.checks.ch06``.
"""
from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from tinygpt.checks.ch03.shared import close
from tinygpt.checks.ch06.quantize import _int4_oracle, _int8_oracle, random_weight
from tinygpt.checks.common import mismatch, raises_value_error
from tinygpt.pretraining.config import GPTConfig
from tinygpt.pretraining.model import GPT


def _dequantized_oracle(w: torch.Tensor, bits: int, group_size: int, symmetric: bool
                        ) -> torch.Tensor:
    """The weight a correct scheme reads back, from the oracles of notebook 1."""
    if bits == 8:
        q, s = _int8_oracle(w)
        return torch.tensor(q, dtype=torch.float64) * torch.tensor(s, dtype=torch.float64)[:, None]
    q, s, z = _int4_oracle(w, group_size, symmetric)
    rep = lambda t: torch.tensor(t, dtype=torch.float64).repeat_interleave(group_size, 1)  # noqa: E731
    return (torch.tensor(q, dtype=torch.float64) - rep(z)) * rep(s)


def _near(what: str, got: torch.Tensor, want: torch.Tensor, step: torch.Tensor) -> None:
    """``got`` equals ``want`` except where float32 rounding moved a value by one step."""
    off = (got.double() - want).abs()
    if (off > step * 1.001 + 1e-6).any() or (off > 1e-5).double().mean() > 0.02:
        raise AssertionError(f"{what}: max difference {off.max().item():.3g} from the "
                             "scheme's dequantised weight")


def check_quant_linear(QuantLinear, seed: int) -> None:
    """Buffers of the stated names, dtypes and shapes (no parameters); from_linear's
    dequantised weight is the scheme's (int8 per row, int4 per group, symmetric or not);
    forward equals x @ W.T for 1-D, 2-D and 3-D inputs; moves with .to(); clear errors for
    3 bits, a group size that does not divide the width, a linear with a bias."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for bits, symmetric in ((8, False), (4, False), (4, True)):
        k, n = 4 * rng.randrange(2, 20), rng.randrange(2, 24)
        g = rng.choice([g for g in (4, 8, 16, 32, 64) if k % g == 0])
        linear = nn.Linear(k, n, bias=False)
        with torch.no_grad():
            linear.weight.copy_(random_weight(rng, gen, n, k))
        what = f"QuantLinear.from_linear of a ({n}, {k}) weight, {bits} bits, group {g}"
        layer = QuantLinear.from_linear(linear, bits=bits, group_size=g, symmetric=symmetric)
        if list(layer.parameters()):
            raise AssertionError(f"{what}: the weights must be buffers, not parameters")
        shapes = ({"qweight": ((n, k), torch.int8), "scales": ((n,), torch.float32)} if bits == 8
                  else {"qweight": ((n, k // 2), torch.uint8),
                        "scales": ((n, k // g), torch.float32),
                        "zeros": ((n, k // g), torch.uint8)})
        buffers = {name: (tuple(b.shape), b.dtype) for name, b in layer.named_buffers()}
        if buffers != shapes:
            raise mismatch(f"{what}: its buffers", (n, k), shapes, buffers)
        want = _dequantized_oracle(linear.weight.detach(), bits, g, symmetric)
        step = (layer.scales[:, None] if bits == 8 else
                layer.scales.repeat_interleave(g, 1)).double()
        w = layer.dequantized()
        if w.dtype != torch.float32 or w.shape != (n, k):
            raise mismatch(f"{what}: dequantized()", "float32", f"float32 {(n, k)}",
                           f"{w.dtype} {tuple(w.shape)}")
        _near(f"{what}: dequantized()", w, want, step)
        if layer.dequantized(torch.float64).dtype != torch.float64:
            raise AssertionError(f"{what}: dequantized(torch.float64) must be float64")
        for shape in ((k,), (rng.randrange(1, 6), k), (2, rng.randrange(1, 5), k)):
            x = torch.randn(*shape, generator=gen)
            close(f"{what}: forward of an input of shape {shape}", layer(x),
                  (x.double() @ w.double().T).float(), atol=1e-4 * max(1.0, w.abs().max().item()))
        fresh = QuantLinear(k, n, bits=bits, group_size=g)
        if not all(torch.count_nonzero(b) == 0 for name, b in fresh.named_buffers()
                   if name != "scales"):
            raise AssertionError("a new QuantLinear starts with zero integers")
        if fresh.to(torch.device("meta")).qweight.device.type != "meta":
            raise AssertionError("QuantLinear's tensors must move with .to(device) (buffers)")
    raises_value_error("QuantLinear with 3 bits", lambda: QuantLinear(16, 4, bits=3))
    raises_value_error("QuantLinear, 4 bits, group size 12 on a width of 16",
                       lambda: QuantLinear(16, 4, bits=4, group_size=12))
    raises_value_error("QuantLinear.from_linear of a linear with a bias",
                       lambda: QuantLinear.from_linear(nn.Linear(8, 4), bits=8))


def _random_gpt(rng: random.Random, n_layer: int | None = None) -> GPT:
    n_head = rng.choice([1, 2, 4])
    config = GPTConfig(vocab_size=rng.choice([32, 64]), block_size=rng.choice([8, 16]),
                       n_layer=n_layer or rng.choice([1, 2]), n_head=n_head,
                       n_kv_head=rng.choice([h for h in (1, 2, n_head) if n_head % h == 0]),
                       n_embd=n_head * rng.choice([8, 16]), mlp_hidden=rng.choice([24, 32, 48]))
    torch.manual_seed(rng.randrange(1000))
    return GPT(config)


def _group_for(width: int, group_size: int) -> int:
    """The group size a layer of this width takes: halved until it divides the width."""
    while width % group_size:
        group_size //= 2
    return group_size


def _oracle_model(model: GPT, bits: int, g: int, head: bool, symmetric: bool) -> GPT:
    """A float copy of ``model`` whose linear weights are the scheme's dequantised ones."""
    ref = GPT(model.config)
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        for name, m in ref.named_modules():
            if type(m) is nn.Linear and name != "lm_head":
                m.weight.copy_(_dequantized_oracle(m.weight.detach(), bits,
                                                   _group_for(m.in_features, g), symmetric))
        if head:
            ref.lm_head = nn.Linear(model.config.n_embd, model.config.vocab_size, bias=False)
            ref.lm_head.weight.copy_(_dequantized_oracle(
                model.tok_emb.weight.detach(), bits, _group_for(model.config.n_embd, g), symmetric))
    return ref.eval()


def check_quantize_model(quantize_model, weight_bytes, seed: int) -> None:
    """Every linear of the blocks replaced (and the output layer only with head=True), the
    embedding float and, without head, still tied to the output layer; logits equal those
    of the float model on the scheme's dequantised weights; the model itself returned;
    ValueError for 3 bits or a group size that does not divide a layer, with the model
    left as it was; fewer bytes afterwards."""
    rng = random.Random(seed)
    for head in (False, True):
        model = _random_gpt(rng)
        c = model.config
        bits = 4 if head else rng.choice([8, 4])
        g = rng.choice([8, 16, 32]) if bits == 4 else 64  # a 24-wide MLP takes a halved group
        symmetric = rng.random() < 0.3
        what = f"quantize_model(bits={bits}, group_size={g}, head={head})"
        ref = _oracle_model(model, bits, g, head, symmetric)
        before = weight_bytes(model)
        tokens = torch.randint(0, c.vocab_size, (2, c.block_size))
        if quantize_model(model, bits=bits, group_size=g, head=head, symmetric=symmetric) is not model:
            raise AssertionError(f"{what} must change the model in place and return it")
        linears = [name for name, m in model.named_modules() if type(m) is nn.Linear]
        if linears != ([] if head else ["lm_head"]):
            raise mismatch(f"{what}: the layers still nn.Linear", c, [] if head else ["lm_head"],
                           linears)
        quantised = [name for name, m in model.named_modules() if type(m).__name__ == "QuantLinear"]
        want = [f"blocks.{i}.{part}" for i in range(c.n_layer)
                for part in ("attn.qkv", "attn.out", "mlp.gate_up", "mlp.down")] + (
                    ["lm_head"] if head else [])
        if sorted(quantised) != sorted(want):
            raise mismatch(f"{what}: the quantised layers", c, want, quantised)
        if type(model.tok_emb) is not nn.Embedding or model.tok_emb.weight.dtype != torch.float32:
            raise AssertionError(f"{what}: the embedding must stay a float nn.Embedding")
        if not head and model.lm_head.weight is not model.tok_emb.weight:
            raise AssertionError(f"{what}: the output layer must still share the embedding")
        with torch.no_grad():
            got, expected = model(tokens), ref(tokens)
        close(f"{what}: logits against the float model on dequantised weights", got, expected,
              atol=2e-3)
        if weight_bytes(model) >= before:
            raise AssertionError(f"{what}: the model must weigh less ({weight_bytes(model)} "
                                 f"bytes, {before} before)")
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=2, n_head=2, n_embd=16,
                          mlp_hidden=rng.choice([21, 33])))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    raises_value_error("quantize_model with 3 bits", lambda: quantize_model(model, bits=3))
    _raises_naming(f"quantize_model, 4 bits, of an MLP {model.config.hidden} wide",
                   "blocks.0.mlp.down", lambda: quantize_model(model, bits=4, group_size=8))
    if any(type(m).__name__ == "QuantLinear" for m in model.modules()) or \
            model.state_dict().keys() != state.keys():
        raise AssertionError("a quantize_model call that raised must leave the model as it was")


def check_weight_bytes(weight_bytes, seed: int) -> None:
    """Bytes of every distinct tensor of the state dict: float32 and bf16 parameters,
    int8 buffers, a tied matrix counted once, non-persistent buffers not at all."""
    rng = random.Random(seed)
    model = _random_gpt(rng)
    unique = {p.data_ptr(): p for p in model.parameters()}.values()
    want = sum(4 * p.numel() for p in unique)
    if weight_bytes(model) != want:
        raise mismatch("weight_bytes of a float32 GPT (tied embedding once, RoPE tables not at "
                       "all)", model.config, want, weight_bytes(model))
    if weight_bytes(model.to(torch.bfloat16)) != want // 2:
        raise mismatch("weight_bytes of a bf16 GPT", model.config, want // 2,
                       weight_bytes(model))
    n, k = rng.randrange(1, 9), rng.randrange(1, 9)
    holder = nn.Module()
    holder.register_buffer("q", torch.zeros(n, k, dtype=torch.int8))
    holder.register_buffer("s", torch.ones(n))
    holder.register_buffer("cache", torch.ones(100), persistent=False)
    if weight_bytes(holder) != n * k + 4 * n:
        raise mismatch("weight_bytes of int8 and float32 buffers (a non-persistent one left out)",
                       (n, k), n * k + 4 * n, weight_bytes(holder))


def _raises_naming(what: str, name: str, call) -> None:
    """Fail unless ``call()`` raises a ValueError whose message names ``name``."""
    try:
        call()
    except ValueError as err:
        if name not in str(err):
            raise AssertionError(f"{what}: the ValueError must name {name!r}, it says: "
                                 f"{err}") from None
        return
    except Exception as err:  # noqa: BLE001 - any other error is the finding
        raise AssertionError(f"{what} must raise ValueError naming {name!r}, raised "
                             f"{type(err).__name__}: {err}") from None
    raise AssertionError(f"{what} must raise ValueError naming {name!r}; it loaded")


def check_save_load(save_quantized, load_quantized, quantize_model, seed: int) -> None:
    """Saved and reloaded models give identical logits and buffers; the file holds the
    integers as integers, each tensor once, and a config; files that disagree with their
    config (a changed shape, a missing tensor, a wrong dtype, an extra tensor, a
    truncated file, another format) are ValueErrors naming what is wrong."""
    rng = random.Random(seed)
    for _ in range(2):
        model = _random_gpt(rng)
        c = model.config
        bits, head = rng.choice([8, 4]), rng.random() < 0.4
        quantize_model(model, bits=bits, group_size=rng.choice([2, 8]), head=head)
        tokens = torch.randint(0, c.vocab_size, (2, c.block_size))
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "nested" / "model"
            save_quantized(model, folder)
            files = sorted(p.name for p in folder.iterdir())
            if files != ["config.json", "model.safetensors"]:
                raise mismatch("save_quantized's folder", c, ["config.json", "model.safetensors"],
                               files)
            tensors = load_file(folder / "model.safetensors")
            qkv = tensors.get("blocks.0.attn.qkv.qweight")
            if qkv is None or qkv.dtype != (torch.int8 if bits == 8 else torch.uint8):
                raise AssertionError(f"model.safetensors must hold blocks.0.attn.qkv.qweight as "
                                     f"the integers, got {None if qkv is None else qkv.dtype}")
            if ("lm_head.weight" in tensors) or ("lm_head.qweight" in tensors) != head:
                raise AssertionError("model.safetensors: the tied output matrix is stored once, "
                                     "as tok_emb.weight; a quantised head as lm_head.*")
            back = load_quantized(folder)
            if back.training:
                raise AssertionError("load_quantized must return the model in eval mode")
            with torch.no_grad():
                if not torch.equal(back(tokens), model(tokens)):
                    raise AssertionError("the reloaded model's logits differ from the saved one's")
            for name, tensor in model.state_dict().items():
                if not torch.equal(back.state_dict()[name], tensor):
                    raise AssertionError(f"the reloaded model's {name} differs")
            if not head and back.lm_head.weight is not back.tok_emb.weight:
                raise AssertionError("the reloaded model's output layer must share the embedding")
            _bad_files(load_quantized, folder, tensors, bits)
    raises_value_error("save_quantized of a float model", lambda: save_quantized(
        _random_gpt(rng), tempfile.mkdtemp()))


def _bad_files(load_quantized, folder: Path, tensors: dict, bits: int) -> None:
    config = json.loads((folder / "config.json").read_text())

    def with_config(change) -> Path:
        bad = Path(tempfile.mkdtemp())
        cfg = json.loads(json.dumps(config))
        change(cfg)
        (bad / "config.json").write_text(json.dumps(cfg))
        (bad / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
        return bad

    def with_tensors(change) -> Path:
        bad = Path(tempfile.mkdtemp())
        (bad / "config.json").write_text(json.dumps(config))
        changed = dict(tensors)
        change(changed)
        save_file(changed, bad / "model.safetensors")
        return bad

    vocab = config["model"]["vocab_size"]
    grown = with_config(lambda cfg: cfg["model"].update(vocab_size=vocab + 8))
    _raises_naming("load_quantized of a config with a larger vocabulary", "tok_emb.weight",
                   lambda: load_quantized(grown))
    deeper = with_config(lambda cfg: cfg["model"].update(n_layer=cfg["model"]["n_layer"] + 1))
    last = config["model"]["n_layer"]
    _raises_naming("load_quantized of a config with one more layer", f"blocks.{last}.",
                   lambda: load_quantized(deeper))
    missing = with_tensors(lambda t: t.pop("blocks.0.mlp.down.scales"))
    _raises_naming("load_quantized of a file without a tensor", "blocks.0.mlp.down.scales",
                   lambda: load_quantized(missing))
    floated = with_tensors(lambda t: t.update({"blocks.0.attn.out.qweight":
                                               t["blocks.0.attn.out.qweight"].float()}))
    _raises_naming("load_quantized of integers stored as floats", "blocks.0.attn.out.qweight",
                   lambda: load_quantized(floated))
    extra = with_tensors(lambda t: t.update({"blocks.0.stray": torch.zeros(2)}))
    _raises_naming("load_quantized of a file with a tensor the model lacks", "blocks.0.stray",
                   lambda: load_quantized(extra))
    other_bits = with_config(lambda cfg: cfg["layers"]["blocks.0.mlp.gate_up"].update(
        bits=12 - bits, group_size=2))
    _raises_naming("load_quantized of a config whose scheme disagrees with the file",
                   "blocks.0.mlp.gate_up", lambda: load_quantized(other_bits))
    cut = with_config(lambda cfg: None)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[:len(data) // 2])
    raises_value_error("load_quantized of a truncated model.safetensors",
                       lambda: load_quantized(cut))
    other = with_config(lambda cfg: cfg.update(format="something-else"))
    raises_value_error("load_quantized of a config of another format", lambda: load_quantized(other))
    raises_value_error("load_quantized of an empty folder", lambda: load_quantized(tempfile.mkdtemp()))
