"""Embeddings for transformer backbones: timesteps, class labels, patches, positions, rotary.

Conventions: time ``t`` has shape ``(B,)`` in [0, 1] (0 = data, 1 = noise) and is multiplied by
1000 before the sinusoidal embedding, so a network sees the same frequencies as DiT's integer DDPM
steps. Spatial inputs are channels-first, ``(B, C, *spatial)`` with 1, 2 or 3 spatial axes
(sequence, image, spacetime volume); tokens are ``(B, N, D)`` in row-major order of the patch grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

TIME_SCALE = 1000.0


def timestep_embedding(
    t: Tensor, dim: int, max_period: float = 10000.0, scale: float = TIME_SCALE, freq_shift: float = 0.0
) -> Tensor:
    """Sinusoidal embedding of continuous time (Vaswani et al. 2017, Sec. 3.5; DiT's ``TimestepEmbedder``).

    Args:
        t: ``(B,)`` times in [0, 1]; multiplied by ``scale`` (1000, DDPM steps) before embedding.
        dim: embedding width (odd widths get one zero column).
        max_period: the longest wavelength, in units of scaled time.
        freq_shift: ``s`` in the frequency exponent ``i / (dim/2 - s)``: 0 for the DiT paper's grid, 1 for
            diffusers' ``DiTTransformer2DModel`` (its ``downscale_freq_shift``).

    Returns:
        ``(B, dim)`` float32 tensor ``[cos(s t w_i), sin(s t w_i)]`` with ``w_i = max_period^(-i / (dim/2 - s))``.
    """
    if t.ndim != 1:
        raise ValueError(f"t: expected shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    exponent = torch.arange(half, device=t.device, dtype=torch.float32) / (half - freq_shift)
    freqs = torch.exp(-math.log(max_period) * exponent)
    args = (t.float() * scale)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """Sinusoidal time features followed by a two-layer SiLU MLP: ``(B,)`` -> ``(B, hidden_size)``."""

    def __init__(self, hidden_size: int, frequency_dim: int = 256, freq_shift: float = 0.0) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.freq_shift = freq_shift
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, t: Tensor) -> Tensor:
        """``t``: ``(B,)`` in [0, 1] -> ``(B, hidden_size)`` in the dtype of the MLP weights."""
        freqs = timestep_embedding(t, self.frequency_dim, freq_shift=self.freq_shift)
        return self.mlp(freqs.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class-label table with one extra row, index ``num_classes``, for the null (unconditional) label.

    Classifier-free guidance trains with labels replaced by the null index at some rate
    (see :func:`drop_labels`, applied by the caller) and samples with both branches.
    """

    def __init__(self, num_classes: int, hidden_size: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, hidden_size)

    @property
    def null_class(self) -> int:
        """Index of the null label, ``num_classes``."""
        return self.num_classes

    def forward(self, y: Tensor) -> Tensor:
        """``y``: ``(B,)`` int64 in ``[0, num_classes]`` -> ``(B, hidden_size)``."""
        return self.table(y)


def drop_labels(y: Tensor, prob: float, null_class: int, generator: torch.Generator | None = None) -> Tensor:
    """Replace each label by ``null_class`` with probability ``prob`` (CFG dropout, Ho & Salimans 2022)."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob: expected a probability in [0, 1], got {prob}")
    drop = torch.rand(y.shape, device=y.device, generator=generator) < prob
    return torch.where(drop, torch.full_like(y, null_class), y)


def _as_tuple(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    out = (int(value),) * ndim if isinstance(value, int) else tuple(int(v) for v in value)
    if len(out) != ndim or any(v < 1 for v in out):
        raise ValueError(f"{name}: expected {ndim} positive integers, got {value!r}")
    return out


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens with a Conv1d/2d/3d of kernel = stride = patch (ViT, DiT).

    ``(B, C, *spatial)`` -> ``(B, N, hidden_size)`` with ``N = prod(spatial_i // patch_i)``.
    """

    def __init__(
        self, in_channels: int, hidden_size: int, patch_size: int | Sequence[int], ndim: int = 2
    ) -> None:
        super().__init__()
        if ndim not in (1, 2, 3):
            raise ValueError(f"ndim: expected 1, 2 or 3 spatial axes, got {ndim}")
        self.ndim = ndim
        self.patch_size = _as_tuple(patch_size, ndim, "patch_size")
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 1]
        self.proj = conv(in_channels, hidden_size, kernel_size=self.patch_size, stride=self.patch_size)

    def grid_size(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """Patch-grid size for an input of spatial size ``spatial``; raises unless divisible by the patch."""
        if len(spatial) != self.ndim or any(s % p for s, p in zip(spatial, self.patch_size)):
            raise ValueError(
                f"x: spatial size {tuple(spatial)} must have {self.ndim} axes divisible by "
                f"patch_size {self.patch_size}"
            )
        return tuple(s // p for s, p in zip(spatial, self.patch_size))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, C, *spatial)`` -> tokens ``(B, N, hidden_size)``."""
        self.grid_size(x.shape[2:])
        return self.proj(x).flatten(2).transpose(1, 2)


def unpatchify(tokens: Tensor, grid_size: Sequence[int], patch_size: Sequence[int], channels: int) -> Tensor:
    """Inverse of patching: ``(B, N, prod(patch) * C)`` -> ``(B, C, *(grid_i * patch_i))``.

    Each token's features are ordered ``(*patch, C)`` (channels fastest), as DiT's final layer emits them.
    """
    ndim = len(grid_size)
    b = tokens.shape[0]
    x = tokens.reshape(b, *grid_size, *patch_size, channels)
    # (B, g0.., p0.., C) -> (B, C, g0, p0, g1, p1, ...)
    perm = [0, 2 * ndim + 1]
    for i in range(ndim):
        perm += [1 + i, 1 + ndim + i]
    x = x.permute(*perm)
    return x.reshape(b, channels, *(g * p for g, p in zip(grid_size, patch_size)))


def sincos_embedding_1d(dim: int, positions: Tensor) -> Tensor:
    """Fixed 1D sin-cos embedding (Vaswani et al. 2017): ``(N,)`` positions -> ``(N, dim)`` [sin, cos]."""
    if dim % 2:
        raise ValueError(f"dim: expected an even width, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim / 2))
    args = positions.to(torch.float64)[:, None] * omega[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1).float()


def _axis_widths(dim: int, ndim: int) -> list[int]:
    """Split an even ``dim`` into ``ndim`` even parts; the first axis takes the remainder."""
    if dim % 2:
        raise ValueError(f"dim: expected an even width, got {dim}")
    base = (dim // (2 * ndim)) * 2
    if base == 0:
        raise ValueError(f"dim: {dim} is too small to split over {ndim} axes")
    return [dim - base * (ndim - 1)] + [base] * (ndim - 1)


def grid_positions(grid_size: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """Integer coordinates of a row-major grid: ``(prod(grid_size), len(grid_size))`` float32."""
    axes = [torch.arange(g, dtype=torch.float32, device=device) for g in grid_size]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid_size))


def sincos_pos_embed(
    dim: int,
    grid_size: Sequence[int],
    device: torch.device | str | None = None,
    *,
    axes: str = "ij",
    offset: Sequence[float] | float = 0.0,
    step: float = 1.0,
) -> Tensor:
    """Fixed N-D sin-cos positional embedding (MAE / DiT): ``(prod(grid_size), dim)``.

    The width is split over the axes (:func:`_axis_widths`); each part embeds one coordinate in 1D. Patch
    ``k`` of axis ``a`` sits at coordinate ``offset[a] + step * k``. ``axes="ij"`` embeds the first grid axis
    in the first part; ``"xy"`` the last one (the order of diffusers' 2D tables, ``(w, h)``).
    """
    if axes not in ("ij", "xy"):
        raise ValueError(f"axes: expected 'ij' or 'xy', got {axes!r}")
    offsets = [float(offset)] * len(grid_size) if isinstance(offset, (int, float)) else list(offset)
    if len(offsets) != len(grid_size):
        raise ValueError(f"offset: expected {len(grid_size)} offsets (one per axis), got {offsets}")
    pos = grid_positions(grid_size, device) * step + torch.tensor(offsets, device=device)
    if axes == "xy":
        pos = pos.flip(-1)
    widths = _axis_widths(dim, len(grid_size))
    return torch.cat([sincos_embedding_1d(w, pos[:, i]) for i, w in enumerate(widths)], dim=1)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE, Su et al. 2021), 1D or axial over 2/3 grid axes.

    The head width is split over the axes (each part even); part ``a`` rotates feature pairs
    ``(i, i + head_dim/2)`` by angle ``pos_a * theta^(-2j / d_a)``. Because rotations compose,
    ``<R(m) q, R(n) k>`` depends only on ``m - n`` (Su et al. Eq. 16).
    """

    def __init__(self, head_dim: int, ndim: int = 1, theta: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"head_dim: expected an even width for RoPE, got {head_dim}")
        self.head_dim, self.ndim, self.theta = head_dim, ndim, theta
        # Axis widths in rotation pairs; pairs of axis a use frequencies theta^(-j / h_a), j < h_a.
        self.half_widths = [w // 2 for w in _axis_widths(head_dim, ndim)]

    def inv_freq(self, device: torch.device | str | None = None) -> Tensor:
        """``(head_dim / 2,)`` float32 frequencies, axis after axis (computed, not stored: no bf16 casts)."""
        return torch.cat(
            [
                self.theta ** (-torch.arange(h, dtype=torch.float32, device=device) / h)
                for h in self.half_widths
            ]
        )

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """``positions``: ``(N,)`` or ``(N, ndim)`` -> ``(cos, sin)``, each ``(N, head_dim)`` float32."""
        if positions.ndim == 1:
            positions = positions[:, None]
        if positions.ndim != 2 or positions.shape[1] != self.ndim:
            raise ValueError(f"positions: expected shape (N, {self.ndim}), got {tuple(positions.shape)}")
        axis_pos = torch.cat(
            [positions[:, a : a + 1].float().expand(-1, h) for a, h in enumerate(self.half_widths)], dim=1
        )
        angles = axis_pos * self.inv_freq(positions.device)[None]
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` ``(..., N, head_dim)`` by ``cos``/``sin`` ``(N, head_dim)`` (rotate-half form)."""
    xf = x.float()  # rotate in float32: bf16 angles lose relative-position accuracy
    x1, x2 = xf.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)
