"""BD3-LM masks, attention backends, AR/MDLM limits, the exact KV cache, and bfloat16 models."""

import pytest
import torch
from diff_language.config import SamplingConfig
from diff_language.masks import bd3_mask
from diff_language.models import BD3LM, HAS_FLEX, BD3LMConfig, RingKVCache, apply_rotary, rotary
from diff_language.objective import ClipRange, bd3_loss_terms, search_clip_range
from diff_language.sampling import generate, infill
from diffcore.discrete import mask_tokens, subs_log_probs


def _model(block_size=4, seq_len=16, attention="sdpa", seed=0) -> BD3LM:
    torch.manual_seed(seed)
    return BD3LM(
        BD3LMConfig(
            vocab_size=11,
            seq_len=seq_len,
            block_size=block_size,
            dim=32,
            n_layers=2,
            n_heads=2,
            attention=attention,
        )
    ).eval()


def test_mask_blocks_match_the_paper():
    m = bd3_mask(8, 2)
    L = 8
    # noisy token 3 (block 1): sees noisy 2,3 and clean 0,1 only
    assert m[3, :L].nonzero().flatten().tolist() == [2, 3]
    assert m[3, L:].nonzero().flatten().tolist() == [0, 1]
    # clean token 3 (block 1): sees clean 0..3 and no noisy token
    assert m[L + 3, L:].nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert not bool(m[L:, :L].any())


def test_training_logits_equal_sequential_block_logits():
    """Noisy block b in the vectorised pass == the block after its clean prefix under block-causal attention."""
    model = _model()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 10, (3, 16), generator=g)
    xt = mask_tokens(x0, torch.full((3, 16), 0.5), model.mask_id, generator=g)
    logits = model.forward_train(xt, x0)
    for b in range(4):
        seq = torch.cat([x0[:, : 4 * b], xt[:, 4 * b : 4 * b + 4]], dim=1)
        ref = model(seq)[:, -4:]
        torch.testing.assert_close(logits[:, 4 * b : 4 * b + 4], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not HAS_FLEX, reason="this torch has no FlexAttention")
def test_flex_attention_matches_sdpa():
    sdpa = _model(attention="sdpa")
    flex = _model(attention="flex")
    flex.load_state_dict(sdpa.state_dict())
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, 10, (2, 16), generator=g)
    xt = mask_tokens(x0, torch.full((2, 16), 0.4), sdpa.mask_id, generator=g)
    torch.testing.assert_close(flex.forward_train(xt, x0), sdpa.forward_train(xt, x0), atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_flex_attention_matches_sdpa_on_gpu():
    sdpa = _model(attention="sdpa").cuda()
    flex = _model(attention="flex").cuda()
    flex.load_state_dict(sdpa.state_dict())
    x0 = torch.randint(0, 10, (2, 16), device="cuda")
    xt = mask_tokens(x0, torch.full((2, 16), 0.4, device="cuda"), sdpa.mask_id)
    torch.testing.assert_close(flex.forward_train(xt, x0), sdpa.forward_train(xt, x0), atol=1e-4, rtol=1e-4)


def test_block_size_one_loss_is_the_autoregressive_nll():
    """L' = 1 with every token masked (t = 1): the NELBO terms are exactly the AR cross-entropy."""
    model = _model(block_size=1)
    x0 = torch.randint(0, 10, (2, 16))
    xt = torch.full_like(x0, model.mask_id)
    lp = subs_log_probs(model.forward_train(xt, x0), xt, model.mask_id)
    nll = -lp.gather(-1, x0[..., None]).squeeze(-1)
    # position i sees only clean tokens < i and its own mask token: changing later tokens changes nothing
    x0b = x0.clone()
    x0b[:, 8:] = (x0b[:, 8:] + 1) % 10
    lp_b = subs_log_probs(model.forward_train(xt, x0b), xt, model.mask_id)
    torch.testing.assert_close(lp[:, :8], lp_b[:, :8])
    # the loss at t = 1 (weight -alpha'/(1-alpha) = 1, all masked) is that AR cross-entropy exactly
    terms = bd3_loss_terms(model, x0, clip=ClipRange(1.0, 1.0))
    torch.testing.assert_close(terms, nll)


def test_full_block_is_mdlm_bidirectional():
    model = _model(block_size=16)
    x0 = torch.randint(0, 10, (1, 16))
    xt = x0.clone()
    xt[:, 3] = model.mask_id
    base = model.forward_train(xt, x0)[:, 3]
    xt2 = xt.clone()
    xt2[:, 12] = (xt2[:, 12] + 1) % 10
    assert not torch.allclose(base, model.forward_train(xt2, x0)[:, 3])  # sees the right context
    x0b = (x0 + 1) % 10
    torch.testing.assert_close(base, model.forward_train(xt, x0b)[:, 3])  # ignores the clean copy


@pytest.mark.parametrize("sampler", ["ancestral", "first-hitting"])
def test_kv_cache_gives_the_same_tokens(sampler):
    model = _model(block_size=4, seq_len=32)
    prompt = torch.randint(0, 10, (2, 6))
    outs = []
    for cache in (True, False):
        g = torch.Generator().manual_seed(5)
        cfg = SamplingConfig(sampler=sampler, use_kv_cache=cache)
        outs.append(generate(model, 20, prompt=prompt, config=cfg, generator=g))
    assert torch.equal(outs[0], outs[1])
    assert outs[0].shape == (2, 26) and torch.equal(outs[0][:, :6], prompt)
    assert int(outs[0].max()) < model.mask_id


@pytest.mark.parametrize("block_size", [1, 4, 8, 16])
def test_kv_cache_gives_the_same_tokens_for_every_block_size_with_nucleus_sampling(block_size):
    """Cached and uncached generation agree token for token within the context (prompt, temperature, top-p),
    and the cached path runs no more passes than the uncached one plus one write per finished block."""
    model = _model(block_size=block_size, seq_len=64)
    prompt = torch.randint(0, 10, (3, 5), generator=torch.Generator().manual_seed(1))
    calls = {}
    outs = []
    forward = model.forward_tokens
    for cache in (True, False):
        calls[cache] = 0

        def counting(*args, _cache=cache, **kwargs):
            calls[_cache] += 1
            return forward(*args, **kwargs)

        model.forward_tokens = counting
        g = torch.Generator().manual_seed(7)
        cfg = SamplingConfig(use_kv_cache=cache, temperature=0.9, top_p=0.8)
        outs.append(generate(model, 43, prompt=prompt, config=cfg, generator=g))
    del model.forward_tokens
    assert torch.equal(outs[0], outs[1]) and outs[0].shape == (3, 48)
    assert torch.equal(outs[0][:, :5], prompt) and int(outs[0].max()) < model.mask_id
    blocks = -(-48 // block_size)
    assert calls[True] <= calls[False] + blocks - 1


def test_ancestral_steps_that_unmask_nothing_call_no_denoiser():
    """With 2 L' steps per block, some steps unmask nothing: the sampler calls the denoiser only at steps
    where a token unmasks, at most once per generated token."""
    model = _model(block_size=16, seq_len=32)
    n = {"calls": 0}
    forward = model.forward_tokens

    def counting(*args, **kwargs):
        n["calls"] += 1
        return forward(*args, **kwargs)

    model.forward_tokens = counting
    generate(
        model,
        32,
        batch_size=1,
        config=SamplingConfig(use_kv_cache=False),
        generator=torch.Generator().manual_seed(0),
    )
    assert n["calls"] <= 32 < 2 * 32  # 32 tokens over 64 steps


def test_generation_past_the_context_and_eos_stop():
    model = _model(block_size=4, seq_len=16)
    g = torch.Generator().manual_seed(0)
    long = generate(model, 50, batch_size=2, generator=g)
    assert long.shape == (2, 50) and int(long.max()) < model.mask_id
    # make token 7 overwhelmingly likely: generation stops after the first block
    with torch.no_grad():
        model.head.bias = torch.nn.Parameter(torch.zeros(11))
        model.head.bias[7] = 50.0
    out = generate(model, 40, batch_size=2, eos_id=7, generator=g)
    assert out.shape == (2, 4)


def test_infill_keeps_given_tokens():
    model = _model(block_size=4, seq_len=16)
    template = torch.randint(0, 10, (3, 16))
    template[:, 5:11] = model.mask_id
    out = infill(model, template, generator=torch.Generator().manual_seed(0))
    keep = template != model.mask_id
    assert torch.equal(out[keep], template[keep]) and int(out.max()) < model.mask_id


def test_save_and_load_round_trip(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path)
    again = BD3LM.from_pretrained(tmp_path)
    x = torch.randint(0, 11, (2, 16))
    torch.testing.assert_close(model(x), again.eval()(x))
    assert again.config == model.config


def test_bad_block_size_is_named():
    with pytest.raises(ValueError, match="block_size"):
        BD3LMConfig(seq_len=16, block_size=5)


def test_clip_search_picks_the_zero_variance_range_for_autoregression():
    """For L' = 1 the range [1, 1] masks every token with weight 1: the loss on a fixed batch is deterministic."""
    model = _model(block_size=1)
    x0 = torch.randint(0, 10, (4, 16), generator=torch.Generator().manual_seed(0))
    candidates = [ClipRange(0.0, 1.0), ClipRange(0.5, 1.0), ClipRange(1.0, 1.0)]
    best, variances = search_clip_range(model, [x0] * 4, candidates=candidates)
    assert best == ClipRange(1.0, 1.0)
    assert variances[best] < 1e-10 < variances[ClipRange(0.0, 1.0)]


def test_rotary_keeps_a_bfloat16_input_bfloat16_and_rotates_it_in_float32():
    """The float32 rotary tables used to promote bfloat16 queries to float32 (bug: SDPA then met float32
    queries and bfloat16 cached keys/values)."""
    x = torch.randn(2, 3, 5, 8, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    cos, sin = rotary(torch.arange(5), 8, 10000.0)
    y = apply_rotary(x, cos, sin)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, apply_rotary(x.float(), cos, sin).to(torch.bfloat16), atol=0, rtol=0)
    # a rotation: the norm of every pair (i, i + D/2) is kept
    pairs = lambda t: t.float()[..., :4] ** 2 + t.float()[..., 4:] ** 2  # noqa: E731
    torch.testing.assert_close(pairs(y), pairs(x), atol=0.05, rtol=0.02)


@torch.no_grad()
def test_bfloat16_model_with_the_kv_cache_matches_its_uncached_forward():
    """``language_kv_cache.py --dtype bf16`` crashed in SDPA (float32 query, bfloat16 keys); a bfloat16 model
    now runs cached and uncached, and the cached logits equal the block-causal forward's (bf16 rounding)."""
    model = _model(block_size=4, seq_len=16).to(torch.bfloat16)
    x = torch.randint(0, 10, (2, 16), generator=torch.Generator().manual_seed(1))
    reference = model(x)
    assert reference.dtype == torch.bfloat16
    cache = RingKVCache.empty(model.config, 2, 16, 4, "cpu", torch.bfloat16)
    offsets = torch.arange(4)
    for j in range(4):
        cache.slots.copy_(offsets + 4 * j)
        cache.valid[: 4 * (j + 1)] = True
        logits = model.forward_tokens(x[:, 4 * j : 4 * j + 4], offsets + 4 * j, None, cache)
        assert logits.dtype == torch.bfloat16
        torch.testing.assert_close(
            logits.float(), reference[:, 4 * j : 4 * j + 4].float(), atol=2e-2, rtol=2e-2
        )
    # and the float32 model's logits are what the bfloat16 model approximates
    torch.testing.assert_close(reference.float(), _model(block_size=4, seq_len=16)(x), atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("cache", [True, False])
def test_bfloat16_generation_runs_with_and_without_the_cache(cache):
    model = _model(block_size=4, seq_len=32).to(torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    out = generate(model, 12, batch_size=2, config=SamplingConfig(use_kv_cache=cache), generator=g)
    assert out.shape == (2, 12) and int(out.max()) < model.mask_id


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bfloat16_cached_generation_on_gpu_with_a_cuda_graph():
    """The GPU form of the bug: ``language_kv_cache.py --device cuda --dtype bf16 --cuda-graph``."""
    model = _model(block_size=4, seq_len=32).to("cuda", torch.bfloat16)
    outs = []
    for cfg in (SamplingConfig(cuda_graph=True), SamplingConfig(use_kv_cache=False)):
        g = torch.Generator(device="cuda").manual_seed(0)
        outs.append(generate(model, 24, batch_size=2, config=cfg, generator=g))
    assert outs[0].shape == (2, 24) and int(outs[0].max()) < model.mask_id
    # in bfloat16 the two paths round differently, so most (not necessarily all) tokens agree
    assert float((outs[0] == outs[1]).float().mean()) > 0.5
