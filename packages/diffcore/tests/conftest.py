"""Fixtures shared by the diffcore sampler tests (``test_samplers_dpm.py``, ``test_samplers_unipc.py``) and the
kernel tests (``test_kernels.py``, ``test_dit_fused.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import diffcore
import pytest
import torch
from torch import Tensor


def run_sampler(name: str, den, x: Tensor, grid: Tensor, **kw: Any) -> Tensor:
    """Call the registered sampler ``name`` directly on the state ``x`` at ``grid[0]`` (no grid making,
    no starting-noise scaling), deterministic and without callback."""
    return diffcore.sampling.get(name).fn(den, x, grid, cond={}, generator=None, callback=None, **kw)


def half_log_snr_grid(schedule, t0: float, t1: float, n: int, warm: bool = False) -> Tensor:
    """``n`` steps from ``t0`` to ``t1`` uniform in half-log-SNR; ``warm`` adds two tiny first steps so that
    the low-order warm-up of multistep solvers does not limit the measured order."""
    lam = [float(schedule.log_snr(torch.tensor(t, dtype=torch.float64))) / 2 for t in (t0, t1)]
    lams = torch.linspace(lam[0], lam[1], n + 1, dtype=torch.float64)
    if warm:
        h = (lam[1] - lam[0]) / n
        lams = torch.cat([torch.tensor([lam[0], lam[0] + h / 1000, lam[0] + 2 * h / 1000]), lams[1:]])
    grid = schedule.t_from_log_snr(2 * lams).to(torch.float64)
    grid[0], grid[-1] = t0, t1
    return grid


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: thread start-up dominates on a shared CPU. Opt in per module with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def run() -> Callable[..., Tensor]:
    """:func:`run_sampler`: ``run(name, den, x, grid, **options)``."""
    return run_sampler


@pytest.fixture(scope="session")
def lambda_grid() -> Callable[..., Tensor]:
    """:func:`half_log_snr_grid`: ``lambda_grid(schedule, t0, t1, n, warm=False)``."""
    return half_log_snr_grid


def run_in_triton_interpreter(script: str) -> None:
    """Run the Python ``script`` in a subprocess under Triton's CPU interpreter (``TRITON_INTERPRET=1``, which
    must be set before Triton is imported); it must print ``ok`` last. Fails with the end of its stderr."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


@pytest.fixture(scope="session")
def triton_interpreter() -> Callable[[str], None]:
    """:func:`run_in_triton_interpreter`: ``triton_interpreter(script)``."""
    return run_in_triton_interpreter
