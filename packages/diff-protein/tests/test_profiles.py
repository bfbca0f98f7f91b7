"""Synthetic profile families: exact likelihood, sampling frequencies, separability, determinism."""

import math

import numpy as np
import pytest
import torch
from diff_protein.data.profiles import ProfileFamilies, ProfileFamiliesConfig
from diff_protein.data.sequences import tokenize
from scipy import stats


@pytest.fixture(scope="module")
def fams():
    return ProfileFamilies(ProfileFamiliesConfig(num_families=3, length=20, seed=1))


def test_profiles_are_distributions(fams):
    assert fams.profiles.shape == (3, 20, 20)
    torch.testing.assert_close(fams.profiles.sum(-1), torch.ones(3, 20, dtype=torch.float64))
    assert (fams.profiles > 0).all()


def test_log_likelihood_is_sum_of_position_log_probs(fams):
    x = fams.sample(torch.tensor([0, 1, 2, 2]), torch.Generator().manual_seed(0))
    ll = fams.log_likelihood(x)
    for i in range(4):
        for k in range(3):
            expected = sum(math.log(float(fams.profiles[k, j, x[i, j]])) for j in range(20))
            assert float(ll[i, k]) == pytest.approx(expected, abs=1e-10)
    torch.testing.assert_close(fams.posterior(x).sum(-1), torch.ones(4, dtype=torch.float64))


def test_sampled_frequencies_match_profile(fams):
    x = fams.sample(torch.full((4000,), 2), torch.Generator().manual_seed(1))
    for j in (0, 7, 19):
        counts = np.bincount(x[:, j].numpy(), minlength=20)
        expected = fams.profiles[2, j].numpy() * 4000
        keep = expected > 5
        chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
        assert chi2 < stats.chi2.ppf(0.999, keep.sum() - 1)


def test_bayes_classifier_recovers_family(fams):
    labels = torch.arange(3).repeat_interleave(200)
    x = fams.sample(labels, torch.Generator().manual_seed(2))
    accuracy = (fams.classify(x) == labels).double().mean()
    assert accuracy > 0.9
    # Families share the ancestral profile: identical families (w = 1 would) are not separable; ours are.
    same = ProfileFamilies(ProfileFamiliesConfig(num_families=3, length=20, shared_weight=1.0, kappa=1e4))
    acc_same = (
        (same.classify(same.sample(labels, torch.Generator().manual_seed(3))) == labels).double().mean()
    )
    assert acc_same < 0.6


def test_dataset_and_determinism(fams):
    ds = fams.dataset(5, torch.Generator().manual_seed(4))
    assert len(ds) == 15 and len(ds.vocabulary) == 4  # 3 taxa + unknown
    assert ds.vocabulary.decode(int(ds[14]["label"])) == "taxon_2"
    again = ProfileFamilies(ProfileFamiliesConfig(num_families=3, length=20, seed=1))
    torch.testing.assert_close(again.profiles, fams.profiles, atol=0, rtol=0)
    assert len(fams.consensus(0)) == 20
    torch.testing.assert_close(fams.log_likelihood(tokenize(fams.consensus(0))).argmax(), torch.tensor(0))


def test_bad_inputs_name_parameter(fams):
    with pytest.raises(ValueError, match="family"):
        fams.sample(5)
    with pytest.raises(ValueError, match="tokens"):
        fams.log_likelihood(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="shared_weight"):
        ProfileFamiliesConfig(shared_weight=2.0)
