"""Discrete diffusion in continuous time: absorbing (masked) and uniform processes.

Shared by language (BD3-LM / MDLM), protein sequences and crystal atom types. Time ``t`` in [0, 1],
``t = 0`` data, ``t = 1`` noise; ``alpha(t)`` is the probability that a token is still clean.

- :mod:`~diffcore.discrete.schedules`: log-linear, linear, cosine, polynomial ``alpha(t)``.
- :mod:`~diffcore.discrete.corruption`: forward corruption ``q(x_t | x_0)``.
- :mod:`~diffcore.discrete.parameterization`: MDLM's SUBS parameterisation.
- :mod:`~diffcore.discrete.nelbo`: continuous-time NELBO per token (masked and uniform).
- :mod:`~diffcore.discrete.times`: antithetic and clipped time sampling.
- :mod:`~diffcore.discrete.categorical`: Gumbel-max in float64, temperature and nucleus sampling.
- :mod:`~diffcore.discrete.samplers`: ancestral (with prediction caching), first-hitting, uniform ancestral.
- :mod:`~diffcore.discrete.exact`: exact denoisers of enumerable distributions (test references).
"""

from diffcore.discrete.categorical import sample_categorical, shape_log_probs
from diffcore.discrete.corruption import mask_tokens, uniform_resample
from diffcore.discrete.exact import EnumerableDistribution
from diffcore.discrete.nelbo import masked_nelbo_terms, uniform_nelbo_terms
from diffcore.discrete.parameterization import subs_log_probs
from diffcore.discrete.samplers import (
    DiscreteDenoiser,
    masked_ancestral_sample,
    masked_first_hitting_sample,
    time_grid,
    uniform_ancestral_sample,
)
from diffcore.discrete.schedules import (
    Cosine,
    DiscreteSchedule,
    Linear,
    LogLinear,
    Polynomial,
    available_discrete_schedules,
    get_discrete_schedule,
)
from diffcore.discrete.times import sample_times

__all__ = [
    "Cosine",
    "DiscreteDenoiser",
    "DiscreteSchedule",
    "EnumerableDistribution",
    "Linear",
    "LogLinear",
    "Polynomial",
    "available_discrete_schedules",
    "get_discrete_schedule",
    "mask_tokens",
    "masked_ancestral_sample",
    "masked_first_hitting_sample",
    "masked_nelbo_terms",
    "sample_categorical",
    "sample_times",
    "shape_log_probs",
    "subs_log_probs",
    "time_grid",
    "uniform_ancestral_sample",
    "uniform_nelbo_terms",
    "uniform_resample",
]
