"""TaxDiff-style sequence diffusion: the denoiser, discrete CFG, the NELBO objective, and sampling with the
exact conditional denoiser of the profile families."""

from __future__ import annotations

import pytest
import torch
from diff_protein.data.profiles import ProfileFamilies, ProfileFamiliesConfig
from diff_protein.data.sequences import MASK_TOKEN
from diff_protein.diffusion.sequence import (
    GuidedSequenceDenoiser,
    SequenceObjective,
    collate_sequences,
    sample_sequences,
)
from diff_protein.models.sequence import (
    SequenceDenoiser,
    SequenceDenoiserConfig,
    TaxonomyClassifier,
    TaxonomyClassifierConfig,
)
from diffcore.guidance.discrete import guided_log_probs
from torch import nn


def _model(num_classes: int = 3) -> SequenceDenoiser:
    torch.manual_seed(0)
    model = SequenceDenoiser(
        SequenceDenoiserConfig(num_classes=num_classes, hidden_size=16, depth=1, num_heads=2)
    )
    for block in model.blocks:  # adaLN-Zero starts as identity; perturb so labels matter
        nn.init.normal_(block.modulation.weight, std=0.1)
    nn.init.normal_(model.final_mod.weight, std=0.1)
    return model


def test_denoiser_shapes_labels_and_padding() -> None:
    model = _model()
    x = torch.randint(0, 21, (2, 7))
    t = torch.rand(2)
    out = model(x, t, y=torch.tensor([0, 1]))
    assert out.shape == (2, 7, 21)
    assert not torch.allclose(model(x, t, y=torch.tensor([1, 1])), model(x, t, y=torch.tensor([2, 2])))
    padded = torch.cat([x, torch.full((2, 3), MASK_TOKEN)], 1)
    mask = torch.tensor([[True] * 7 + [False] * 3] * 2)
    torch.testing.assert_close(
        model(padded, t, y=None, mask=mask)[:, :7], model(x, t, y=None), atol=1e-5, rtol=1e-5
    )
    with pytest.raises(ValueError, match="y: expected labels"):
        model(x, t, y=torch.tensor([0, 9]))


def test_guided_log_probs_limits() -> None:
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    cond[:, -1] = uncond[:, -1] = float("-inf")
    torch.testing.assert_close(guided_log_probs(cond, uncond, 1.0), torch.log_softmax(cond, -1))
    torch.testing.assert_close(guided_log_probs(cond, uncond, 0.0), torch.log_softmax(uncond, -1))
    w3 = guided_log_probs(cond, uncond, 3.0)
    torch.testing.assert_close(w3.exp().sum(-1), torch.ones(4))
    assert torch.isinf(w3[:, -1]).all()
    # ratio form: log p_w = l_u + w (l_c - l_u) up to normalisation
    lc, lu = torch.log_softmax(cond[:, :-1], -1), torch.log_softmax(uncond[:, :-1], -1)
    torch.testing.assert_close(w3[:, :-1], torch.log_softmax(lu + 3 * (lc - lu), -1))


def test_objective_is_finite_and_ignores_padding() -> None:
    model = _model()
    items = [
        {"tokens": torch.randint(0, 20, (6,)), "label": torch.tensor(1)},
        {"tokens": torch.randint(0, 20, (9,)), "label": torch.tensor(2)},
    ]
    batch = collate_sequences(items)
    assert batch["tokens"].shape == (2, 9) and batch["mask"].sum() == 15
    loss, logs = SequenceObjective(p_uncond=0.5)(model, batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and "nelbo_per_residue" in logs
    with pytest.raises(ValueError, match="p_uncond"):
        SequenceObjective(p_uncond=1.5)


class _ExactProfileDenoiser(nn.Module):
    """Logits = log profile of the requested family; the null label gets the uniform mixture of families.

    Profiles have independent positions, so this is the exact ``p(x_0 | x_t, y)`` at masked positions.
    """

    def __init__(self, families: ProfileFamilies) -> None:
        super().__init__()
        k = families.num_families
        self.null_class = k + 1
        log_p = torch.log(families.profiles.float())  # (K, L, 20)
        mixture = torch.logsumexp(log_p, 0, keepdim=True) - torch.log(torch.tensor(float(k)))
        table = torch.cat([mixture, log_p, mixture])  # id 0 = unknown, 1..K families, K+1 null
        self.register_buffer("table", torch.cat([table, torch.full((k + 2, families.length, 1), -1e9)], -1))
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t, y=None, mask=None):
        if y is None:
            y = torch.full((x_t.shape[0],), self.null_class, dtype=torch.long)
        return self.table[y]


def test_cfg_sampling_with_the_exact_denoiser_follows_the_labels() -> None:
    families = ProfileFamilies(ProfileFamiliesConfig(num_families=3, length=24, shared_weight=0.8, seed=1))
    model = _ExactProfileDenoiser(families)
    labels = torch.arange(1, 4).repeat_interleave(40)
    g = torch.Generator().manual_seed(0)
    adherence = {}
    for w in (0.0, 1.0, 3.0):
        x = sample_sequences(model, labels, 24, steps=12, guidance_scale=w, generator=g)
        assert x.shape == (120, 24) and (x != MASK_TOKEN).all()
        adherence[w] = float((families.classify(x) == labels - 1).float().mean())
    # Bayes accuracy of true samples, the reference for w = 1
    true = families.sample(labels - 1, torch.Generator().manual_seed(2))
    bayes = float((families.classify(true) == labels - 1).float().mean())
    assert abs(adherence[1.0] - bayes) < 0.12
    assert adherence[0.0] < 0.6 < adherence[3.0]
    assert adherence[3.0] >= adherence[1.0] - 0.02


def test_guided_denoiser_batches_both_branches() -> None:
    calls = []

    class Counting(_ExactProfileDenoiser):
        def forward(self, x_t, t, y=None, mask=None):
            calls.append(x_t.shape[0])
            return super().forward(x_t, t, y, mask)

    model = Counting(ProfileFamilies(ProfileFamiliesConfig(num_families=2, length=5)))
    den = GuidedSequenceDenoiser(model, torch.tensor([1, 2]), scale=2.0)
    out = den(torch.full((2, 5), MASK_TOKEN), torch.ones(2))
    assert calls == [4] and out.shape == (2, 5, 21)


def test_classifier_shapes_and_mask() -> None:
    torch.manual_seed(0)
    clf = TaxonomyClassifier(
        TaxonomyClassifierConfig(num_classes=4, hidden_size=16, depth=1, num_heads=2)
    ).eval()
    x = torch.randint(0, 20, (3, 10))
    assert clf(x).shape == (3, 4)
    padded = torch.cat([x, torch.full((3, 4), MASK_TOKEN)], 1)
    mask = torch.cat([torch.ones(3, 10, dtype=torch.bool), torch.zeros(3, 4, dtype=torch.bool)], 1)
    torch.testing.assert_close(clf(padded, mask), clf(x), atol=1e-5, rtol=1e-5)
