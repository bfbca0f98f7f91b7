"""Metrics of diff-image, all computed offline."""

from diff_image.metrics.adherence import AdherenceConfig, AdherenceReport, caption_adherence, check_image

__all__ = ["AdherenceConfig", "AdherenceReport", "caption_adherence", "check_image"]
