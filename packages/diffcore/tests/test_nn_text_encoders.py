"""Text encoders from local folders: tiny random CLIP/T5 models and a WordLevel tokenizer, no downloads."""

import pytest
import torch

pytest.importorskip("transformers")
from diffcore.nn.mmdit import MMDiT, MMDiTConfig
from diffcore.nn.text_encoders import CLIPTextEncoder, MultiTextEncoder, T5TextEncoder
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    PreTrainedTokenizerFast,
    T5Config,
    T5EncoderModel,
)

WORDS = ["a", "photo", "of", "cat", "dog", "on", "the", "mat", "red", "blue", "big", "small"]
SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]  # EOS id 3: not CLIP's legacy eos id 2
VOCAB = {w: i for i, w in enumerate(SPECIALS + WORDS)}
PROMPTS = ["a photo of a red cat", "dog"]


def save_tokenizer(folder, template: str) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[("[BOS]", VOCAB["[BOS]"]), ("[EOS]", VOCAB["[EOS]"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]", unk_token="[UNK]"
    )
    fast.save_pretrained(folder)
    return fast


def save_clip(folder, width: int, proj: int | None, seed: int) -> None:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(VOCAB),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=12,
        projection_dim=proj or width,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    model = CLIPTextModelWithProjection(config) if proj else CLIPTextModel(config)
    model.save_pretrained(folder)
    save_tokenizer(folder, "[BOS] $A [EOS]")


def save_t5(folder, width: int = 40) -> None:
    torch.manual_seed(7)
    config = T5Config(
        vocab_size=len(VOCAB),
        d_model=width,
        d_kv=10,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=3,
        decoder_start_token_id=0,
    )
    T5EncoderModel(config).save_pretrained(folder)
    save_tokenizer(folder, "$A [EOS]")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("text_encoders")
    save_clip(root / "clip_l", 16, proj=12, seed=0)
    save_clip(root / "clip_g", 24, proj=20, seed=1)
    save_clip(root / "clip_plain", 16, proj=None, seed=2)
    save_t5(root / "t5")
    return root


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_clip_pooled_is_projected_final_feature_at_eos(folders):
    enc = CLIPTextEncoder.from_pretrained(folders / "clip_l")
    hidden, pooled, mask = enc(PROMPTS)
    assert hidden.shape == (2, 12, 16) and pooled.shape == (2, 12) and mask.shape == (2, 12)
    assert mask.sum(1).tolist() == [8, 3]  # BOS + words + EOS
    assert not any(p.requires_grad for p in enc.parameters())
    # Independent reference: project the final hidden state at each EOS position.
    eos = mask.sum(1) - 1
    ref = enc.model.text_projection(hidden[torch.arange(2), eos])
    torch.testing.assert_close(pooled, ref)


def test_clip_penultimate_layer_and_plain_model(folders):
    last = CLIPTextEncoder.from_pretrained(folders / "clip_l")
    penult = CLIPTextEncoder.from_pretrained(folders / "clip_l", hidden_layer=-2)
    ids, _ = last.tokenize(PROMPTS)
    states = last.model(input_ids=ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(penult(PROMPTS).hidden_states, states[-2])
    assert not torch.allclose(last(PROMPTS).hidden_states, states[-2])
    plain = CLIPTextEncoder.from_pretrained(folders / "clip_plain")
    assert not hasattr(plain.model, "text_projection") and plain.pooled_width == 16
    assert plain(PROMPTS).pooled.shape == (2, 16)
    with pytest.raises(ValueError, match="hidden_layer"):
        CLIPTextEncoder.from_pretrained(folders / "clip_l", hidden_layer=3)  # 2 layers: 3 hidden states
    half = CLIPTextEncoder.from_pretrained(folders / "clip_l", dtype=torch.bfloat16)
    assert half(PROMPTS).hidden_states.dtype == torch.bfloat16


def test_t5_padding_does_not_change_real_tokens(folders):
    enc = T5TextEncoder.from_pretrained(folders / "t5", max_length=10)
    hidden, pooled, mask = enc(PROMPTS)
    assert hidden.shape == (2, 10, 40) and pooled is None
    assert mask.sum(1).tolist() == [7, 2]  # words + EOS
    longer = T5TextEncoder.from_pretrained(folders / "t5", max_length=16)(PROMPTS[1:])
    torch.testing.assert_close(longer.hidden_states[0, :2], hidden[1, :2], rtol=1e-5, atol=1e-5)


def test_missing_folder_raises_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"path: .* not a local folder"):
        CLIPTextEncoder.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        T5TextEncoder.from_pretrained(tmp_path)


@pytest.fixture(scope="module")
def encoders(folders):
    clip_l = CLIPTextEncoder.from_pretrained(folders / "clip_l", hidden_layer=-2)
    clip_g = CLIPTextEncoder.from_pretrained(folders / "clip_g", hidden_layer=-2)
    t5 = T5TextEncoder.from_pretrained(folders / "t5", max_length=10)
    return clip_l, clip_g, t5


def test_multi_encoder_follows_the_sd3_recipe(encoders):
    clip_l, clip_g, t5 = encoders
    multi = MultiTextEncoder([clip_l, clip_g], t5)
    context, pooled, mask = multi(PROMPTS)
    assert multi.context_dim == 40 and multi.pooled_dim == 32
    assert context.shape == (2, 12 + 10, 40) and mask.shape == (2, 22) and pooled.shape == (2, 32)
    torch.testing.assert_close(pooled, torch.cat([clip_l(PROMPTS).pooled, clip_g(PROMPTS).pooled], -1))
    torch.testing.assert_close(context[:, :12, :16], clip_l(PROMPTS).hidden_states)
    torch.testing.assert_close(context[:, :12, 16:40], clip_g(PROMPTS).hidden_states)
    torch.testing.assert_close(context[:, 12:], t5(PROMPTS).hidden_states)
    assert mask[:, :12].all() and torch.equal(mask[:, 12:], t5(PROMPTS).mask)


def test_multi_encoder_without_t5_and_t5_alone(encoders):
    clip_l, clip_g, t5 = encoders
    full = MultiTextEncoder([clip_l, clip_g], t5)
    dropped = full(PROMPTS, use_t5=False)
    assert dropped.hidden_states.shape == (2, 12, 40)
    torch.testing.assert_close(dropped.hidden_states, full(PROMPTS).hidden_states[:, :12])
    assert dropped.mask.all()
    no_t5 = MultiTextEncoder([clip_l, clip_g], context_dim=48)(PROMPTS)
    assert no_t5.hidden_states.shape == (2, 12, 48) and (no_t5.hidden_states[..., 40:] == 0).all()
    t5_only = MultiTextEncoder([clip_l, clip_g], t5, clip_in_context=False)(PROMPTS)
    torch.testing.assert_close(t5_only.hidden_states, t5(PROMPTS).hidden_states)
    with pytest.raises(ValueError, match="context_dim"):
        MultiTextEncoder([clip_l, clip_g], context_dim=30)


def test_multi_encoder_conditions_an_mmdit(encoders):
    clip_l, clip_g, t5 = encoders
    multi = MultiTextEncoder([clip_l, clip_g], t5)
    model = MMDiT(
        MMDiTConfig(
            input_size=(8, 8),
            in_channels=4,
            hidden_size=32,
            depth=2,
            num_heads=4,
            pooled_dim=multi.pooled_dim,
            context_dim=multi.context_dim,
        )
    )
    context, pooled, mask = multi(PROMPTS)
    out = model(torch.randn(2, 4, 8, 8), torch.rand(2), context, mask, pooled)
    assert out.shape == (2, 4, 8, 8)
