"""The spacetime DiT: adaLN-Zero start, what each attention form mixes, frame conditioning, any clip size."""

import pytest
import torch
from diff_video.models import TextEncoder, TextEncoderConfig, VideoDiT, VideoDiTConfig
from diffcore.rng import seeded


def _model(attention="factorised", depth=2, **kw):
    with seeded(0):
        m = VideoDiT(VideoDiTConfig(input_size=(4, 8, 8), patch_size=(1, 4, 4), hidden_size=48, depth=depth,
                                    num_heads=4, attention=attention, **kw))  # fmt: skip
        for p in m.parameters():  # leave adaLN-Zero's start so every path carries signal
            torch.nn.init.normal_(p, std=0.1)
    return m.eval()


@pytest.mark.parametrize("attention", ["full", "factorised"])
def test_a_fresh_model_outputs_exactly_zero(attention):
    with seeded(0):
        m = VideoDiT(VideoDiTConfig(input_size=(4, 8, 8), patch_size=(1, 4, 4), hidden_size=48, depth=2,
                                    num_heads=4, attention=attention, context_dim=16))  # fmt: skip
    out = m(torch.randn(2, 3, 4, 8, 8), torch.rand(2), context=torch.randn(2, 3, 16))
    assert out.shape == (2, 3, 4, 8, 8) and out.abs().max() == 0


def _block_influence(block_kind):
    """Does a change at frame 0, patch (0, 0) reach (other frame, same patch) and (same frame, other patch)?"""
    m = _model("full" if block_kind == "full" else "factorised", depth=2)
    block = m.blocks[0] if block_kind in ("full", "spatial") else m.blocks[1]
    assert block.kind == block_kind
    x = torch.randn(1, 4, 4, 48)  # (B, T', S, D)
    c = torch.randn(1, 4, 48)
    ropes = m._ropes((4, 2, 2), torch.device("cpu"))
    base = block(x, c, ropes[block_kind])
    y = x.clone()
    y[0, 0, 0] += 1.0
    diff = (block(y, c, ropes[block_kind]) - base).abs().sum(-1)[0]  # (T', S)
    return bool(diff[1:, 0].max() > 1e-6), bool(diff[0, 1:].max() > 1e-6)


def test_spatial_blocks_mix_within_a_frame_temporal_blocks_along_time_full_blocks_everywhere():
    assert _block_influence("spatial") == (False, True)
    assert _block_influence("temporal") == (True, False)
    assert _block_influence("full") == (True, True)


def test_frames_marked_given_are_modulated_at_t_zero():
    m = _model(num_classes=3)
    x, y = torch.randn(2, 3, 4, 8, 8), torch.tensor([0, 2])
    all_given = torch.ones(2, 4, dtype=torch.bool)
    torch.testing.assert_close(m(x, torch.rand(2), y=y, frame_mask=all_given), m(x, torch.zeros(2), y=y))
    first = torch.zeros(2, 4, dtype=torch.bool)
    first[:, 0] = True
    assert not torch.allclose(
        m(x, torch.full((2,), 0.7), y=y, frame_mask=first), m(x, torch.full((2,), 0.7), y=y)
    )


@pytest.mark.parametrize("attention", ["full", "factorised"])
def test_the_model_knows_which_frame_and_where_in_it_a_token_is(attention):
    """With RoPE alone a clip of identical frames gave identical output frames (and a constant clip a constant
    output): the model could not tell the first frame from the last, so it never learnt where a caption's direction
    puts the object at the start and at the end (direction adherence at chance). The absolute sin-cos embedding
    breaks that symmetry; ``pos_embed="none"`` shows the old behaviour."""
    still = torch.randn(1, 3, 1, 8, 8).expand(1, 3, 4, 8, 8).contiguous()
    flat = torch.full((1, 3, 4, 8, 8), 0.3)
    t = torch.tensor([0.9])
    with torch.no_grad():
        out, out_flat = _model(attention)(still, t), _model(attention)(flat, t)
        rope_only = _model("factorised", pos_embed="none")(still, t)
    assert ((out - out[:, :, :1]).abs().amax(dim=(0, 1, 3, 4))[1:] > 1e-3).all()  # every other frame differs
    assert (out_flat - out_flat[..., :4, :4].repeat(1, 1, 1, 2, 2)).abs().max() > 1e-3  # patches differ
    assert (rope_only - rope_only[:, :, :1]).abs().max() < 1e-5


@pytest.mark.parametrize("attention", ["full", "factorised"])
def test_the_model_is_not_equivariant_to_reversing_or_permuting_frames(attention):
    m = _model(attention)
    x, t = torch.randn(2, 3, 4, 8, 8), torch.rand(2)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out = m(x, t)
        assert (m(x.flip(2), t) - out.flip(2)).abs().max() > 1e-2 * out.abs().max()
        assert (m(x[:, :, perm], t) - out[:, :, perm]).abs().max() > 1e-2 * out.abs().max()


def test_the_condition_reaches_every_token_not_only_the_modulation():
    """With ``cond_tokens`` the class label (and the pooled caption) is added to every patch token, not only to
    the time embedding in front of the adaLN modulation's SiLU, where the much longer time embedding leaves it a
    weak signal (the label's rows barely move in training). With the adaLN label path cut (its table zeroed) the
    output still depends on the label through the tokens, and the token rows start as large as the patch tokens;
    the adaLN-only layout (``cond_tokens=False``) then ignores the label exactly."""
    x, t = torch.randn(2, 3, 4, 8, 8), torch.tensor([0.95, 0.95])
    outs = {}
    for on in (True, False):
        m = _model(num_classes=4, cond_tokens=on)
        with torch.no_grad():
            m.y_embedder.table.weight.zero_()
            outs[on] = m(x, t, y=torch.tensor([0, 0])), m(x, t, y=torch.tensor([2, 2]))
    assert (outs[True][0] - outs[True][1]).abs().max() > 1e-2 * outs[True][0].abs().max()
    assert torch.equal(outs[False][0], outs[False][1])
    with seeded(0):
        fresh = VideoDiT(
            VideoDiTConfig(
                input_size=(4, 8, 8), hidden_size=48, num_heads=4, depth=2, num_classes=4, cond_tokens=True
            )
        )
    rows = fresh.y_tokens.weight.norm(dim=1) / 48**0.5
    assert (rows > 0.7).all() and (fresh.y_embedder.table.weight.norm(dim=1) / 48**0.5 < 0.05).all()
    text = _model(context_dim=16, cond_tokens=True)
    pooled = torch.randn(2, 16)
    with torch.no_grad():  # the pooled caption's adaLN path cut: only its token path is left
        text.pooled_embedder[2].weight.zero_()
        text.pooled_embedder[2].bias.zero_()
        a = text(x, t, context=torch.zeros(2, 3, 16), pooled=pooled)
        b = text(x, t, context=torch.zeros(2, 3, 16), pooled=-pooled)
    assert (a - b).abs().max() > 1e-2 * a.abs().max()


def test_pos_embed_is_checked():
    with pytest.raises(ValueError, match="pos_embed"):
        VideoDiTConfig(pos_embed="learned")


@pytest.mark.parametrize("shape", [(1, 8, 8), (6, 8, 16), (4, 12, 4)])
def test_one_model_runs_any_length_and_resolution_divisible_by_its_patch(shape):
    out = _model()(torch.randn(1, 3, *shape), torch.rand(1))
    assert out.shape == (1, 3, *shape) and torch.isfinite(out).all()


def test_bad_inputs_are_refused_by_name():
    m = _model()
    with pytest.raises(ValueError, match="x: expected"):
        m(torch.randn(1, 3, 8, 8), torch.rand(1))
    with pytest.raises(ValueError, match="size"):
        m(torch.randn(1, 3, 4, 9, 8), torch.rand(1))
    with pytest.raises(ValueError, match="frame_mask"):
        m(torch.randn(1, 3, 4, 8, 8), torch.rand(1), frame_mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="depth"):
        VideoDiTConfig(depth=3, attention="factorised")


def test_the_text_encoder_names_words_it_never_saw():
    enc = TextEncoder(TextEncoderConfig(["a", "red", "square"], width=16, layers=1, heads=2, max_length=8))
    ids = enc.tokenize(["a red square", ""])
    assert ids[0, :4].tolist() == [1, 2, 3, 4] and ids[1, 0] == 1 and (ids[1, 1:] == 0).all()
    context, mask, pooled = enc(ids)
    assert context.shape == (2, 8, 16) and mask.sum().item() == 5 and pooled.shape == (2, 16)
    with pytest.raises(ValueError, match="'purple'"):
        enc.tokenize(["a purple square"])


def test_each_block_is_one_fsdp_unit_under_sharded_training():
    from diffcore.training.sharding import block_class_names

    m = _model(depth=2)
    assert block_class_names(m) == ["VideoDiTBlock"]  # TrainConfig(sharding="fsdp2") shards block by block
    assert sum(type(b).__name__ == "VideoDiTBlock" for b in m.modules()) == len(m.blocks) == 2


def test_a_folder_saved_before_pos_embed_and_cond_tokens_loads_as_it_was_built(tmp_path):
    """Folders written before ``pos_embed`` / ``cond_tokens`` existed lack the keys; they meant no position
    embedding and no label tokens, not today's defaults (``sincos``, on)."""
    import json

    from diffcore.pretrained import load_pretrained

    old = _model(num_classes=4, pos_embed="none", cond_tokens=False)
    old.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    for key in ("pos_embed", "cond_tokens"):
        del data["config"][key]
    (tmp_path / "config.json").write_text(json.dumps(data))
    loaded = load_pretrained(tmp_path).eval()
    assert (loaded.config.pos_embed, loaded.config.cond_tokens) == ("none", False)
    x, t, y = torch.randn(2, old.config.in_channels, 4, 8, 8), torch.rand(2), torch.tensor([1, 3])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, y=y), old(x, t, y=y))
