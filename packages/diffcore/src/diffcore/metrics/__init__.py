"""Measures shared by the modality packages: the Frechet distance between feature sets (:mod:`.frechet`)."""

from diffcore.metrics.frechet import frechet_distance, frechet_distance_from_statistics, gaussian_statistics

__all__ = ["frechet_distance", "frechet_distance_from_statistics", "gaussian_statistics"]
