"""Probability paths: what ``x_t`` is and how a network's output turns into ``x0`` and ``eps``.

- :mod:`~diffcore.paths.schedules`: ``alpha(t)``, ``sigma(t)``, their derivatives and ``log_snr`` for every
  Gaussian path (VP, VE, EDM, rectified flow), ``t`` in [0, 1] with ``t = 0`` data.
- :mod:`~diffcore.paths.predictions`: the one place that converts between ``eps``, ``x0``, ``v``,
  ``velocity`` and ``score``.
- :mod:`~diffcore.paths.denoiser`: :class:`Denoiser` wraps ``(network, schedule, prediction)``; samplers,
  guidance and likelihood see only it.
- :mod:`~diffcore.paths.transitions`: ``q(x_t | x_0)``, the forward step ``q(x_t | x_s)`` and the posterior
  ``q(x_s | x_t, x_0)`` as tensors (Ho et al. 2020, Eq. 2, 4, 6-7).
- :mod:`~diffcore.paths.sde`: the forward and reverse SDEs of a schedule (Song et al. 2021).
- :mod:`~diffcore.paths.analytic`: Gaussian mixtures with exact noised marginals and denoisers (the answers
  tests and benchmarks compare against).
"""

from diffcore.paths import analytic, predictions, schedules, sde, transitions
from diffcore.paths.denoiser import Denoiser, DenoiserBase

__all__ = ["Denoiser", "DenoiserBase", "analytic", "predictions", "schedules", "sde", "transitions"]
