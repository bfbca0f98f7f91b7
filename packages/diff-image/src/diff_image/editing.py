"""Image editing with a trained :class:`~diff_image.pipeline.ImagePipeline`, all through diffcore's tools.

* :func:`inpaint` / :func:`outpaint` — fill the unknown region (mask 0) consistently with the known one (mask 1),
  by replacement with optional RePaint resampling (:func:`diffcore.editing.inpainting.inpaint`);
* :func:`colorize` — colour a grey image: the channel mean is kept, chroma is generated
  (:func:`diffcore.editing.inpainting.colorize`);
* :func:`sdedit` — image-to-image by partial noising to ``t = strength`` (Meng et al. 2022;
  :func:`diffcore.editing.inpainting.sdedit`);
* :func:`invert` and :func:`interpolate` — deterministic DDIM inversion (Song et al. 2021, Sec. 4.3) and
  spherical interpolation between two images' latents (:mod:`diffcore.editing.inversion`);
* :func:`edit` — one of the above as an :class:`~diff_image.config.ImageEditConfig` says, on PNG files
  (``diffuse image edit``).

Images are ``(B, C, H, W)`` in ``[-1, 1]``; masks ``(B or 1, 1, H, W)`` with 1 = known. For a latent pipeline the
edit runs on latents (the mask is reduced to the latent grid: a latent cell is known when all its pixels are)
and known pixels are pasted back after decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffcore.device import resolve_device
from diffcore.editing import inpainting as inverse
from diffcore.editing import inversion
from diffcore.paths.denoiser import DenoiserBase
from diffcore.rng import make_generator
from torch import Tensor

from diff_image.config import ImageEditConfig
from diff_image.io import read_png, read_pngs
from diff_image.pipeline import ImagePipeline

__all__ = ["box_mask", "colorize", "edit", "inpaint", "interpolate", "invert", "outpaint", "sdedit"]

Labels = Sequence[int] | Tensor | None
Prompts = str | Sequence[str] | None


def _check_images(pipe: ImagePipeline, images: Tensor) -> Tensor:
    if images.ndim != 4 or tuple(images.shape[1:]) != pipe.image_shape:
        raise ValueError(
            f"images: expected (B, {', '.join(map(str, pipe.image_shape))}), got {tuple(images.shape)}"
        )
    return images.to(pipe.device)


def _guided(
    pipe: ImagePipeline, n: int, y: Labels, prompt: Prompts, guidance: float
) -> tuple[DenoiserBase, dict]:
    pipe.model.eval()
    cond, uncond = pipe.condition(n, y, prompt)
    return pipe.guided(pipe.denoiser(), uncond, guidance), cond


def _noise(pipe: ImagePipeline, n: int, generator: torch.Generator | None) -> Tensor:
    return torch.randn((n, *pipe.sample_shape), generator=generator, device=pipe.device)


def box_mask(
    shape: tuple[int, int], box: tuple[int, int, int, int], device: torch.device | str = "cpu"
) -> Tensor:
    """``(1, 1, H, W)`` mask, 1 inside ``box = (x0, y0, x1, y1)`` (end-exclusive pixels), 0 elsewhere."""
    h, w = shape
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(f"box: expected 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}, got {box}")
    mask = torch.zeros(1, 1, h, w, device=device)
    mask[..., y0:y1, x0:x1] = 1.0
    return mask


def _latent_mask(pipe: ImagePipeline, mask: Tensor) -> Tensor:
    if pipe.autoencoder is None:
        return mask
    f = pipe.autoencoder.config.downsample
    return -F.max_pool2d(-mask, f)  # known only where every pixel of the cell is known


@torch.no_grad()
def inpaint(
    pipe: ImagePipeline,
    images: Tensor,
    mask: Tensor,
    steps: int = 50,
    guidance: float = 1.0,
    y: Labels = None,
    prompt: Prompts = None,
    resample: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Regenerate ``images`` where ``mask == 0``; where ``mask == 1`` the output equals the input exactly.

    Args:
        images: ``(B, C, H, W)`` in ``[-1, 1]``.
        mask: ``(B or 1, 1, H, W)`` of 0 (generate) and 1 (keep).
        resample: RePaint's jumps per step (Lugmayr et al. 2022); 1 = plain replacement.
    """
    images = _check_images(pipe, images)
    mask = mask.to(pipe.device, images.dtype)
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2:] != images.shape[2:]:
        raise ValueError(
            f"mask: expected (B or 1, 1, {images.shape[2]}, {images.shape[3]}), got {tuple(mask.shape)}"
        )
    den, cond = _guided(pipe, len(images), y, prompt, guidance)
    known = pipe.encode(images)
    out = inverse.inpaint(
        den, known, _latent_mask(pipe, mask), _noise(pipe, len(images), generator), steps,
        cond=cond, resample=resample, generator=generator,
    )  # fmt: skip
    decoded = pipe.decode(out)
    return mask * images + (1 - mask) * decoded


def outpaint(
    pipe: ImagePipeline,
    images: Tensor,
    keep: tuple[int, int, int, int],
    **kw: object,
) -> Tensor:
    """Keep the box ``keep = (x0, y0, x1, y1)`` of ``images`` and generate everything around it (see :func:`inpaint`)."""
    mask = box_mask(tuple(images.shape[2:]), keep, device=images.device)  # type: ignore[arg-type]
    return inpaint(pipe, images, mask, **kw)  # type: ignore[arg-type]


@torch.no_grad()
def colorize(
    pipe: ImagePipeline,
    gray: Tensor,
    steps: int = 50,
    guidance: float = 1.0,
    y: Labels = None,
    prompt: Prompts = None,
    resample: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Colour images whose channel mean is ``gray`` ``(B, 1, H, W)``; the output's channel mean equals ``gray``.

    Pixel-space RGB pipelines only (the channel mean of a latent is not the image's luminance).
    """
    if pipe.autoencoder is not None or pipe.sample_shape[0] != 3:
        raise ValueError("pipe: colorization needs a pixel-space RGB pipeline")
    if gray.ndim != 4 or gray.shape[1] != 1 or tuple(gray.shape[2:]) != pipe.sample_shape[1:]:
        raise ValueError(
            f"gray: expected (B, 1, {pipe.sample_shape[1]}, {pipe.sample_shape[2]}), got {tuple(gray.shape)}"
        )
    gray = gray.to(pipe.device)
    den, cond = _guided(pipe, len(gray), y, prompt, guidance)
    out = inverse.colorize(
        den,
        gray,
        _noise(pipe, len(gray), generator),
        steps,
        cond=cond,
        resample=resample,
        generator=generator,
    )
    return out  # not clamped: clamping would change the channel mean (PNG writing clamps anyway)


@torch.no_grad()
def sdedit(
    pipe: ImagePipeline,
    images: Tensor,
    strength: float = 0.5,
    steps: int = 25,
    sampler: str = "ddim",
    guidance: float = 1.0,
    y: Labels = None,
    prompt: Prompts = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SDEdit: noise ``images`` to ``t = strength`` and denoise (towards ``y`` / ``prompt`` if given).

    ``strength`` 0 returns the input, 1 ignores it; ``steps`` count steps over ``[0, strength]``.
    """
    images = _check_images(pipe, images)
    den, cond = _guided(pipe, len(images), y, prompt, guidance)
    out = inverse.sdedit(
        den, pipe.encode(images), strength, _noise(pipe, len(images), generator), steps, sampler=sampler,
        cond=cond, generator=generator,
    )  # fmt: skip
    return images.clone() if strength == 0.0 else pipe.decode(out)


@torch.no_grad()
def invert(
    pipe: ImagePipeline,
    images: Tensor,
    steps: int = 50,
    y: Labels = None,
    prompt: Prompts = None,
    fixed_point_iters: int = 2,
    t: float = 0.99,
) -> Tensor:
    """DDIM-invert ``images`` to the latents ``x_t`` ``(B, *pipe.sample_shape)`` (conditional model, no guidance).

    ``t`` stops short of 1: where ``alpha(1) = 0`` (VP cosine, rectified flow) ``x_1`` carries no information
    about the image and the inverse step is singular. ``fixed_point_iters`` refine each implicit inverse step
    (Pan et al. 2023), making the DDIM round trip exact up to the iteration's convergence."""
    images = _check_images(pipe, images)
    cond, _ = pipe.condition(len(images), y, prompt)
    pipe.model.eval()
    return inversion.invert(
        pipe.denoiser(), pipe.encode(images), steps, t=t, cond=cond, fixed_point_iters=fixed_point_iters
    )  # type: ignore[return-value]


@torch.no_grad()
def interpolate(
    pipe: ImagePipeline,
    image_a: Tensor,
    image_b: Tensor,
    num: int = 8,
    steps: int = 50,
    y: Labels = None,
    prompt: Prompts = None,
    method: str = "slerp",
    fixed_point_iters: int = 2,
    t: float = 0.99,
) -> Tensor:
    """``num`` images morphing from ``image_a`` to ``image_b`` (each ``(C, H, W)`` or ``(1, C, H, W)``): both are
    DDIM-inverted, their latents interpolated (slerp by default) and decoded with DDIM over the same grid.

    ``y`` / ``prompt``: one condition used for every frame (class-conditional / text models need one).
    """
    if num < 2:
        raise ValueError(f"num: expected >= 2 frames, got {num}")
    a, b = (img.unsqueeze(0) if img.ndim == 3 else img for img in (image_a, image_b))
    y1 = None if y is None else torch.as_tensor(y).reshape(-1)[:1]
    z = invert(pipe, torch.cat([a, b]), steps, y=y1, prompt=prompt, fixed_point_iters=fixed_point_iters, t=t)
    weights = torch.linspace(0.0, 1.0, num).tolist()
    latents = inversion.interpolate(z[0], z[1], weights, method=method)  # type: ignore[arg-type]
    cond, _ = pipe.condition(num, y1, prompt)
    out = inversion.decode(pipe.denoiser(), latents, steps, t=t, cond=cond)
    return pipe.decode(out)


def _read_images(path: str, name: str) -> Tensor:
    """A PNG ``(1, C, H, W)`` or a folder of PNGs ``(B, C, H, W)``, in ``[-1, 1]``."""
    if not path:
        raise ValueError(f"{name}: expected a PNG file or a folder of PNGs, got nothing")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{name}: {p} does not exist (expected a PNG file or a folder of PNGs)")
    return read_pngs(p) if p.is_dir() else read_png(p).unsqueeze(0)


def _edit_mask(config: ImageEditConfig, images: Tensor) -> Tensor:
    """inpaint / outpaint: the ``mask`` PNG (white = keep), else 1 outside the box (inpaint) or inside it."""
    if config.mask:
        return (read_png(config.mask, mode="L") > 0).float().unsqueeze(0)
    box = config.box_coordinates()
    if box is None:
        raise ValueError(f"mask, box: {config.mode} needs a mask PNG or a box x0,y0,x1,y1")
    inside = box_mask(tuple(images.shape[2:]), box)  # type: ignore[arg-type]
    return 1 - inside if config.mode == "inpaint" else inside


@torch.no_grad()
def edit(
    pipe: ImagePipeline, config: ImageEditConfig, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Run ``config.mode`` on the images of ``config.input`` (a PNG or a folder of PNGs); the pipeline is moved to
    ``config.device`` and the noise drawn from ``generator`` (else one seeded with ``config.seed``).

    Returns ``(inputs, edited)``: images ``(B, C, H, W)`` in ``[-1, 1]`` (``interpolate``: the first input image
    and ``config.frames`` frames from it to ``config.input_b``).
    """
    pipe.to(resolve_device(config.device))
    x = _read_images(config.input, "input").to(pipe.device)
    gen = make_generator(generator if generator is not None else config.seed, pipe.device)
    cond = {"y": list(config.labels) or None, "prompt": list(config.prompts) or None}
    sampling = {"steps": config.steps, "guidance": config.guidance, "generator": gen, **cond}
    if config.mode in ("inpaint", "outpaint"):
        return x, inpaint(pipe, x, _edit_mask(config, x), resample=config.resample, **sampling)  # type: ignore[arg-type]
    if config.mode == "colorize":
        return x, colorize(pipe, x.mean(1, keepdim=True), resample=config.resample, **sampling)  # type: ignore[arg-type]
    if config.mode == "sdedit":
        return x, sdedit(pipe, x, config.strength, **sampling)  # type: ignore[arg-type]
    b = _read_images(config.input_b, "input_b").to(pipe.device)
    return x, interpolate(pipe, x[0], b[0], num=config.frames, steps=config.steps, **cond)  # type: ignore[arg-type]
