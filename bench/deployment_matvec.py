"""Benchmark: decode-time matrix-vector products with quantised weights, the course's
``QuantLinear`` against float ``F.linear`` and torchao's int8 weight-only layer, and
greedy-decoding tokens/s of a quantised course model against the float one.

What it measures: wall time (``time.perf_counter``; ``torch.cuda.synchronize`` around
each timing on a GPU) on the CPU, and also on CUDA when torch sees a GPU, where the float
baseline is bf16 instead of float32.

* **Matrix-vector products**, one input row (x of shape (1, K)), as every layer computes
  it when a model decodes one token, at the shapes of the course's ``cpu`` preset model
  (``PRESETS["cpu"]``, width 128: qkv 384 x 128, out 128 x 128, gate_up 704 x 128, down
  128 x 352, read from the model's first block) and of GPT-2 124M (qkv 2304 x 768, out
  768 x 768, MLP up 3072 x 768, MLP down 768 x 3072), weight matrices written (out, in).
  Variants:

  - ``fp32_eager``: ``nn.Linear`` (``F.linear``, on torch's own CPU matmul, not the course
    trainer's oneDNN route), not compiled;
  - ``fp32``: the same under ``torch.compile``, the baseline of the ratios;
  - ``fp32_sum``: the float weight through the course layer's decode expression,
    ``(x[..., None, :] * W).sum(-1)``, compiled: which part of a gain comes from reading
    fewer bytes and which from the expression itself;
  - ``int8``: ``QuantLinear.from_linear(linear, bits=8)`` (int8, a scale per row), compiled;
  - ``int4``: ``QuantLinear.from_linear(linear, bits=4, group_size=64)`` (32 where 64 does
    not divide the width), compiled;
  - ``torchao_int8``: ``torchao.quantization.quantize_(linear, Int8WeightOnlyConfig())``
    (int8, a scale per row), compiled; skipped, with the error recorded, when torchao is
    not installed or does not run here. On the CPU its compiled layer converts the whole
    int8 weight into a new float buffer at every call and then calls ``mm`` (inductor's
    generated code shows it), so its time depends on whether the allocator hands that
    buffer back already touched: two runs on the same machine gave 1,934 and 273
    microseconds at 2304 x 768.

  The quantised layers only fuse the integer-to-float conversion into the reduction under
  ``torch.compile``, so every variant but the first is compiled (``dynamic=False``,
  ``fullgraph=True``, first call outside the timing, its seconds recorded). A single
  small matrix stays in the cache from one call to the next and would not show what
  decoding costs, where every layer's weights come from memory: so each shape has as
  many distinct copies of the weight as make its smallest format (int4) take at least
  ``--min-mb`` MB (64 MB: twice this machine's 32 MB L3), and one timed pass runs x
  through every copy. The copies are clones of one random weight (the time does not
  depend on the values). A compiled call takes a list of copies (up to 32, about 1 MB of
  float32 weights) so that the per-call overhead of a compiled function is shared; the
  same compiled code serves every list of that shape. Reported: microseconds per
  matrix-vector product, the effective GB/s of weight bytes read (each variant's own
  bytes: integers, scales and zeros), and the speed ratios. Each variant's first copy
  is checked against the float product (relative error, recorded).

* **Greedy decoding**, random weights, at a 124M-like shape (the course GPT with 12
  layers, 12 heads, width 768, context 256, the course's 2,048-token vocabulary) and at
  the ``cpu`` preset: the float model against ``quantize_model(model, bits)`` for 8 and
  4 bits (the embedding and the tied output layer stay float) and against torchao's int8
  (``quantize_`` with the output layer left float likewise). There is no KV cache yet
  (chapter 12 builds it), so two figures:

  - ``step``: one compiled forward pass at a single position (input (1, 1)), what every
    decoding step costs once a KV cache exists; tokens/s = 1 / its time;
  - ``no_cache``: honest greedy decoding of ``--new-tokens`` tokens from a
    ``--prompt-tokens`` prompt, recomputing the whole context at every step, eager (the
    context grows by one every step; eager ``QuantLinear`` dequantises its weight and
    calls ``F.linear``, as does torchao's layer).

All variants alternate in rounds (each variant once per round) so that a change in the
machine's load hits all of them; the figure is the median over ``--repeats`` rounds.
The load average at the start is printed and recorded: another process on these two
cores changes the numbers.

Run: ``make bench`` or ``.venv/bin/python bench/deployment_matvec.py [--repeats 5]``.
Output: tables, then one JSON line; the same JSON, with machine info, goes to
bench/results/deployment_matvec.json.
Goals: the course int8 at least 1.0x the float32 product on the CPU (decoding is bound by
memory, and int8 reads a quarter of the bytes); on a GPU, at least 1.4x bf16 (gpt-fast
reports 1.48x for int8 and 1.88x for int4 on an A100).
"""
from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import statistics
import time
import warnings
from typing import Callable

import torch
from torch import nn

from _common import print_table, report
from tinygpt.deployment.quantized import QuantLinear, quantize_model
from tinygpt.pretraining import GPT, PRESETS, GPTConfig
from tinygpt.runtime import has_c_compiler, machine_info

COURSE = PRESETS["cpu"][0]
GPT2_124M = GPTConfig(vocab_size=COURSE.vocab_size, block_size=256, n_layer=12, n_head=12,
                      n_embd=768)
GPT2_SHAPES = {"gpt2_qkv": (2304, 768), "gpt2_out": (768, 768), "gpt2_mlp_up": (3072, 768),
               "gpt2_mlp_down": (768, 3072)}
GROUP_ELEMENTS = 2 ** 18   # weights per compiled call: about 1 MB of float32
MAX_GROUP = 32


def course_shapes() -> dict[str, tuple[int, int]]:
    """The (out, in) shapes of the ``cpu`` preset's linear layers, from its first block."""
    block = GPT(COURSE).blocks[0]
    return {f"course_{name.rsplit('.', 1)[-1]}": tuple(m.weight.shape)
            for name, m in block.named_modules() if isinstance(m, nn.Linear)}


def torchao_int8() -> tuple[Callable[[nn.Module], None] | None, str | None]:
    """A function that quantises a module's linears (the output layer left float) with
    torchao's int8 weight-only config, or None and why not."""
    # torchao's notes about itself (its CUDA-only libraries on a CPU, its tensor subclass's
    # cache key, a deprecated torch registration), not about this measurement
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*_stable_hash_for_caching.*")
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError as err:
        return None, f"torchao is not installed ({err})"

    def apply(module: nn.Module) -> None:
        quantize_(module, Int8WeightOnlyConfig(),
                  filter_fn=lambda m, fqn: type(m) is nn.Linear and fqn != "lm_head")
    return apply, None


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor holds; a tensor subclass (torchao's) counted by its inner tensors."""
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, name)) for name in names)
    return t.numel() * t.element_size()


def module_bytes(module: nn.Module) -> int:
    return sum(tensor_bytes(t) for t in [*module.parameters(), *module.buffers()])


def each_layer(layers: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    return [layer(x) for layer in layers]


def as_reduction(layers: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """The float weights through the course layer's decode expression."""
    return [(x[..., None, :] * layer.weight).sum(-1) for layer in layers]


def alternate(fns: dict[str, Callable[[], object]], repeats: int,
              sync: Callable[[], None]) -> dict[str, list[float]]:
    """Seconds of each ``fns`` call, ``repeats`` rounds, each function once a round."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def warm(fns: dict[str, Callable[[], object]], warmup: int, sync: Callable[[], None],
         errors: dict, where: str) -> dict[str, float]:
    """Call each function ``warmup`` times (the first compiles); seconds of each first call.
    torchao's variant is dropped from ``fns``, its error recorded, when it fails here."""
    seconds = {}
    for name, fn in list(fns.items()):
        sync()
        start = time.perf_counter()
        try:
            fn()
        except Exception as err:  # recorded, not fatal: the peer may not run on this device
            if name != "torchao_int8":
                raise
            errors.setdefault(f"torchao_int8.{where}", f"{type(err).__name__}: {err}")
            del fns[name]
            continue
        sync()
        seconds[name] = time.perf_counter() - start
        for _ in range(warmup - 1):
            fn()
    return seconds


def compiled(fn):
    return torch.compile(fn, dynamic=False, fullgraph=True)


# --- matrix-vector products --------------------------------------------------------------

def matvec_shape(n: int, k: int, device: str, dtype: torch.dtype, fname: str,
                 torchao, min_mb: float, warmup: int, repeats: int, sync, errors: dict) -> dict:
    """Every variant at one (out, in) shape: time per product, GB/s, ratios, errors."""
    torch._dynamo.reset()  # a fresh compile cache per shape (dynamo keeps 8 entries per function)
    torch.manual_seed(0)
    base = nn.Linear(k, n, bias=False, device=device, dtype=dtype).requires_grad_(False)
    group_size = 64 if k % 64 == 0 else 32
    protos = {fname: base, "int8": QuantLinear.from_linear(base, 8),
              "int4": QuantLinear.from_linear(base, 4, group_size)}
    copies = math.ceil(min_mb * 1e6 / min(module_bytes(m) for m in protos.values()))
    group = max(1, min(MAX_GROUP, GROUP_ELEMENTS // (n * k)))
    copies = -(-copies // group) * group
    banks = {name: [copy.deepcopy(m) for _ in range(copies)] for name, m in protos.items()}
    if torchao is not None:
        bank = nn.ModuleList(copy.deepcopy(base) for _ in range(copies))
        try:
            torchao(bank)
            banks["torchao_int8"] = list(bank)
        except Exception as err:  # recorded, not fatal: the peer may not run on this device
            errors.setdefault(f"torchao_int8.{device}", f"{type(err).__name__}: {err}")
    x = torch.randn(1, k, device=device, dtype=dtype)
    groups = {name: [bank[i:i + group] for i in range(0, copies, group)]
              for name, bank in banks.items()}
    plans = {f"{fname}_eager": (each_layer, fname), fname: (compiled(each_layer), fname),
             f"{fname}_sum": (compiled(as_reduction), fname),
             "int8": (compiled(each_layer), "int8"), "int4": (compiled(each_layer), "int4")}
    if "torchao_int8" in banks:
        plans["torchao_int8"] = (compiled(each_layer), "torchao_int8")

    def one_pass(fn, bank_name):
        def run():
            for layers in groups[bank_name]:
                fn(layers, x)
        return run
    fns = {name: one_pass(fn, bank_name) for name, (fn, bank_name) in plans.items()}
    with torch.no_grad():
        reference = base(x).float()
        compile_s = warm(fns, warmup, sync, errors, device)
        rel_error = {}
        for name in fns:
            fn, bank_name = plans[name]
            got = fn(groups[bank_name][0], x)[0].float()
            rel_error[name] = float((got - reference).norm() / reference.norm())
        if not all(math.isfinite(e) and e < 0.5 for e in rel_error.values()):
            raise RuntimeError(f"a variant computes something else at {n}x{k}: {rel_error}")
        times = alternate(fns, repeats, sync)
    seconds = {name: statistics.median(t) / copies for name, t in times.items()}
    weight_bytes = {name: module_bytes(banks[plans[name][1]][0]) for name in fns}
    result = {
        "shape": [n, k], "int4_group_size": group_size, "copies": copies,
        "copies_per_call": group,
        "mb_per_pass": {name: round(weight_bytes[name] * copies / 1e6, 1) for name in fns},
        "us_per_matvec": {name: round(s * 1e6, 2) for name, s in seconds.items()},
        "weight_gb_per_s": {name: round(weight_bytes[name] / s / 1e9, 2)
                            for name, s in seconds.items()},
        "first_call_s": {name: round(s, 2) for name, s in compile_s.items()
                         if not name.endswith("_eager")},
        "rel_error": {name: round(e, 5) for name, e in rel_error.items()},
    }
    result.update(ratios(seconds, fname))
    return result


def ratios(seconds: dict[str, float], fname: str) -> dict[str, float]:
    """Speed ratios (the other's time / this one's) of the quantised variants."""
    out = {}
    for name in ("int8", "int4", "torchao_int8", f"{fname}_sum", f"{fname}_eager"):
        if name in seconds and name != fname:
            out[f"{name}_over_{fname}"] = round(seconds[fname] / seconds[name], 3)
    if "torchao_int8" in seconds:
        out["int8_over_torchao_int8"] = round(seconds["torchao_int8"] / seconds["int8"], 3)
    out[f"int8_over_{fname}_sum"] = round(seconds[f"{fname}_sum"] / seconds["int8"], 3)
    out[f"int8_over_{fname}_eager"] = round(seconds[f"{fname}_eager"] / seconds["int8"], 3)
    return out


# --- greedy decoding -----------------------------------------------------------------------

def decode_models(config: GPTConfig, device: str, dtype: torch.dtype, fname: str, torchao,
                  errors: dict) -> dict[str, GPT]:
    """The float model and its quantised copies, all from one random initialisation."""
    torch.manual_seed(0)
    base = GPT(config).to(device=device, dtype=dtype).eval().requires_grad_(False)
    models = {fname: base, "int8": quantize_model(copy.deepcopy(base), 8),
              "int4": quantize_model(copy.deepcopy(base), 4, 64)}
    if torchao is not None:
        model = copy.deepcopy(base)
        try:
            torchao(model)
            models["torchao_int8"] = model
        except Exception as err:
            errors.setdefault(f"torchao_int8.{device}", f"{type(err).__name__}: {err}")
    return models


def greedy(model: nn.Module, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy continuation without a KV cache: the whole context forwarded every step."""
    ids = prompt
    for _ in range(new_tokens):
        nxt = model(ids)[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    return ids


def decode(config: GPTConfig, device: str, dtype: torch.dtype, fname: str, torchao, args,
           sync, errors: dict) -> dict:
    torch._dynamo.reset()
    models = decode_models(config, device, dtype, fname, torchao, errors)
    token = torch.zeros(1, 1, dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, config.vocab_size, (1, args.prompt_tokens), generator=gen).to(device)
    steps = {name: compiled(model) for name, model in models.items()}
    per_round = args.steps_per_round

    def step_fn(fn):
        def run():
            for _ in range(per_round):
                fn(token)
        return run
    with torch.no_grad():
        step_calls = {name: step_fn(fn) for name, fn in steps.items()}
        compile_s = warm(step_calls, args.warmup, sync, errors, f"{device}.step")
        step_times = alternate(step_calls, args.repeats, sync)
        no_cache = {name: (lambda m=model: greedy(m, prompt, args.new_tokens))
                    for name, model in models.items()}
        warm(no_cache, 1, sync, errors, f"{device}.no_cache")
        cache_times = alternate(no_cache, args.decode_repeats, sync)
    step_s = {name: statistics.median(t) / per_round for name, t in step_times.items()}
    gen_s = {name: statistics.median(t) for name, t in cache_times.items()}
    rope = tensor_bytes(models[fname].rope_cos) + tensor_bytes(models[fname].rope_sin)
    weight_bytes = {name: module_bytes(model) - rope for name, model in models.items()}  # RoPE tables
    result = {
        "config": {"n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
                   "block_size": config.block_size, "vocab_size": config.vocab_size},
        "weight_mb": {name: round(b / 1e6, 1) for name, b in weight_bytes.items()},
        "step_ms": {name: round(1e3 * s, 2) for name, s in step_s.items()},
        "step_tokens_per_s": {name: round(1 / s, 1) for name, s in step_s.items()},
        "step_first_call_s": {name: round(s, 2) for name, s in compile_s.items()},
        "no_cache_mode": "eager",
        "no_cache_tokens_per_s": {name: round(args.new_tokens / s, 1) for name, s in gen_s.items()},
    }
    for kind, secs in (("step", step_s), ("no_cache", gen_s)):
        for name in secs:
            if name != fname:
                result[f"{kind}_{name}_over_{fname}"] = round(secs[fname] / secs[name], 3)
        if "torchao_int8" in secs:
            result[f"{kind}_int8_over_torchao_int8"] = round(secs["torchao_int8"] / secs["int8"], 3)
    return result


# --- the report ----------------------------------------------------------------------------

def matvec_tables(device: str, fname: str, shapes: dict) -> None:
    names = [f"{fname}_eager", fname, f"{fname}_sum", "int8", "int4", "torchao_int8"]
    print(f"\nmatrix-vector products on {device}: microseconds per product (weight GB/s)")
    rows = []
    for shape, r in shapes.items():
        us, gbs = r["us_per_matvec"], r["weight_gb_per_s"]
        rows.append([f"{shape} {r['shape'][0]}x{r['shape'][1]} ({r['copies']} copies)"]
                    + [f"{us[n]:.1f} ({gbs[n]:.1f})" if n in us else "-" for n in names])
    print_table(["shape (out x in)", *names], rows)
    keys = [f"int8_over_{fname}", f"int4_over_{fname}", f"torchao_int8_over_{fname}",
            "int8_over_torchao_int8", f"{fname}_sum_over_{fname}", f"int8_over_{fname}_sum",
            f"int8_over_{fname}_eager"]
    print(f"\nspeed ratios on {device} (the second's time / the first's)")
    print_table(["shape", *keys], [[shape] + [f"{r[k]:.2f}x" if k in r else "-" for k in keys]
                                   for shape, r in shapes.items()])


def decode_table(device: str, fname: str, results: dict) -> None:
    print(f"\ndecoding on {device}: step = one compiled forward at one position (what a step "
          f"costs with a KV cache); no cache = greedy decoding, eager, whole context each step")
    rows = []
    for model, r in results.items():
        for name, ms in r["step_ms"].items():
            peer = f"_{name}_over_{fname}"
            rows.append([f"{model} {name}", f"{r['weight_mb'][name]:.1f}", f"{ms:.2f}",
                         f"{r['step_tokens_per_s'][name]:,.1f}",
                         f"{r.get('step' + peer, 1.0):.2f}x",
                         f"{r['no_cache_tokens_per_s'][name]:,.1f}",
                         f"{r.get('no_cache' + peer, 1.0):.2f}x"])
    print_table(["model variant", "weights MB", "step ms", "step tokens/s", f"vs {fname}",
                 "no-cache tokens/s", f"vs {fname}"], rows)


def goals(device: str, fname: str, matvec: dict, decoding: dict) -> dict[str, bool]:
    target = 1.0 if device == "cpu" else 1.4
    key = f"int8_over_{fname}"
    met = {}
    shapes_met = [s for s, r in matvec.items() if r[key] >= target]
    met["matvec"] = len(shapes_met) == len(matvec)
    met["decode_step"] = all(r[f"step_{key}"] >= target for r in decoding.values())
    print(f"\ngoal on {device}: course int8 at least {target}x {fname} "
          f"(compiled F.linear): matrix-vector at {len(shapes_met)} of {len(matvec)} shapes -> "
          f"{'met' if met['matvec'] else 'NOT met'}; decode step at "
          + ", ".join(f"{m} {r[f'step_{key}']:.2f}x" for m, r in decoding.items())
          + f" -> {'met' if met['decode_step'] else 'NOT met'}")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each variant first")
    parser.add_argument("--min-mb", type=float, default=64,
                        help="MB of weights per timed pass in the smallest format (int4)")
    parser.add_argument("--steps-per-round", type=int, default=5,
                        help="single-position forwards per round and variant")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--decode-repeats", type=int, default=2,
                        help="timed rounds of no-cache greedy decoding")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"],
                        default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    args = parser.parse_args()
    if not has_c_compiler():
        parser.error("torch.compile needs a C compiler (cc, gcc or clang) on PATH for its CPU kernels")
    torch._dynamo.config.fail_on_recompile_limit_hit = True  # never time a silent eager fallback
    machine = machine_info(["tinygpt", "torch", "torchao"])
    load = os.getloadavg()[0]
    print(f"CPU: {machine['cpu_model']} (family {machine['cpu_family_number']}, model "
          f"{machine['cpu_model_number']}), {machine['cpu_count']} cores, torch "
          f"{torch.__version__} at {torch.get_num_threads()} threads; load average at start "
          f"{load:.2f}" + ("" if load < 0.5 else " (another process is running: noisy)"))
    if "cuda" in args.devices:
        print(f"GPU: {torch.cuda.get_device_name()}")
    torchao, torchao_error = torchao_int8()
    errors: dict[str, str] = {} if torchao_error is None else {"torchao_int8": torchao_error}
    shapes = {**course_shapes(), **GPT2_SHAPES}
    matvec, decoding, met = {}, {}, {}
    start = time.perf_counter()
    for device in args.devices:
        dtype = torch.float32 if device == "cpu" else torch.bfloat16
        fname = "fp32" if device == "cpu" else "bf16"
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        matvec[device] = {name: matvec_shape(n, k, device, dtype, fname, torchao, args.min_mb,
                                             args.warmup, args.repeats, sync, errors)
                          for name, (n, k) in shapes.items()}
        decoding[device] = {name: decode(config, device, dtype, fname, torchao, args, sync, errors)
                            for name, config in (("gpt2", GPT2_124M), ("course", COURSE))}
        matvec_tables(device, fname, matvec[device])
        decode_table(device, fname, decoding[device])
        met[device] = goals(device, fname, matvec[device], decoding[device])
    for where, message in errors.items():
        print(f"skipped {where}: {message}")
    seconds = time.perf_counter() - start
    summary = {"bench": "deployment_matvec", "goals_met": met,
               "matvec_ratios": {d: {s: {k: v for k, v in r.items() if "_over_" in k}
                                     for s, r in by_shape.items()} for d, by_shape in matvec.items()},
               "decode_step_tokens_per_s": {d: {m: r["step_tokens_per_s"] for m, r in by_model.items()}
                                            for d, by_model in decoding.items()}}
    report("deployment_matvec", summary, {
        "matvec": matvec, "decode": decoding, "errors": errors, "seconds": round(seconds, 1),
        "repeats": args.repeats, "warmup": args.warmup, "min_mb": args.min_mb,
        "steps_per_round": args.steps_per_round, "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens, "decode_repeats": args.decode_repeats,
        "threads": torch.get_num_threads(), "load_average_at_start": round(load, 2),
        "machine": machine})


if __name__ == "__main__":
    main()
