"""Guidance as :class:`~diffcore.paths.DenoiserBase` wrappers that samplers never see.

- :class:`ClassifierFreeGuidance` (Ho & Salimans 2022), with rescale and a guidance interval.
- :class:`ClassifierGuidance` (Dhariwal & Nichol 2021): adds ``scale * grad log p(y | x_t)``.
- :mod:`~diffcore.guidance.discrete`: classifier-free guidance of categorical (discrete diffusion) logits.
"""

from diffcore.guidance import discrete
from diffcore.guidance.wrappers import ClassifierFreeGuidance, ClassifierGuidance

__all__ = ["ClassifierFreeGuidance", "ClassifierGuidance", "discrete"]
