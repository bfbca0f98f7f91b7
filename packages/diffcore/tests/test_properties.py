"""Property-based tests (hypothesis) of the public entry points: the schedules' coefficient functions, the
prediction conversions, the ``Denoiser`` and ``diffcore.sample``. Any combination of shape, dtype, schedule,
prediction, sampler and time either works (the documented shape and dtype, finite values) or raises a
ValueError / TypeError whose message names the argument; never an error from deep inside.

Example counts are small for a two-core CI (25-40 examples each, no deadline); the runs are derandomised, so a
failure reproduces on every machine."""

from __future__ import annotations

import inspect
import math
import re

import diffcore
import pytest
import torch
from diffcore.paths import schedules
from diffcore.paths.predictions import PREDICTIONS, PathCoefficients, convert, from_x0_eps, to_x0_eps
from diffcore.sampling.sample import sampler_options
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SCHEDULE_NAMES = schedules.available()
FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
ALL_DTYPES = [*FLOAT_DTYPES, torch.int64, torch.bool]
SAMPLERS = [s for s in diffcore.sampling.available() if s != "dopri5"]  # dopri5: adaptive, slow to shrink
# A clear refusal names what it refuses: "<argument>: expected ..." or Python's own keyword message.
CLEAR = re.compile(r"^(\w[\w\[\]'. ,()-]*: |sample\(\) got an unexpected keyword|sampling \()")

times = st.one_of(
    st.floats(min_value=0.0, max_value=1.0),
    st.sampled_from([0.0, 1.0, -0.0, 1e-12, 1 - 1e-12]),
    st.floats(allow_nan=True, allow_infinity=True),
)
shapes = st.lists(st.integers(min_value=0, max_value=3), min_size=0, max_size=3).map(tuple)


def _clear(exc: Exception) -> bool:
    return isinstance(exc, (ValueError, TypeError)) and bool(CLEAR.match(str(exc)))


def _in_unit_interval(t) -> bool:
    if isinstance(t, torch.Tensor):
        return t.numel() == 0 or bool(((t >= 0) & (t <= 1)).all())
    return 0.0 <= t <= 1.0


@SETTINGS
@given(
    name=st.sampled_from(SCHEDULE_NAMES),
    t=st.one_of(times, st.tuples(shapes, st.sampled_from(ALL_DTYPES), st.floats(-0.5, 1.5))),
)
def test_schedule_coefficients_work_or_refuse_clearly(name, t):
    sched = schedules.get(name)
    if isinstance(t, tuple):  # a tensor of times, filled with one value
        shape, dtype, value = t
        t = torch.full(shape, value, dtype=torch.float64).to(dtype)
    for method in (sched.alpha, sched.sigma, sched.d_alpha, sched.d_sigma, sched.log_snr):
        try:
            out = method(t)
        except (ValueError, TypeError) as exc:
            assert _clear(exc), repr(exc)
            assert not (_in_unit_interval(t) and isinstance(t, float)), repr(
                exc
            )  # a float time in range works
            continue
        assert _in_unit_interval(t) or (isinstance(t, torch.Tensor) and t.dtype == torch.bool)
        expected_shape = t.shape if isinstance(t, torch.Tensor) else ()
        assert out.shape == expected_shape
        if method is not sched.log_snr and out.is_floating_point():
            assert not bool(torch.isnan(out).any()), (method.__name__, t)


@SETTINGS
@given(
    name=st.sampled_from(SCHEDULE_NAMES),
    source=st.sampled_from(PREDICTIONS),
    target=st.sampled_from(PREDICTIONS),
    batch=st.integers(1, 4),
    tail=shapes,
    t=st.floats(0.02, 0.98),
)
def test_conversions_round_trip_for_any_shape(name, source, target, batch, tail, t):
    sched = schedules.get(name)
    g = torch.Generator().manual_seed(0)
    shape = (batch, *tail)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    c = PathCoefficients.at(sched, torch.full((batch,), t, dtype=torch.float64), len(shape))
    x_t = c.alpha * x0 + c.sigma * eps
    pred = from_x0_eps(x0, eps, source, c)
    back_x0, back_eps = to_x0_eps(pred, source, x_t, c)
    torch.testing.assert_close(back_x0, x0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(back_eps, eps, rtol=1e-6, atol=1e-6)
    out = convert(pred, source, target, x_t, c)
    assert out.shape == shape
    torch.testing.assert_close(out, from_x0_eps(x0, eps, target, c), rtol=1e-6, atol=1e-6)


@SETTINGS
@given(bad=st.text(max_size=8).filter(lambda s: s not in PREDICTIONS))
def test_unknown_prediction_names_are_refused(bad):
    with pytest.raises(ValueError, match="prediction: expected one of"):
        diffcore.Denoiser(lambda x, t: x, "vp-cosine", bad)


@SETTINGS
@given(
    name=st.sampled_from(SCHEDULE_NAMES),
    prediction=st.sampled_from(PREDICTIONS),
    shape=st.one_of(
        st.lists(st.integers(1, 3), min_size=1, max_size=4), st.lists(st.integers(0, 3), max_size=4)
    ).map(tuple),
    dtype=st.one_of(st.sampled_from(FLOAT_DTYPES), st.sampled_from(ALL_DTYPES)),
    t=st.one_of(times, st.integers(-1, 3).map(lambda n: ("tensor", n))),
    kind=st.sampled_from(PREDICTIONS),
)
def test_denoiser_works_or_refuses_clearly(name, prediction, shape, dtype, t, kind):
    den = diffcore.Denoiser(lambda x, tt: 0.5 * x, name, prediction)
    x = torch.ones(shape, dtype=torch.float64).to(dtype)
    if isinstance(t, tuple):  # per-sample times, of a batch size that may not match
        t = torch.linspace(0, 1, max(t[1], 0), dtype=torch.float64)
    try:
        out = den.predict(kind, x, t)
    except (ValueError, TypeError) as exc:
        assert _clear(exc), repr(exc)
        event(f"refused: {str(exc).split(':')[0]}")
        return
    event("predicted")
    assert x.is_floating_point() and x.ndim >= 1 and _in_unit_interval(t)
    assert out.shape == x.shape and out.dtype == x.dtype


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    name=st.sampled_from(SCHEDULE_NAMES),
    prediction=st.sampled_from(PREDICTIONS),
    sampler=st.sampled_from(SAMPLERS),
    shape=st.one_of(
        st.lists(st.integers(1, 3), min_size=1, max_size=3), st.lists(st.integers(0, 3), max_size=3)
    ).map(tuple),
    dtype=st.one_of(st.sampled_from(FLOAT_DTYPES), st.sampled_from(ALL_DTYPES)),
    steps=st.integers(0, 4),
    grid=st.sampled_from([None, "uniform", "log-snr", "karras", "trailing"]),
)
def test_sample_works_or_refuses_clearly(name, prediction, sampler, shape, dtype, steps, grid):
    """An exact network for standard-normal data (``x0 = alpha x / D``, ``eps = sigma x / D``) in every
    parameterisation: whatever the combination, sampling returns finite samples shaped and typed like the noise,
    or refuses with a clear ValueError / TypeError."""
    sched = schedules.get(name)

    def exact(x, tt):
        c = PathCoefficients.at(sched, tt.double(), x.ndim)
        xd = x.double()
        d = c.alpha**2 + c.sigma**2
        return from_x0_eps(c.alpha * xd / d, c.sigma * xd / d, prediction, c).to(x.dtype)

    den = diffcore.Denoiser(exact, sched, prediction)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    try:
        out = diffcore.sample(den, noise, sampler=sampler, steps=steps, grid=grid,
                              generator=torch.Generator().manual_seed(1))  # fmt: skip
    except (ValueError, TypeError) as exc:
        assert _clear(exc), repr(exc)
        event(f"refused: {str(exc).split(':')[0]}")
        return
    event("sampled")
    assert noise.is_floating_point() and noise.ndim >= 1 and noise.shape[0] >= 1 and steps >= 1
    assert out.shape == noise.shape and out.dtype == noise.dtype
    assert bool(torch.isfinite(out).all())


@SETTINGS
@given(option=st.from_regex(r"[a-z_]{1,10}", fullmatch=True), sampler=st.sampled_from(SAMPLERS))
def test_any_unknown_option_is_named(option, sampler):
    own = sampler_options(diffcore.sampling.get(sampler)) or ()
    public = set(inspect.signature(diffcore.sample).parameters)
    if option in own or option in public:
        return
    with pytest.raises(TypeError, match=rf"^sample\(\) got an unexpected keyword argument '{option}'"):
        diffcore.sample(diffcore.Denoiser(lambda x, t: x, "vp-cosine", "eps"), torch.randn(2, 3), sampler, 2,
                        **{option: 1})  # fmt: skip


def test_property_settings_stay_small():
    assert SETTINGS.max_examples <= 50 and SETTINGS.deadline is None
    assert math.isfinite(SETTINGS.max_examples)
