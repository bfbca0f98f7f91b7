"""Embeddings and attention layers checked against hand-written formulas and invariants."""

import math

import pytest
import torch
import torch.nn.functional as F
from diffcore.nn.attention import Attention, CrossAttention, QKVProjection, RMSNorm, attend
from diffcore.nn.embeddings import (
    PatchEmbed,
    RotaryEmbedding,
    apply_rope,
    drop_labels,
    grid_positions,
    sincos_embedding_1d,
    sincos_pos_embed,
    timestep_embedding,
    unpatchify,
)


def test_timestep_embedding_matches_formula_with_time_scaled_by_1000():
    t = torch.tensor([0.0, 0.25, 1.0])
    emb = timestep_embedding(t, 8)
    for b, tb in enumerate(t.tolist()):
        for i in range(4):
            w = math.exp(-math.log(10000.0) * i / 4)
            assert emb[b, i].item() == pytest.approx(math.cos(1000 * tb * w), abs=1e-4)
            assert emb[b, 4 + i].item() == pytest.approx(math.sin(1000 * tb * w), abs=1e-4)
    assert timestep_embedding(t, 7).shape == (3, 7)
    with pytest.raises(ValueError, match="t: expected shape"):
        timestep_embedding(torch.zeros(2, 1), 8)


def _reference_patchify(x, patch):
    """Tokens in row-major grid order, features ordered (*patch, C): loops, no reshape tricks."""
    b, _, *spatial = x.shape
    grid = [s // p for s, p in zip(spatial, patch)]
    tokens = []
    for idx in torch.cartesian_prod(*[torch.arange(g) for g in grid]).reshape(-1, len(grid)).tolist():
        sl = tuple(slice(i * p, (i + 1) * p) for i, p in zip(idx, patch))
        block = x[(slice(None), slice(None), *sl)]  # (B, C, *patch)
        tokens.append(block.movedim(1, -1).reshape(b, -1))
    return torch.stack(tokens, dim=1), grid


@pytest.mark.parametrize(
    "spatial,patch", [((12,), (4,)), ((4, 6), (2, 3)), ((2, 4, 6), (1, 2, 3))], ids=["1d", "2d", "3d"]
)
def test_unpatchify_inverts_reference_patchify(spatial, patch):
    x = torch.randn(2, 3, *spatial)
    tokens, grid = _reference_patchify(x, patch)
    torch.testing.assert_close(unpatchify(tokens, grid, patch, 3), x)


@pytest.mark.parametrize("spatial,patch", [((8,), (2,)), ((4, 6), (2, 3)), ((2, 4, 4), (1, 2, 2))])
def test_patch_embed_is_a_linear_map_of_each_patch(spatial, patch):
    embed = PatchEmbed(3, 5, patch, ndim=len(spatial))
    x = torch.randn(2, 3, *spatial)
    w = embed.proj.weight  # (D, C, *patch): flatten in (C, *patch) order
    b = x.shape[0]
    grid = [s // p for s, p in zip(spatial, patch)]
    ref = []
    for idx in torch.cartesian_prod(*[torch.arange(g) for g in grid]).reshape(-1, len(grid)).tolist():
        sl = tuple(slice(i * p, (i + 1) * p) for i, p in zip(idx, patch))
        ref.append(x[(slice(None), slice(None), *sl)].reshape(b, -1) @ w.reshape(5, -1).T + embed.proj.bias)
    torch.testing.assert_close(embed(x), torch.stack(ref, dim=1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="divisible by patch_size"):
        embed(torch.randn(1, 3, *[s + 1 for s in spatial]))


def test_sincos_embeddings_follow_the_formula_per_axis():
    pos = torch.arange(5.0)
    emb = sincos_embedding_1d(6, pos)
    omega = torch.tensor([10000 ** (-i / 3) for i in range(3)])
    torch.testing.assert_close(
        emb, torch.cat([torch.sin(pos[:, None] * omega), torch.cos(pos[:, None] * omega)], 1)
    )
    grid = (3, 4, 5)
    emb3 = sincos_pos_embed(24, grid)
    coords = grid_positions(grid)
    assert emb3.shape == (60, 24)
    # Each axis owns a block of 8 features that depends on that coordinate only.
    for a in range(3):
        torch.testing.assert_close(emb3[:, 8 * a : 8 * (a + 1)], sincos_embedding_1d(8, coords[:, a]))
    assert torch.unique(emb3, dim=0).shape[0] == 60  # every grid cell gets its own code


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_rope_scores_depend_only_on_relative_position(ndim):
    torch.manual_seed(0)
    rope = RotaryEmbedding(head_dim=24, ndim=ndim)
    q, k = torch.randn(24), torch.randn(24)
    m, n = torch.randint(0, 20, (1, ndim)).float(), torch.randint(0, 20, (1, ndim)).float()
    shift = torch.randint(-7, 30, (1, ndim)).float()

    def score(pm, pn):
        qm = apply_rope(q[None], *rope(pm))
        kn = apply_rope(k[None], *rope(pn))
        return (qm * kn).sum()

    torch.testing.assert_close(score(m, n), score(m + shift, n + shift), rtol=1e-4, atol=1e-4)
    cos, sin = rope(torch.zeros(1, ndim))
    torch.testing.assert_close(apply_rope(q[None], cos, sin), q[None])  # position 0 is the identity
    qm = apply_rope(q[None], *rope(m))
    torch.testing.assert_close(qm.norm(), q.norm())  # a rotation preserves length
    other = torch.zeros(1, ndim)
    other[0, -1] = 1.0
    assert not torch.allclose(score(m, n), score(m, n + other))  # every axis, the last included, is used


def _naive_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)


def test_attend_matches_naive_softmax_attention_with_and_without_mask():
    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 4)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    torch.testing.assert_close(attend(q, k, v), _naive_attention(q, k, v), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attend(q, k, v, mask), _naive_attention(q, k, v, mask), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="bool key-padding mask"):
        attend(q, k, v, mask.float())


@pytest.mark.parametrize("qk_norm", [False, True])
def test_masked_self_attention_equals_attention_over_unpadded_tokens(qk_norm):
    torch.manual_seed(0)
    attn = Attention(16, 4, qk_norm=qk_norm).eval()
    lengths = [6, 3]
    x = torch.randn(2, 6, 16)
    mask = torch.arange(6)[None] < torch.tensor(lengths)[:, None]
    out = attn(x, mask=mask)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(out[b, :n], attn(x[b : b + 1, :n])[0], rtol=1e-5, atol=1e-5)


def test_masked_cross_attention_equals_attention_over_unpadded_context():
    torch.manual_seed(0)
    attn = CrossAttention(16, 10, 4, qk_norm=True).eval()
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 7, 10)
    lengths = [7, 2]
    mask = torch.arange(7)[None] < torch.tensor(lengths)[:, None]
    out = attn(x, ctx, mask)
    for b, m in enumerate(lengths):
        torch.testing.assert_close(out[b], attn(x[b : b + 1], ctx[b : b + 1, :m])[0], rtol=1e-5, atol=1e-5)


def test_qk_norm_gives_unit_rms_queries_and_keys():
    proj = QKVProjection(32, 4, qk_norm=True)
    q, k, v = proj(10 * torch.randn(2, 5, 32))
    assert q.shape == k.shape == v.shape == (2, 4, 5, 8)
    torch.testing.assert_close(q.pow(2).mean(-1), torch.ones(2, 4, 5), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(k.pow(2).mean(-1), torch.ones(2, 4, 5), rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="num_heads"):
        QKVProjection(30, 4)


def test_self_attention_with_rope_is_equivariant_to_shifting_all_positions():
    torch.manual_seed(0)
    attn = Attention(16, 2).eval()
    rope = RotaryEmbedding(8, ndim=1)
    x = torch.randn(1, 6, 16)
    pos = torch.arange(6.0)
    out = attn(x, rope=rope(pos))
    torch.testing.assert_close(attn(x, rope=rope(pos + 11.0)), out, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(attn(x, rope=rope(pos.flip(0))), out, atol=1e-3)


def test_drop_labels_rates():
    y = torch.arange(10) % 5
    torch.testing.assert_close(drop_labels(y, 0.0, 5), y)
    assert (drop_labels(y, 1.0, 5) == 5).all()
    g = torch.Generator().manual_seed(0)
    dropped = drop_labels(torch.zeros(20000, dtype=torch.long), 0.1, 7, generator=g)
    assert abs((dropped == 7).float().mean().item() - 0.1) < 0.01
    with pytest.raises(ValueError, match="prob"):
        drop_labels(y, 1.5, 5)


def test_sdpa_reference_is_used_for_attention():
    # attend() must agree with F.scaled_dot_product_attention itself (sanity of the head merge).
    q = torch.randn(1, 2, 3, 4)
    ref = F.scaled_dot_product_attention(q, q, q).transpose(1, 2).reshape(1, 3, 8)
    torch.testing.assert_close(attend(q, q, q), ref)


def test_rms_norm_formula_and_bf16_input():
    norm = RMSNorm(6)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 7.0))
    x = torch.randn(3, 6)
    ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), ref)
    out = norm(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
