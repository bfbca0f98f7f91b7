"""The latent DiT: shapes of both latent kinds, adaLN-Zero start, class and caption conditions."""

import pytest
import torch
from diff_3d.models import LatentDiT, LatentDiTConfig


def test_a_fresh_model_outputs_zero_for_token_and_grid_latents():
    for size, patch in [((8,), 1), ((4, 4, 4), 2)]:
        model = LatentDiT(
            LatentDiTConfig(
                input_size=size, patch_size=patch, in_channels=6, hidden_size=32, num_heads=2, depth=2
            )
        )
        x = torch.randn(3, 6, *size)
        with torch.no_grad():
            out = model(x, torch.rand(3))
        assert out.shape == x.shape and float(out.abs().max()) == 0.0


def test_captions_are_bags_of_words_and_the_empty_caption_is_the_null_condition():
    torch.manual_seed(0)
    model = LatentDiT(LatentDiTConfig(input_size=(4,), in_channels=2, hidden_size=32, num_heads=2, depth=1,
                                      vocabulary=["a", "cube", "red", "torus"], max_words=4))  # fmt: skip
    ids = model.tokenize(["a red torus", "torus red a", ""])
    assert ids.tolist() == [[1, 3, 4, 0], [4, 3, 1, 0], [0, 0, 0, 0]]
    c = model._condition(torch.zeros(3), None, ids)
    torch.testing.assert_close(c[0], c[1])  # the order of the words carries nothing
    null = model._condition(torch.zeros(1), None, None)
    torch.testing.assert_close(c[2], null[0])
    with pytest.raises(ValueError, match="'sphere'"):
        model.tokenize(["a red sphere"])
    with pytest.raises(ValueError, match="max_words"):
        model.tokenize(["a a a a a"])


def test_conditions_a_model_does_not_take_are_refused():
    model = LatentDiT(LatentDiTConfig(input_size=(4,), in_channels=2, hidden_size=32, num_heads=2, depth=1))
    with pytest.raises(ValueError, match="y: this model is not class-conditional"):
        model(torch.zeros(1, 2, 4), torch.zeros(1), y=torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="x: expected"):
        model(torch.zeros(1, 3, 4), torch.zeros(1))
