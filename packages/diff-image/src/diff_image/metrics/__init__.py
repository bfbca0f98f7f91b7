"""Metrics of diff-image, all computed offline.

* :mod:`~diff_image.metrics.classifier`: the package's own evaluation CNN (class accuracy, features);
* :mod:`~diff_image.metrics.frechet`: Frechet distance in that CNN's feature space (not Inception), and
  optional standard Inception FID through torchmetrics with a local weights file;
* :mod:`~diff_image.metrics.precision_recall`: improved precision / recall (Kynkaanniemi et al. 2019);
* :mod:`~diff_image.metrics.adherence`: caption adherence of shapes images, read from the pixels.
"""

from diff_image.metrics.adherence import AdherenceConfig, AdherenceReport, caption_adherence, check_image
from diff_image.metrics.classifier import (
    ClassifierConfig,
    ClassifierTraining,
    FeatureClassifier,
    classifier_accuracy,
    digits_classifier,
    extract_features,
    load_or_train_classifier,
    shapes_classifier,
)
from diff_image.metrics.frechet import (
    classifier_frechet_distance,
    frechet_distance,
    frechet_distance_from_statistics,
    inception_fid,
)
from diff_image.metrics.precision_recall import PrecisionRecall, precision_recall

__all__ = [
    "AdherenceConfig",
    "AdherenceReport",
    "ClassifierConfig",
    "ClassifierTraining",
    "FeatureClassifier",
    "PrecisionRecall",
    "caption_adherence",
    "check_image",
    "classifier_accuracy",
    "classifier_frechet_distance",
    "digits_classifier",
    "extract_features",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "inception_fid",
    "load_or_train_classifier",
    "precision_recall",
    "shapes_classifier",
]
