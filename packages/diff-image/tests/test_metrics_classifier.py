"""The evaluation classifier: digits accuracy, caching on disk, features for the Frechet distance."""

import json
import time

import pytest
import torch
from diff_image.data.digits import DigitsDataset
from diff_image.data.shapes import ShapesConfig, ShapesDataset
from diff_image.metrics import classifier as classifier_module
from diff_image.metrics.classifier import (
    ClassifierConfig,
    ClassifierTraining,
    FeatureClassifier,
    classifier_accuracy,
    digits_classifier,
    extract_features,
    shapes_classifier,
    shapes_label,
)
from diff_image.metrics.frechet import classifier_frechet_distance


@pytest.fixture
def one_thread():
    # Two cores shared by many processes: one thread avoids oversubscription.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_digits_classifier_accuracy_and_cache(tmp_path, one_thread, monkeypatch, record_property):
    training = ClassifierTraining(epochs=10)
    model = digits_classifier(cache_dir=tmp_path, training=training)
    test = DigitsDataset("test")
    accuracy = classifier_accuracy(model, test.images, test.labels)
    assert accuracy >= 0.95

    folders = list(tmp_path.iterdir())
    assert len(folders) == 1 and (folders[0] / "model.safetensors").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier was retrained")

    monkeypatch.setattr(classifier_module, "train_classifier", no_training)  # loaded, not retrained
    start = time.perf_counter()
    again = digits_classifier(cache_dir=tmp_path, training=training)
    record_property(
        "cached_load_seconds", round(time.perf_counter() - start, 3)
    )  # a measurement, not a bound
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)

    logits, feats = model.forward_features(test.images[:7])
    assert logits.shape == (7, 10) and feats.shape == (7, model.config.feature_dim)

    # Frechet distance in its feature space: a set against itself ~0, train vs test small,
    # test vs a class-collapsed set (all zeros) much larger.
    train = DigitsDataset("train")
    same = classifier_frechet_distance(model, test.images, test.images)
    near = classifier_frechet_distance(model, train.images, test.images)
    zeros = test.images[test.labels == 0]
    far = classifier_frechet_distance(model, test.images, zeros)
    assert same == pytest.approx(0.0, abs=1e-6)
    assert far > 5 * near


def test_features_are_deterministic_and_size_agnostic():
    model = FeatureClassifier(ClassifierConfig(in_channels=3, num_classes=4)).eval()
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    f1, f2 = extract_features(model, x, batch_size=2), extract_features(model, x)
    assert torch.allclose(f1, f2, atol=1e-5)
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 4)
    with pytest.raises(ValueError, match="x: expected"):
        model(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="widths"):
        ClassifierConfig(widths=(10, 20))


def test_shapes_classifier_labels_and_cache(tmp_path, one_thread):
    # One shape, three colours: a task the classifier must solve almost perfectly in a few steps, so
    # a wrong label mapping (labels not matching the rendered colour) would show as ~1/3 accuracy.
    cfg = ShapesConfig(image_size=16, colours=("red", "green", "blue"), shapes=("square",))
    assert [shapes_label(c, "square", cfg) for c in cfg.colours] == [0, 1, 2]
    training = ClassifierTraining(epochs=4, batch_size=32)
    model = shapes_classifier(cfg, num_train=200, cache_dir=tmp_path, training=training)
    assert model.config.in_channels == 3 and model.config.num_classes == 3
    (folder,) = list(tmp_path.iterdir())
    info = json.loads((folder / "training.json").read_text())
    assert info["num_train"] == 200 and info["eval_accuracy"] >= 0.95
    ds = ShapesDataset(30, seed=123, config=cfg)
    images = torch.stack([ds[i]["image"] for i in range(30)])
    truth = torch.tensor([shapes_label(ds.sample(i).objects[0].colour, "square", cfg) for i in range(30)])
    one_object = torch.tensor([len(ds.sample(i).objects) == 1 for i in range(30)])
    assert classifier_accuracy(model, images[one_object], truth[one_object]) >= 0.9
