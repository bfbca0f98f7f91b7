"""Fixtures shared by the diffcore tests: ``run`` and ``lambda_grid`` for the sampler tests
(``test_samplers_dpm.py``, ``test_samplers_unipc.py``), ``one_thread``, ``triton_interpreter`` for the kernel tests
(``test_kernels.py``, ``test_dit_fused.py``), and ``few_step``, the analytic target and helpers of the few-step
(distillation) tests (``test_distill_*.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import diffcore
import pytest
import torch
from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein
from diffcore.paths.denoiser import DenoiserBase
from diffcore.training import TrainConfig
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset


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


class FewStepKit:
    """The four-mode Gaussian mixture the distillation tests train few-step students on, and their helpers."""

    def __init__(self, spread: float = 1.5, variance: float = 0.05) -> None:
        s = spread
        means = torch.tensor([[s, s], [-s, s], [s, -s], [-s, -s]])
        self.gmm = GaussianMixture(torch.full((4,), 0.25), means, torch.full((4, 2), variance))
        """Four equal-weight 2-D Gaussians at ``(+-spread, +-spread)``: class ``k`` is component ``k``."""

    def reference_sets(
        self, n_train: int = 4096, n_eval: int = 1500, seed: int = 1
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(training data (float32), reference samples (float64), evaluation noise)``, each from its own seed."""
        data = self.gmm.sample(n_train, torch.Generator().manual_seed(seed)).float()
        ref = self.gmm.sample(n_eval, torch.Generator().manual_seed(seed + 1))
        noise = torch.randn(n_eval, self.gmm.dim, generator=torch.Generator().manual_seed(seed + 2))
        return data, ref, noise

    @staticmethod
    def loader(x: Tensor, y: Tensor | None = None, batch_size: int = 128) -> DataLoader:
        """Shuffled full batches of ``x`` (or ``{"x": x, "y": y}`` with labels), the Trainer's batch format."""

        def stack(items: list[tuple[Tensor, ...]]) -> Tensor | dict[str, Tensor]:
            if len(items[0]) == 1:
                return torch.stack([i[0] for i in items])
            return {"x": torch.stack([i[0] for i in items]), "y": torch.stack([i[1] for i in items])}

        tensors = (x,) if y is None else (x, y)
        return DataLoader(
            TensorDataset(*tensors), batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=stack
        )

    @staticmethod
    @torch.no_grad()
    def distance(
        denoiser: DenoiserBase,
        sampler: str,
        steps: int,
        noise: Tensor,
        reference: Tensor,
        *,
        t_start: float = 1.0,
        seed: int = 5,
        projections: int = 64,
        **options: Any,
    ) -> float:
        """Sliced W2 between ``steps``-step samples of ``sampler`` from ``noise`` and ``reference`` samples."""
        g = torch.Generator().manual_seed(seed)
        x = diffcore.sample(denoiser, noise, sampler, steps, t_start=t_start, generator=g, **options)
        return sliced_wasserstein(x.double(), reference, projections=projections)

    @staticmethod
    def train_config(output_dir: str | Path, steps: int, lr: float = 3e-3) -> TrainConfig:
        """A quiet CPU training configuration for small students (no EMA, checkpoints or TensorBoard)."""
        return TrainConfig(
            steps=steps, lr=lr, ema_decay=None, checkpoint_every=None, tensorboard=False, progress_bar=False,
            output_dir=str(output_dir), log_every=steps, max_grad_norm=1.0,
        )  # fmt: skip


@pytest.fixture(scope="session")
def few_step() -> FewStepKit:
    """:class:`FewStepKit`: ``few_step.gmm``, ``.reference_sets()``, ``.loader(x)``, ``.distance(...)``,
    ``.train_config(dir, steps)``."""
    return FewStepKit()
