"""sklearn digits: fixed stratified split, value range, padding / resizing."""

import numpy as np
import pytest
import torch
from diff_image.data.digits import DigitsDataset, digits_split_indices
from sklearn.datasets import load_digits


def test_fixed_stratified_split():
    train, test = digits_split_indices("train"), digits_split_indices("test")
    assert len(train) == 1437 and len(test) == 360
    assert not set(train) & set(test) and set(train) | set(test) == set(range(1797))
    labels = load_digits().target
    counts = np.bincount(labels[test], minlength=10)
    expected = np.bincount(labels, minlength=10) * 360 / 1797
    assert np.abs(counts - expected).max() <= 1  # stratified
    assert np.array_equal(digits_split_indices("test"), test)  # fixed across calls


def test_values_and_labels_match_sklearn():
    ds = DigitsDataset("test")
    raw = load_digits()
    idx = ds.indices.numpy()
    assert ds.images.shape == (360, 1, 8, 8)
    assert torch.allclose(ds.images[:, 0], torch.from_numpy(raw.images[idx] / 8.0 - 1.0).float())
    assert torch.equal(ds.labels, torch.from_numpy(raw.target[idx]))
    assert ds.images.min() == -1.0 and ds.images.max() == 1.0
    image, label = ds[5]
    assert image.shape == (1, 8, 8) and label == int(raw.target[idx[5]])


@pytest.mark.parametrize("size", [16, 32])
def test_pad_and_resize(size):
    native = DigitsDataset("test")
    padded = DigitsDataset("test", size=size, resize="pad")
    p = (size - 8) // 2
    assert padded.images.shape == (360, 1, size, size)
    assert torch.equal(padded.images[:, :, p : p + 8, p : p + 8], native.images)
    assert (padded.images[:, :, :p] == -1).all()
    resized = DigitsDataset("test", size=size, resize="bilinear")
    assert resized.images.shape == (360, 1, size, size)
    assert resized.images.min() >= -1 and resized.images.max() <= 1
    assert torch.allclose(resized.images.mean(), native.images.mean(), atol=0.05)


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        DigitsDataset(size=12)
    with pytest.raises(ValueError, match="split"):
        DigitsDataset(split="val")
