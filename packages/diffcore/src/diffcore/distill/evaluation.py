"""Checking few-step students against an analytic target: the four-mode Gaussian mixture the distillation
tests and ``benchmarks/few_step_gmm.py`` train on, a tensor loader in the Trainer's batch format, and the
sliced Wasserstein distance of a sampler's output to reference samples."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein
from diffcore.paths.denoiser import DenoiserBase
from diffcore.sampling.sample import sample
from diffcore.training import TrainConfig


def four_mode_mixture(spread: float = 1.5, variance: float = 0.05) -> GaussianMixture:
    """Four equal-weight 2-D Gaussians at ``(+-spread, +-spread)``: class ``k`` is component ``k``."""
    s = spread
    means = torch.tensor([[s, s], [-s, s], [s, -s], [-s, -s]])
    return GaussianMixture(torch.full((4,), 0.25), means, torch.full((4, 2), variance))


def _stack(items: list[tuple[Tensor, ...]]) -> Tensor | dict[str, Tensor]:
    if len(items[0]) == 1:
        return torch.stack([i[0] for i in items])
    return {"x": torch.stack([i[0] for i in items]), "y": torch.stack([i[1] for i in items])}


def tensor_loader(x: Tensor, y: Tensor | None = None, batch_size: int = 128) -> DataLoader:
    """Shuffled full batches of ``x`` (or ``{"x": x, "y": y}`` with labels), the Trainer's batch format."""
    tensors = (x,) if y is None else (x, y)
    return DataLoader(
        TensorDataset(*tensors), batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=_stack
    )


def reference_sets(
    target: GaussianMixture, n_train: int = 4096, n_eval: int = 1500, seed: int = 1
) -> tuple[Tensor, Tensor, Tensor]:
    """``(training data (float32), reference samples (float64), evaluation noise)``, each from its own seed."""
    data = target.sample(n_train, torch.Generator().manual_seed(seed)).float()
    ref = target.sample(n_eval, torch.Generator().manual_seed(seed + 1))
    noise = torch.randn(n_eval, target.dim, generator=torch.Generator().manual_seed(seed + 2))
    return data, ref, noise


@torch.no_grad()
def sample_distance(
    denoiser: DenoiserBase,
    sampler: str,
    steps: int,
    noise: Tensor,
    reference: Tensor,
    *,
    t_start: float = 1.0,
    seed: int = 5,
    projections: int = 64,
    **options,
) -> float:
    """Sliced W2 between ``steps``-step samples of ``sampler`` from ``noise`` and ``reference`` samples."""
    x = sample(
        denoiser,
        noise,
        sampler,
        steps,
        t_start=t_start,
        generator=torch.Generator().manual_seed(seed),
        **options,
    )
    return sliced_wasserstein(x.double(), reference, projections=projections)


def small_train_config(output_dir: str | Path, steps: int, lr: float = 3e-3) -> TrainConfig:
    """A quiet CPU training configuration for small students (no EMA, checkpoints or TensorBoard)."""
    return TrainConfig(
        steps=steps, lr=lr, ema_decay=None, checkpoint_every=None, tensorboard=False, progress_bar=False,
        output_dir=str(output_dir), log_every=steps, max_grad_norm=1.0,
    )  # fmt: skip
