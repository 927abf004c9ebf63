"""Chapter 3's checks for notebook 4 (04_scale): data parallelism, the load-balancing loss, the mixture of experts.

Part of ``tinygpt.checks.ch03`` (its docstring says how the checks work).
"""
from __future__ import annotations

import random
import tempfile
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from tinygpt.checks.ch03.shared import close, randn, random_config, built, same_model
from tinygpt.pretraining import model as ref_model
from tinygpt.pretraining.moe import MoE as RefMoE


def _ddp_worker(rank, world, folder, allreduce_gradients, config, seed, tokens):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        torch.manual_seed(seed)
        model = ref_model.GPT(config)
        model.norm.weight.requires_grad_(False)
        rows = tokens.chunk(world)[rank]
        ref_model.lm_loss(model(rows), rows).backward()
        allreduce_gradients(model)
        np.savez(f"{folder}/grads{rank}.npz", **{n: p.grad.numpy() for n, p in
                                                 model.named_parameters() if p.grad is not None})
    finally:
        dist.destroy_process_group()


def check_allreduce_gradients(allreduce_gradients, seed: int) -> None:
    """Two gloo processes, half a batch each: afterwards both hold the whole batch's gradients."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    config = random_config(rng, n_layer=1)
    world, model_seed = 2, rng.randrange(1000)
    tokens = torch.randint(0, config.vocab_size, (2 * world, config.block_size), generator=gen)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            mp.start_processes(_ddp_worker, nprocs=world, start_method="fork", args=(
                world, tmp, allreduce_gradients, config, model_seed, tokens))
        except mp.ProcessRaisedException as err:
            raise AssertionError(f"a process failed:\n{err}") from None
        except mp.ProcessExitedException as err:
            raise AssertionError(f"a process died: {err}") from None
        grads = {r: dict(np.load(f"{tmp}/grads{r}.npz")) for r in range(world)}
    torch.manual_seed(model_seed)
    single = ref_model.GPT(config)
    single.norm.weight.requires_grad_(False)
    ref_model.lm_loss(single(tokens), tokens).backward()
    expected = {n: p.grad for n, p in single.named_parameters() if p.grad is not None}
    for rank, got in grads.items():
        if set(got) != set(expected):
            raise AssertionError(f"rank {rank} has gradients for {sorted(got)}, expected "
                                 f"{sorted(expected)} (a parameter without one must keep None)")
        for name, g in got.items():
            close(f"rank {rank}'s gradient of {name} against one process on the whole batch",
                   torch.from_numpy(g), expected[name], atol=1e-6, rtol=1e-4)
            if not np.array_equal(g, grads[1 - rank][name]):
                raise AssertionError(f"the ranks hold different gradients for {name}")


def _balance_oracle(probs: torch.Tensor, experts: torch.Tensor, n_expert: int) -> torch.Tensor:
    n, k = experts.shape
    share = F.one_hot(experts, n_expert).sum(dim=(0, 1)).double() / (n * k)
    return n_expert * sum(share[i] * probs[:, i].double().mean() for i in range(n_expert))


def check_load_balancing_loss(load_balancing_loss, seed: int) -> None:
    """E * sum_i f_i P_i against a one-hot oracle; 1 for even use, E for total collapse."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for trial in range(5):
        n, e = rng.randrange(1, 40), rng.choice([2, 3, 8])
        k = rng.randrange(1, e + 1)
        probs = randn(gen, n, e, scale=rng.choice([0.1, 3.0])).softmax(dim=-1)
        experts = probs.topk(k, dim=-1).indices if trial % 2 else torch.stack(
            [torch.randperm(e, generator=gen)[:k] for _ in range(n)])
        got = load_balancing_loss(probs, experts, e)
        close(f"load_balancing_loss for N={n}, E={e}, k={k}", got,
               _balance_oracle(probs, experts, e).float(), atol=1e-6)


def _moe_oracle(moe, x: torch.Tensor, top_k: int, aux_weight: float) -> tuple:
    """Every expert on every token, masked by the routing; the aux loss added to the output's loss."""
    flat = x.reshape(-1, x.shape[-1])
    probs = (flat @ moe.router.weight.T).softmax(dim=-1)
    weights, experts = probs.topk(top_k, dim=-1)
    gate = torch.zeros_like(probs).scatter(1, experts, weights)
    outs = []
    for expert in moe.experts:
        w = expert.gate_up.weight
        h = w.shape[0] // 2
        gate_x, up = flat @ w[:h].T, flat @ w[h:].T
        outs.append((F.silu(gate_x) * up) @ expert.down.weight.T)
    y = (torch.stack(outs, dim=1) * gate[..., None]).sum(dim=1)
    aux = _balance_oracle(probs, experts, len(moe.experts)).float()
    return y.view_as(x), aux, experts, probs


def check_moe(MoE, seed: int) -> None:
    """Exactly k distinct experts per token; output, aux loss and gradients equal a dense oracle."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    for _ in range(2):
        e = rng.choice([2, 3, 5])
        config, moe = built(MoE, rng, n_expert=e, top_k=rng.randrange(1, min(e, 3) + 1),
                             aux_loss_weight=rng.choice([0.01, 1.0]))
        same_model("MoE", moe, RefMoE(config))
        x = randn(gen, 2, rng.randrange(1, 6), config.n_embd).requires_grad_()
        want_y, want_aux, want_experts, want_probs = _moe_oracle(moe, x, config.top_k,
                                                                 config.aux_loss_weight)
        weights, experts, probs = moe.route(x.detach().flatten(0, 1))
        close("route: probabilities", probs, want_probs.detach())
        if experts.shape != want_experts.shape or any(
                len(set(row)) != config.top_k for row in experts.tolist()):
            raise AssertionError(f"route must pick {config.top_k} different experts per token, "
                                 f"got {experts.tolist()[:4]}")
        if not torch.equal(experts.sort(dim=-1).values, want_experts.sort(dim=-1).values):
            raise AssertionError("route must pick the experts of the largest probabilities")
        close("route: weights (the chosen experts' probabilities)",
               weights.gather(1, experts.argsort(dim=-1)),
               want_probs.detach().gather(1, want_experts).gather(1, want_experts.argsort(dim=-1)))
        y = moe(x)
        close(f"MoE output (E={e}, k={config.top_k}) against every expert on every token", y,
               want_y.detach())
        close("MoE.aux_loss (the load-balancing loss, detached)", moe.aux_loss, want_aux.detach())
        g = randn(gen, *x.shape)
        (want_y * g).sum().add(config.aux_loss_weight * want_aux).backward()
        want_grads = {n: p.grad.clone() for n, p in moe.named_parameters()}
        want_x = x.grad.clone()
        moe.zero_grad()
        x.grad = None
        (moe(x) * g).sum().backward()
        if moe.router.weight.grad is None:
            raise AssertionError("no gradient reached the router")
        for name, p in moe.named_parameters():  # an expert that got no token may have none
            got = torch.zeros_like(p) if p.grad is None else p.grad
            close(f"gradient of {name} (the aux loss must reach the router through "
                   "attach_aux_loss)", got, want_grads[name], atol=1e-5)
        close("gradient of the input", x.grad, want_x, atol=1e-5)
