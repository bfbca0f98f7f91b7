"""Measures of 3D quality: image metrics of renders (PSNR, SSIM) and geometry of point sets (Chamfer distance,
and MMD-CD, COV, 1-NNA between a generated and a reference set of shapes).

Images are channels-last floats in [0, 1]: (..., H, W, C). Point sets are (N, 3).

Set metrics follow Achlioptas et al. 2018 (MMD, COV) and Yang et al. 2019 (PointFlow, 1-NNA), with the
Chamfer distance ``CD(X, Y) = mean_x min_y |x - y|^2 + mean_y min_x |y - x|^2`` (squared distances, as in
PointFlow's evaluation code). With ``D`` the matrix of distances between generated shapes ``g`` and
reference shapes ``r``:

- ``MMD = mean_r min_g D(g, r)`` (fidelity: lower is better);
- ``COV = |{argmin_r D(g, r) : g}| / |R|`` (the fraction of reference shapes that are some generated shape's
  nearest neighbour: diversity, higher is better);
- ``1-NNA``: leave-one-out 1-nearest-neighbour classification accuracy of "generated or reference" over the
  union; 0.5 when the two sets are indistinguishable samples of one distribution, 1.0 when they are apart
  (and below 0.5 when generated shapes copy reference shapes: identical sets give 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "chamfer_distance",
    "chamfer_to_shape",
    "coverage",
    "generation_metrics",
    "mmd",
    "one_nna",
    "pairwise_chamfer",
    "psnr",
    "set_metrics",
    "ssim",
]


# -- images -----------------------------------------------------------------------------------------------------
def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred: expected the shape of target {tuple(target.shape)}, got {tuple(pred.shape)}")
    if pred.ndim < 3:
        raise ValueError(f"pred: expected images (..., H, W, C), got shape {tuple(pred.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images (..., H, W, C) -> (...): ``10 log10(range^2 / MSE)``
    (infinite for identical images)."""
    _check_pair(pred, target)
    mse = ((pred - target) ** 2).mean(dim=(-3, -2, -1))
    return 10 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    *,
    window: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of images (..., H, W, C) -> (...), differentiable.

    Gaussian window ``window x window`` of standard deviation ``sigma``, ``K1 = 0.01``, ``K2 = 0.03``, local
    statistics with population (not sample) covariance, averaged over the positions where the window fits
    inside the image and over channels: the definition of ``skimage.metrics.structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1)``. Images must be at
    least ``window`` pixels on each side.
    """
    _check_pair(pred, target)
    h, w, c = pred.shape[-3:]
    if h < window or w < window:
        raise ValueError(f"pred: expected images of at least {window}x{window} pixels for SSIM, got {h}x{w}")
    lead = pred.shape[:-3]
    x = pred.reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    y = target.reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    g = _gaussian_window(window, sigma, x.dtype, x.device)

    def blur(z: torch.Tensor) -> torch.Tensor:  # separable "valid" Gaussian filter
        z = torch.nn.functional.conv2d(z, g.view(1, 1, -1, 1))
        return torch.nn.functional.conv2d(z, g.view(1, 1, 1, -1))

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.reshape(-1, c, s.shape[-2] * s.shape[-1]).mean(dim=(1, 2)).reshape(lead)


# -- point sets -----------------------------------------------------------------------------------------------------
def _min_sq_dist(x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """For each row of x (N, 3), the squared distance to its nearest row of y (M, 3); chunked over x."""
    out = []
    for start in range(0, x.shape[0], chunk):
        d = torch.cdist(x[start : start + chunk], y, compute_mode="donot_use_mm_for_euclid_dist")  # exact
        out.append(d.min(dim=1).values ** 2)
    return torch.cat(out)


def _check_points(name: str, p: torch.Tensor) -> None:
    if not isinstance(p, torch.Tensor) or p.ndim != 2 or p.shape[1] != 3 or p.shape[0] == 0:
        got = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
        raise ValueError(f"{name}: expected a non-empty point set of shape (N, 3), got {got}")


def chamfer_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Chamfer distance between point sets x (N, 3) and y (M, 3): ``mean_x min_y |x-y|^2 + mean_y min_x |y-x|^2``."""
    _check_points("x", x)
    _check_points("y", y)
    return _min_sq_dist(x, y).mean() + _min_sq_dist(y, x).mean()


def chamfer_to_shape(points: torch.Tensor, shape: object, n: int = 4096, seed: int = 0) -> torch.Tensor:
    """Chamfer distance between ``points`` (N, 3) (e.g. Gaussian centres) and ``n`` area-uniform samples of an
    analytic primitive or composite (:mod:`diff_3d.data.primitives`), drawn with ``seed``."""
    from diff_3d.data.primitives import sample_surface

    surface, _ = sample_surface(shape, n, torch.Generator().manual_seed(seed))  # type: ignore[arg-type]
    return chamfer_distance(points, surface.to(points))


def pairwise_chamfer(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """(len(a), len(b)) Chamfer distances between every set of ``a`` and every set of ``b``."""
    out = torch.empty(len(a), len(b), dtype=torch.float64)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i, j] = chamfer_distance(x, y).double()
    return out


def mmd(d_gen_ref: torch.Tensor) -> float:
    """Minimum matching distance ``mean_r min_g D(g, r)`` of a (G, R) distance matrix."""
    return d_gen_ref.min(dim=0).values.mean().item()


def coverage(d_gen_ref: torch.Tensor) -> float:
    """Coverage: the fraction of the R reference shapes that are the nearest of some generated shape."""
    return torch.unique(d_gen_ref.argmin(dim=1)).numel() / d_gen_ref.shape[1]


def one_nna(d_gen_gen: torch.Tensor, d_gen_ref: torch.Tensor, d_ref_ref: torch.Tensor) -> float:
    """Leave-one-out 1-NN accuracy on generated (label 1) + reference (label 0) shapes from their distance
    matrices (G, G), (G, R), (R, R); ties go to the first index (generated before reference)."""
    g, r = d_gen_ref.shape
    full = torch.cat(
        [torch.cat([d_gen_gen, d_gen_ref], 1), torch.cat([d_gen_ref.T, d_ref_ref], 1)], 0
    ).clone()
    full.fill_diagonal_(math.inf)
    labels = torch.cat([torch.ones(g), torch.zeros(r)])
    nearest = full.argmin(dim=1)
    return (labels[nearest] == labels).double().mean().item()


def generation_metrics(
    generated: Sequence[torch.Tensor] | torch.Tensor, reference: Sequence[torch.Tensor] | torch.Tensor
) -> dict[str, float]:
    """``mmd_cd``, ``cov`` and ``one_nna`` (module docstring) between generated and reference point sets: lists of
    (N_i, 3) tensors or stacked (B, N, 3) tensors."""
    if len(generated) < 1 or len(reference) < 1:
        raise ValueError(
            f"generated, reference: expected non-empty sets, got {len(generated)} and {len(reference)}"
        )
    gen, ref = list(generated), list(reference)
    d_gr = pairwise_chamfer(gen, ref)
    d_gg = pairwise_chamfer(gen, gen)
    d_rr = pairwise_chamfer(ref, ref)
    return {"mmd_cd": mmd(d_gr), "cov": coverage(d_gr), "one_nna": one_nna(d_gg, d_gr, d_rr)}


set_metrics = generation_metrics
"""The same as :func:`generation_metrics`."""
