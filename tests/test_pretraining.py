"""Chapter 3's exported reference passes its own checks, and the model keeps its promises.

The same checks that grade the notebooks run here on the package, on more seeds; the
properties below are the ones later chapters rely on: causality, grouped-query heads
equal to shared multi-head attention, loss near ln V at initialisation, a fixed batch
overfitted, checkpoints that resume bit for bit, and the GPU path (``gpu`` marker).
"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from tinygpt.checks import ch03 as checks
from tinygpt.pretraining import attention, checkpoint, data, distributed, layers, model, moe, optim
from tinygpt.pretraining.config import PRESETS, GPTConfig
from tinygpt.pretraining.model import GPT, lm_loss
from tinygpt.pretraining.optim import AdamW, param_groups
from tinygpt.pretraining.probe import attention_maps
from tinygpt.pretraining.step import train_step
from conftest import reference_tests

REFERENCE = [
    (checks.check_rope, (attention.rope_cache, attention.apply_rope)),
    (checks.check_causal_attention, (attention.causal_attention,)),
    (checks.check_self_attention, (attention.CausalSelfAttention,)),
    (checks.check_rmsnorm, (layers.RMSNorm,)),
    (checks.check_swiglu, (layers.SwiGLU,)),
    (checks.check_block, (model.Block,)),
    (checks.check_gpt, (model.GPT,)),
    (checks.check_lm_loss, (model.lm_loss,)),
    (checks.check_adamw_update, (optim.adamw_update,)),
    (checks.check_lr_at, (optim.lr_at,)),
    (checks.check_clip_grad_norm, (optim.clip_grad_norm,)),
    (checks.check_train_step, (train_step,)),
    (checks.check_read_shard, (data.read_shard,)),
    (checks.check_sample_batch, (data.sample_batch,)),
    (checks.check_checkpoint, (checkpoint.checkpoint_state, checkpoint.restore_state)),
    (checks.check_allreduce_gradients, (distributed.allreduce_gradients,)),
    (checks.check_load_balancing_loss, (moe.load_balancing_loss,)),
    (checks.check_moe, (moe.MoE,)),
]


test_every_check_is_run_on_the_reference, test_reference_passes_its_checks = \
    reference_tests(REFERENCE, checks, range(40, 44))


def _tiny(**changes) -> GPTConfig:
    return dataclasses.replace(PRESETS["tiny"][0], **changes)


@pytest.mark.parametrize("changes", [{}, {"n_kv_head": 1}, {"n_expert": 3, "top_k": 2},
                                     {"use_sdpa": False}])
def test_changing_a_future_token_changes_no_earlier_logit(changes):
    torch.manual_seed(0)
    net = GPT(_tiny(**changes))
    idx = torch.randint(0, 320, (2, 32))
    for s in (1, 17, 31):
        later = idx.clone()
        later[:, s:] = torch.randint(0, 320, later[:, s:].shape)
        torch.testing.assert_close(net(later)[:, :s], net(idx)[:, :s], atol=1e-6, rtol=0)


def test_grouped_query_attention_is_multi_head_attention_with_shared_kv_heads():
    gqa_config = GPTConfig(n_embd=32, n_head=4, n_kv_head=2)
    mha_config = dataclasses.replace(gqa_config, n_kv_head=None)
    torch.manual_seed(0)
    gqa = attention.CausalSelfAttention(gqa_config)
    mha = attention.CausalSelfAttention(mha_config)
    q, k, v = gqa.qkv.weight.detach().split([32, 16, 16])
    shared = lambda w: w.view(2, 1, 8, 32).expand(2, 2, 8, 32).reshape(32, 32)  # kv head j // 2
    mha.load_state_dict({"qkv.weight": torch.cat([q, shared(k), shared(v)]),
                         "out.weight": gqa.out.weight.detach()})
    cos, sin = attention.rope_cache(8, 10)
    x = torch.randn(3, 10, 32)
    torch.testing.assert_close(gqa(x, cos, sin), mha(x, cos, sin), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("changes", [{}, {"n_kv_head": 1}])
def test_attention_maps_are_the_layers_own_weights_and_leave_no_hook(changes):
    torch.manual_seed(0)
    net = GPT(_tiny(**changes)).eval()
    idx = torch.randint(0, 320, (2, 12))
    maps = attention_maps(net, idx)
    config = net.config
    assert maps.shape == (2, config.n_layer, config.n_head, 12, 12)
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    assert (maps.triu(diagonal=1) == 0).all()
    first = net.blocks[0]
    x = first.norm1(net.tok_emb(idx))
    _, own = first.attn(x, net.rope_cos[:12], net.rope_sin[:12], return_weights=True)
    torch.testing.assert_close(maps[:, 0], own.detach())
    assert not any(block.attn._forward_hooks for block in net.blocks)
    later = idx.clone()
    later[:, 7:] = (later[:, 7:] + 1) % 320
    torch.testing.assert_close(attention_maps(net, later)[..., :7, :], maps[..., :7, :])


@pytest.mark.parametrize("preset", ["tiny", "book", "cpu", "gpu"], ids=lambda p: f"preset_{p}")
def test_initial_loss_is_near_ln_v_for_every_preset(preset):
    config = PRESETS[preset][0]
    torch.manual_seed(0)
    net = GPT(config)
    idx = torch.randint(0, config.vocab_size, (2, min(config.block_size, 64)))
    with torch.no_grad():
        loss = lm_loss(net(idx), idx).item()
    assert abs(loss - math.log(config.vocab_size)) < 0.1, (loss, math.log(config.vocab_size))


def test_a_few_dozen_steps_overfit_a_fixed_batch():
    torch.manual_seed(0)
    net = GPT(_tiny())
    opt = AdamW(param_groups(net, 0.1), betas=(0.9, 0.95))
    tokens = torch.randint(0, 320, (4, 32))
    losses = [train_step(net, opt, tokens, 1e-2, 1.0)[0].item() for _ in range(40)]
    assert losses[0] > 5.5 and losses[-1] < 0.5, losses[::8]


def test_reduce_grads_runs_between_backward_and_clipping():
    torch.manual_seed(0)
    net = GPT(_tiny())
    opt = AdamW(param_groups(net, 0.0))
    seen = []
    def reduce(m):
        seen.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in m.parameters()])))
    _, norm = train_step(net, opt, torch.randint(0, 320, (2, 32)), 1e-3, 1e-3, reduce_grads=reduce)
    assert len(seen) == 1 and torch.allclose(seen[0], norm)  # unclipped when it ran


def test_checkpoint_files_resume_bit_identically(tmp_path):
    def run(steps, start=0, net=None, opt=None):
        for step in range(start, steps):
            tokens = data.sample_batch([stream], 4, 32, seed=1, step=step)
            train_step(net, opt, tokens, optim.lr_at(step, 1e-2, 1e-3, 3, 10), 1.0)
        return net
    stream = np.random.default_rng(0).integers(0, 320, 5000).astype(np.uint16)
    torch.manual_seed(0)
    straight = GPT(_tiny())
    opt = AdamW(param_groups(straight, 0.1))
    run(4, net=straight, opt=opt)
    checkpoint.save_checkpoint(tmp_path / "ckpt", straight, opt, step=4, train_config=PRESETS["tiny"][1])
    run(10, 4, straight, opt)
    torch.manual_seed(99)
    resumed = GPT(_tiny())
    opt2 = AdamW(param_groups(resumed, 0.1))
    start = checkpoint.resume(tmp_path / "ckpt", resumed, opt2)
    run(10, start, resumed, opt2)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json", "model.safetensors", "optimizer.safetensors"]
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["format"] == "tinygpt-checkpoint" and saved["step"] == 4
    assert saved["train"]["batch_size"] == PRESETS["tiny"][1].batch_size


def test_load_model_gives_the_same_logits_and_refuses_what_is_not_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = GPT(_tiny(n_kv_head=1))
    checkpoint.save_checkpoint(tmp_path / "m", net)
    back = checkpoint.load_model(tmp_path / "m")
    idx = torch.randint(0, 320, (1, 32))
    assert torch.equal(back(idx), net(idx)) and back.config == net.config
    assert back.lm_head.weight is back.tok_emb.weight
    assert not (tmp_path / "m" / "optimizer.safetensors").exists()
    with pytest.raises(ValueError, match="not a checkpoint"):
        checkpoint.load_model(tmp_path)
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps(dict(meta, version=2)))
    with pytest.raises(ValueError, match="version"):
        checkpoint.load_model(tmp_path / "m")


def test_shards_hold_uint16_or_uint32_and_reject_bad_ids(tmp_path):
    assert data.read_shard(data.write_shard(tmp_path / "a", [0, 65535])).dtype == np.uint16
    assert data.read_shard(data.write_shard(tmp_path / "b", [65536])).dtype == np.uint32
    assert (tmp_path / "a").stat().st_size == data.HEADER_BYTES + 4
    with pytest.raises(ValueError, match="token ids"):
        data.write_shard(tmp_path / "c", [-1])
    with pytest.raises(ValueError, match="no shard"):
        data.sample_batch([np.arange(3)], 2, 8, seed=0, step=0)


def test_bad_configs_are_clear_errors():
    with pytest.raises(ValueError, match="multiple of n_head"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="n_kv_head"):
        GPTConfig(n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="top_k"):
        GPTConfig(n_expert=2, top_k=3)
    with pytest.raises(ValueError, match="unknown"):
        GPTConfig.from_dict({"n_layers": 3})
    with pytest.raises(ValueError, match="block_size"):
        GPT(_tiny())(torch.zeros(1, 33, dtype=torch.long))


def test_bf16_autocast_on_the_cpu_is_close_to_float32():
    torch.manual_seed(0)
    net = GPT(_tiny())
    idx = torch.randint(0, 320, (2, 32))
    with torch.no_grad():
        full = lm_loss(net(idx), idx)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = lm_loss(net(idx), idx)
    assert half.dtype == torch.float32 and abs(half - full) < 2e-2


@pytest.mark.gpu
def test_training_step_runs_in_bf16_on_cuda_and_matches_float32():
    torch.manual_seed(0)
    net = GPT(_tiny()).cuda()
    twin = GPT(_tiny()).cuda()
    twin.load_state_dict(net.state_dict())
    tokens = torch.randint(0, 320, (4, 32), device="cuda")
    loss16, _ = train_step(net, AdamW(net.parameters()), tokens, 1e-3, 1.0, torch.bfloat16)
    loss32, _ = train_step(twin, AdamW(twin.parameters()), tokens, 1e-3, 1.0)
    assert loss16.device.type == "cuda" and abs(loss16.item() - loss32.item()) < 5e-2


@pytest.mark.gpu
def test_fused_and_written_out_attention_agree_on_cuda_in_bf16():
    q, k, v = (torch.randn(2, 4, 64, 32, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(attention.causal_attention(q, k, v), fused, atol=5e-2, rtol=5e-2)


@pytest.mark.gpu
def test_allreduce_over_nccl_with_one_process(tmp_path):
    import torch.distributed as dist
    dist.init_process_group("nccl", init_method=f"file://{tmp_path}/rdv", rank=0, world_size=1)
    try:
        net = GPT(_tiny()).cuda()
        tokens = torch.randint(0, 320, (2, 32), device="cuda")
        lm_loss(net(tokens), tokens).backward()
        before = [p.grad.clone() for p in net.parameters()]
        distributed.allreduce_gradients(net)
        assert all(torch.equal(a, p.grad) for a, p in zip(before, net.parameters()))
    finally:
        dist.destroy_process_group()
