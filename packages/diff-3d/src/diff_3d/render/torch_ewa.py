"""A differentiable EWA splatting renderer in plain PyTorch: the 3DGS image formation (Kerbl et al. 2023,
Sec. 4 and 6; Zwicker et al. 2001 for EWA), written for clarity and for CPUs and small images.

Steps (one camera):

1. Camera space: ``t = W mu + b`` (``viewmat``); Gaussians with depth ``t_z < near`` are culled.
2. Projection: ``mu' = (f_x t_x / t_z + c_x, f_y t_y / t_z + c_y)`` (pixel centres at +0.5, see
   :mod:`diff_3d.cameras`); the 2D covariance is ``J W Sigma W^T J^T + 0.3 I`` (3DGS Eq. 5 plus its low-pass
   filter), ``J`` the Jacobian of the perspective projection at ``t`` (Zwicker et al. Eq. 29), with
   ``t_x / t_z`` and ``t_y / t_z`` clamped to 1.3 times the half field of view as 3DGS and gsplat do, so
   Gaussians far outside the view do not blow up.
3. Extent: an axis-aligned box of half-size ``ceil(k sqrt(Sigma'_ii))`` with ``k = min(3.33, sqrt(2 ln(255 o)))``
   (the opacity-aware bound gsplat uses: beyond it ``o exp(-d^2/2) < 1/255``); a Gaussian touches the 16x16
   tiles its box overlaps and is evaluated at every pixel of those tiles, the way a tiled rasteriser does.
4. Compositing, front to back in order of depth ``t_z``: ``alpha_i = min(max_alpha, o_i exp(-d^T Sigma'^-1 d / 2))``,
   contributions with ``alpha_i < 1/255`` are skipped, ``C = sum_i c_i alpha_i T_i + T_end bg`` with
   ``T_i = prod_{j<i} (1 - alpha_j)`` (3DGS Eq. 3), and a pixel stops before the Gaussian that would bring
   its transmittance to ``1e-4`` or below.

``max_alpha`` is 0.99 as in the 3DGS paper's rasteriser; gsplat uses 0.999 (pass that to compare with it).

Limits: every pixel of a tile is evaluated against every Gaussian touching the tile, tiles padded to the
largest count, so time and memory grow as ``H W n_max`` (``n_max`` the most Gaussians on one tile); tiles
are processed in groups of at most ``max_elements`` pixel-Gaussian pairs (default 2^23, about 32 MB per
float32 intermediate). Backward keeps those intermediates for every group: a 64x64 image with a few thousand
Gaussians takes tens of MB and well under a second on one CPU core; 256x256 with 100k Gaussians is a job for
gsplat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diff_3d.cameras import Camera
from diff_3d.gaussians import Gaussians

__all__ = ["ALPHA_THRESHOLD", "Projected", "project", "rasterize", "render_torch"]

ALPHA_THRESHOLD = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4
TILE = 16


@dataclass
class Projected:
    """Gaussians in image space (one camera); all (M, ...) over the M Gaussians kept after culling.

    Attributes:
        index: (M,) the kept Gaussians' indices into the input, sorted front to back.
        means2d: (M, 2) pixel coordinates (x = column, y = row).
        cov2d: (M, 2, 2) image-space covariances including the 0.3 low-pass.
        depths: (M,) camera-space depth ``t_z``.
        radii: (M, 2) half-sizes in pixels of the bounding boxes (no gradient).
    """

    index: torch.Tensor
    means2d: torch.Tensor
    cov2d: torch.Tensor
    depths: torch.Tensor
    radii: torch.Tensor


def project(
    means: torch.Tensor,
    covariances: torch.Tensor,
    opacities: torch.Tensor,
    camera: Camera,
    *,
    near: float = 0.01,
    eps2d: float = 0.3,
) -> Projected:
    """Project world Gaussians ``means`` (N, 3), ``covariances`` (N, 3, 3) into ``camera`` (steps 1-3 of
    the module docstring), culling those behind ``near``, with non-positive 2D determinant, below 1/255 opacity
    or outside the image, and sorting the rest front to back."""
    view = camera.viewmat.to(means)
    r, b = view[:3, :3], view[:3, 3]
    t = means @ r.T + b
    z = t[:, 2]
    keep = z >= near
    zc = z.clamp_min(near)  # only kept rows are used; keeps the others finite
    tan_x, tan_y = 0.5 * camera.width / camera.fx, 0.5 * camera.height / camera.fy
    lim_x_pos, lim_x_neg = (
        (camera.width - camera.cx) / camera.fx + 0.3 * tan_x,
        camera.cx / camera.fx + 0.3 * tan_x,
    )
    lim_y_pos, lim_y_neg = (
        (camera.height - camera.cy) / camera.fy + 0.3 * tan_y,
        camera.cy / camera.fy + 0.3 * tan_y,
    )
    tx = zc * (t[:, 0] / zc).clamp(-lim_x_neg, lim_x_pos)
    ty = zc * (t[:, 1] / zc).clamp(-lim_y_neg, lim_y_pos)
    zero = torch.zeros_like(zc)
    jac = torch.stack(
        [
            torch.stack([camera.fx / zc, zero, -camera.fx * tx / zc**2], -1),
            torch.stack([zero, camera.fy / zc, -camera.fy * ty / zc**2], -1),
        ],
        dim=-2,
    )  # (N, 2, 3)
    m = jac @ r  # J W
    cov2d = m @ covariances @ m.transpose(-1, -2) + eps2d * torch.eye(
        2, dtype=means.dtype, device=means.device
    )
    means2d = torch.stack([camera.fx * t[:, 0] / zc + camera.cx, camera.fy * t[:, 1] / zc + camera.cy], -1)

    with torch.no_grad():
        det = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]
        o = opacities.detach()
        keep &= (det > 0) & (o >= ALPHA_THRESHOLD)
        extend = torch.sqrt(2 * torch.log(o.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)).clamp_max(3.33)
        diag = torch.stack([cov2d[:, 0, 0], cov2d[:, 1, 1]], -1).clamp_min(0)
        radii = torch.ceil(extend[:, None] * diag.sqrt())
        size = torch.tensor([camera.width, camera.height], dtype=means.dtype, device=means.device)
        mu = means2d.detach()
        keep &= ((mu + radii) > 0).all(-1) & ((mu - radii) < size).all(-1) & (radii > 0).all(-1)
        index = torch.nonzero(keep).squeeze(1)
        index = index[torch.argsort(z.detach()[index], stable=True)]
    return Projected(index, means2d[index], cov2d[index], z[index], radii[index])


def rasterize(
    proj: Projected,
    colors: torch.Tensor,
    opacities: torch.Tensor,
    width: int,
    height: int,
    background: torch.Tensor,
    *,
    max_alpha: float = 0.99,
    max_elements: int = 1 << 23,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite projected Gaussians (step 4 of the module docstring).

    ``colors`` (M, 3) and ``opacities`` (M,) are already in ``proj.index`` order; ``background`` (3,).
    Returns rgb (H, W, 3), alpha (H, W) (``1 - T_end``) and expected depth (H, W) (``sum w z / alpha``, 0 where
    nothing was drawn).
    """
    dev, dt = proj.means2d.device, proj.means2d.dtype
    tiles_x, tiles_y = math.ceil(width / TILE), math.ceil(height / TILE)
    n_tiles = tiles_x * tiles_y
    hp, wp = tiles_y * TILE, tiles_x * TILE
    rgb_tiles = torch.zeros(n_tiles, TILE * TILE, 3, dtype=dt, device=dev)
    acc_tiles = torch.zeros(n_tiles, TILE * TILE, dtype=dt, device=dev)
    dep_tiles = torch.zeros(n_tiles, TILE * TILE, dtype=dt, device=dev)
    m = proj.means2d.shape[0]
    if m > 0:
        touch = _tile_incidence(proj, tiles_x, tiles_y)  # (T, M) bool, columns front to back
        counts = touch.sum(1)
        n_max = int(counts.max())
        if n_max > 0:
            # per tile, the touching Gaussians first, in depth order (stable sort keeps it)
            order = torch.argsort((~touch).to(torch.int8), dim=1, stable=True)[:, :n_max]
            valid = torch.arange(n_max, device=dev)[None, :] < counts[:, None]
            conic = _inverse_2x2(proj.cov2d)
            pix = _tile_pixels(tiles_x, tiles_y, dt, dev)  # (T, P, 2)
            group = max(1, max_elements // (TILE * TILE * n_max))
            rgb_parts, acc_parts, dep_parts, tile_ids = [], [], [], []
            for start in range(0, n_tiles, group):
                sl = slice(start, min(start + group, n_tiles))
                busy = counts[sl] > 0
                if not bool(busy.any()):
                    continue
                ids = torch.arange(sl.start, sl.stop, device=dev)[busy]
                rgb, acc, dep = _composite_tiles(
                    pix[ids], order[ids], valid[ids], proj, conic, colors, opacities, max_alpha
                )
                rgb_parts.append(rgb)
                acc_parts.append(acc)
                dep_parts.append(dep)
                tile_ids.append(ids)
            if tile_ids:
                ids = torch.cat(tile_ids)
                rgb_tiles = rgb_tiles.index_copy(0, ids, torch.cat(rgb_parts))
                acc_tiles = acc_tiles.index_copy(0, ids, torch.cat(acc_parts))
                dep_tiles = dep_tiles.index_copy(0, ids, torch.cat(dep_parts))
    rgb = _untile(rgb_tiles, tiles_x, tiles_y)[:height, :width]
    alpha = _untile(acc_tiles[..., None], tiles_x, tiles_y)[:height, :width, 0]
    depth = _untile(dep_tiles[..., None], tiles_x, tiles_y)[:height, :width, 0]
    assert rgb.shape[:2] == (height, width) and hp >= height and wp >= width
    rgb = rgb + (1 - alpha)[..., None] * background.to(rgb)
    depth = torch.where(alpha > 1e-10, depth / alpha.clamp_min(1e-10), torch.zeros_like(depth))
    return rgb, alpha, depth


def _inverse_2x2(cov: torch.Tensor) -> torch.Tensor:
    """(M, 2, 2) symmetric -> (M, 3) conic ``(a, b, c)`` of the inverse ``[[a, b], [b, c]]``."""
    det = cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] * cov[:, 1, 0]
    return torch.stack([cov[:, 1, 1], -0.5 * (cov[:, 0, 1] + cov[:, 1, 0]), cov[:, 0, 0]], -1) / det[:, None]


def _tile_incidence(proj: Projected, tiles_x: int, tiles_y: int) -> torch.Tensor:
    """(T, M): Gaussian m's box overlaps tile t (tiles in row-major order), as a tiled rasteriser decides."""
    mu, rad = proj.means2d.detach(), proj.radii
    lo = torch.floor((mu - rad) / TILE)
    hi = torch.ceil((mu + rad) / TILE)
    tx = torch.arange(tiles_x, device=mu.device, dtype=mu.dtype)
    ty = torch.arange(tiles_y, device=mu.device, dtype=mu.dtype)
    in_x = (tx[:, None] >= lo[None, :, 0]) & (tx[:, None] < hi[None, :, 0])  # (tiles_x, M)
    in_y = (ty[:, None] >= lo[None, :, 1]) & (ty[:, None] < hi[None, :, 1])  # (tiles_y, M)
    return (in_y[:, None, :] & in_x[None, :, :]).reshape(tiles_y * tiles_x, -1)


def _tile_pixels(tiles_x: int, tiles_y: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(T, TILE^2, 2) pixel-centre coordinates (x, y) of every tile, row-major within and across tiles."""
    k = torch.arange(TILE, dtype=dtype, device=device)
    py, px = torch.meshgrid(k, k, indexing="ij")
    local = torch.stack([px, py], -1).reshape(-1, 2) + 0.5
    oy, ox = torch.meshgrid(
        torch.arange(tiles_y, dtype=dtype, device=device) * TILE,
        torch.arange(tiles_x, dtype=dtype, device=device) * TILE,
        indexing="ij",
    )
    origin = torch.stack([ox, oy], -1).reshape(-1, 1, 2)
    return origin + local[None]


def _untile(values: torch.Tensor, tiles_x: int, tiles_y: int) -> torch.Tensor:
    """(T, TILE^2, C) -> (tiles_y TILE, tiles_x TILE, C)."""
    c = values.shape[-1]
    v = values.reshape(tiles_y, tiles_x, TILE, TILE, c).permute(0, 2, 1, 3, 4)
    return v.reshape(tiles_y * TILE, tiles_x * TILE, c)


def _composite_tiles(
    pix: torch.Tensor,
    order: torch.Tensor,
    valid: torch.Tensor,
    proj: Projected,
    conic: torch.Tensor,
    colors: torch.Tensor,
    opacities: torch.Tensor,
    max_alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Front-to-back compositing of G tiles: pix (G, P, 2), order / valid (G, n) -> rgb (G, P, 3), acc, depth."""
    d = pix[:, :, None, :] - proj.means2d[order][:, None, :, :]  # (G, P, n, 2)
    a, b, c = conic[order].unbind(-1)  # (G, n)
    dx, dy = d[..., 0], d[..., 1]
    power = -0.5 * (a[:, None] * dx * dx + c[:, None] * dy * dy) - b[:, None] * dx * dy
    alpha = (opacities[order][:, None] * torch.exp(power)).clamp_max(max_alpha)
    use = valid[:, None, :] & (power <= 0) & (alpha >= ALPHA_THRESHOLD)
    alpha = torch.where(use, alpha, torch.zeros_like(alpha))
    through = torch.cumprod(1 - alpha, dim=-1)  # T after each Gaussian
    t_before = torch.cat([torch.ones_like(through[..., :1]), through[..., :-1]], dim=-1)
    # stop before the Gaussian that would bring T to 1e-4 or below (exclusive), and every later one
    alive = through > TRANSMITTANCE_MIN
    w = alpha * t_before * alive
    rgb = torch.einsum("gpn,gnc->gpc", w, colors[order])
    acc = w.sum(-1)
    dep = torch.einsum("gpn,gn->gp", w, proj.depths[order])
    return rgb, acc, dep


def render_torch(
    gaussians: Gaussians,
    camera: Camera,
    background: torch.Tensor,
    *,
    near: float = 0.01,
    eps2d: float = 0.3,
    max_alpha: float = 0.99,
    max_elements: int = 1 << 23,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render ``gaussians`` from ``camera`` over ``background`` (3,): rgb (H, W, 3), alpha (H, W),
    expected depth (H, W). Differentiable with respect to every Gaussian parameter (not the camera)."""
    opac = gaussians.opacities()
    proj = project(gaussians.means, gaussians.covariances(), opac, camera, near=near, eps2d=eps2d)
    kept = gaussians.subset(proj.index)
    dirs = kept.means - camera.position.to(kept.means)
    colors = kept.colors(dirs)
    return rasterize(
        proj, colors, opac[proj.index], camera.width, camera.height, background,
        max_alpha=max_alpha, max_elements=max_elements,
    )  # fmt: skip
