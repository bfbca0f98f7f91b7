"""Backbones built for images meet the network contract; the text encoder tokenizes, encodes and round-trips."""

import pytest
import torch
from diff_image.config import ImageModelConfig
from diff_image.models import TextConditionedModel, TextEncoder, build_backbone, caption_vocabulary

WORDS = caption_vocabulary(["a red circle to the left of a blue square", "a green diamond"])


@pytest.mark.parametrize("backbone", ["dit", "unet"])
def test_class_backbones_keep_the_shape_and_use_labels(backbone):
    torch.manual_seed(0)
    cfg = ImageModelConfig(
        backbone=backbone, width=32, depth=1, heads=2, channel_mult=(1, 2), attention_levels=(1,)
    )
    net = build_backbone(cfg, (1, 8, 8), num_classes=10)
    for p in net.parameters():  # DiT zero-initialises its output: give every weight a value
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    out_a = net(x, t, y=torch.zeros(4, dtype=torch.long))
    out_b = net(x, t, y=torch.full((4,), 10, dtype=torch.long))  # the null class
    assert out_a.shape == x.shape
    assert not torch.allclose(out_a, out_b)


def test_text_encoder_tokenizes_with_bos_eos_and_pads():
    enc = TextEncoder.from_scratch(WORDS, width=32, layers=1, heads=2, max_length=12)
    ids = enc.tokenize(["a red circle", ""])
    tok = enc.tokenizer
    assert ids.shape == (2, 12)
    assert ids[0, 0] == tok.bos_token_id and ids[0, 4] == tok.eos_token_id and ids[0, 5] == tok.pad_token_id
    assert ids[1, 1] == tok.eos_token_id
    assert tok.unk_token_id not in ids[0].tolist()
    context, mask, pooled = enc(ids)
    assert context.shape == (2, 12, 32) and pooled.shape == (2, 32)
    assert mask[0].sum() == 5 and mask[1].sum() == 2


def test_text_encoder_save_load_round_trip(tmp_path):
    enc = TextEncoder.from_scratch(WORDS, width=32, layers=1, heads=2, max_length=12).eval()
    enc.save_pretrained(tmp_path / "te")
    back = TextEncoder.from_pretrained(tmp_path / "te").eval()
    ids = enc.tokenize(["a blue square to the left of a green diamond"])
    assert torch.equal(ids, back.tokenize(["a blue square to the left of a green diamond"]))
    for a, b in zip(enc(ids), back(ids), strict=True):
        torch.testing.assert_close(a, b)


def test_mmdit_text_model_depends_on_the_prompt():
    torch.manual_seed(0)
    enc = TextEncoder.from_scratch(WORDS, width=32, layers=1, heads=2, max_length=12)
    cfg = ImageModelConfig(backbone="mmdit", conditioning="text", width=32, depth=2, heads=2, patch_size=2)
    net = TextConditionedModel(build_backbone(cfg, (3, 8, 8), context_dim=32, pooled_dim=32), enc)
    for p in net.backbone.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    a = net(x, t, input_ids=enc.tokenize(["a red circle", "a red circle"]))
    b = net(x, t, input_ids=enc.tokenize(["a blue square", "a blue square"]))
    assert a.shape == x.shape and not torch.allclose(a, b)


def test_text_conditioned_model_saves_and_loads_its_parts(tmp_path):
    torch.manual_seed(0)
    enc = TextEncoder.from_scratch(WORDS, width=32, layers=1, heads=2, max_length=12)
    cfg = ImageModelConfig(backbone="mmdit", conditioning="text", width=32, depth=1, heads=2, patch_size=2)
    net = TextConditionedModel(build_backbone(cfg, (3, 8, 8), context_dim=32, pooled_dim=32), enc, False)
    for p in net.backbone.parameters():
        torch.nn.init.normal_(p, std=0.05)
    folder = net.save_pretrained(tmp_path / "net")
    assert (folder / "model" / "model.safetensors").is_file() and (folder / "text_encoder").is_dir()
    back = TextConditionedModel.from_pretrained(folder)
    assert not back.train_text_encoder and not any(p.requires_grad for p in back.text_encoder.parameters())
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    ids = enc.tokenize(["a red circle", "a green diamond"])
    torch.testing.assert_close(back(x, t, input_ids=ids), net(x, t, input_ids=ids))
    assert net.supports_save_pretrained
    with pytest.raises(FileNotFoundError, match=r"text_conditioned\.json"):
        TextConditionedModel.from_pretrained(tmp_path / "net" / "model")


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="conditioning"):
        ImageModelConfig(backbone="mmdit", conditioning="class")
    with pytest.raises(ValueError, match="backbone"):
        build_backbone(ImageModelConfig(backbone="dit", conditioning="text"), (3, 8, 8), context_dim=8)
    with pytest.raises(ValueError, match="num_classes"):
        build_backbone(ImageModelConfig(conditioning="class"), (1, 8, 8), num_classes=0)


def test_local_t5_folder_loads_frozen_with_masked_mean_pooling(tmp_path):
    from transformers import T5Config, T5EncoderModel

    clip = TextEncoder.from_scratch(WORDS, width=16, layers=1, heads=2, max_length=10)
    config = T5Config(vocab_size=len(clip.tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                      pad_token_id=clip.tokenizer.pad_token_id)  # fmt: skip
    T5EncoderModel(config).save_pretrained(tmp_path / "t5")
    clip.tokenizer.save_pretrained(tmp_path / "t5")
    enc = TextEncoder.from_pretrained(tmp_path / "t5", max_length=10)
    assert enc.kind == "t5" and enc.width == 16
    assert not any(p.requires_grad for p in enc.parameters())
    ids = enc.tokenize(["a red circle"])
    context, mask, pooled = enc(ids)
    m = mask.unsqueeze(-1).float()
    torch.testing.assert_close(pooled, (context * m).sum(1) / m.sum(1))
