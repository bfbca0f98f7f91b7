"""``VideoPipeline``: a trained video model with everything needed to sample from it.

On disk (a :class:`diffcore.pipeline.Pipeline` folder, written atomically)::

    pipeline.json    class, format, versions; "config": time shift, clip shape, classes, prompts
    model/           the VideoDiT (config.json + model.safetensors)
    text_encoder/    the TextEncoder trained with it (text pipelines)
    vae/             the causal 3D VAE (latent pipelines)

Clips are ``(B, C, T, H, W)`` floats in ``[-1, 1]``. The model generates by rectified flow
(``x_t = (1 - t) x_0 + t eps``, ``t = 0`` data, ``t = 1`` noise; SD3's shift of the time when ``time_shift != 1``)
and predicts the velocity ``dx_t/dt``; sampling integrates it from ``t = 1`` to ``0`` with any diffcore sampler.

Frames can be given (image-to-video, continuation): :class:`FrameConditioned` holds them at ``t = 0`` through
a per-frame mask, as Open-Sora does, and :meth:`VideoPipeline.extend` makes long clips window by window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffcore.guidance.wrappers import ClassifierFreeGuidance
from diffcore.paths.denoiser import Denoiser, DenoiserBase
from diffcore.paths.predictions import PathCoefficients, convert
from diffcore.paths.schedules import Schedule, Shifted
from diffcore.paths.schedules import get as get_schedule
from diffcore.pipeline import Pipeline
from diffcore.pretrained import load_pretrained
from diffcore.sampling import sample as diffcore_sample
from torch import Tensor, nn
from tqdm.auto import tqdm

from diff_video.config import DEFAULT_GUIDANCE
from diff_video.models import TextConditioned, TextEncoder, VideoDiT

__all__ = ["FrameConditioned", "VideoPipeline", "flow_schedule"]


def flow_schedule(shift: float) -> Schedule:
    """The rectified-flow path, shifted towards noise by ``shift`` (SD3, Esser et al. 2024, Eq. 23) unless 1."""
    base = get_schedule("rectified-flow")
    return base if shift == 1.0 else Shifted(base, shift)


class FrameConditioned(nn.Module):
    """Hold given frames at ``t = 0`` while the rest is generated (Open-Sora 1.2's frame masking).

    ``forward(x, t, frames=None, frame_mask=None, **cond)``: where ``frame_mask`` ``(B, T)`` is True, the input
    frames are replaced by the clean ``frames`` ``(B, C, T, H, W)``, the network sees ``frame_mask`` (its
    token-frames there are modulated with ``t = 0``), and the returned velocity is the one that carries ``x_t``
    straight to the given frames: the ``x0`` estimate there is exactly ``frames`` at every step, so any sampler
    ends on them.
    """

    def __init__(self, network: nn.Module, schedule: Schedule) -> None:
        super().__init__()
        self.network, self.schedule = network, schedule

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        frames: Tensor | None = None,
        frame_mask: Tensor | None = None,
        **cond: Any,
    ) -> Tensor:
        """The network's velocity for ``x`` at ``t``, with the frames where ``frame_mask`` is True held at the
        given ``frames`` (see the class docstring); without ``frame_mask``, the network alone."""
        if frame_mask is None:
            return self.network(x, t, **cond)
        if frames is None or frames.shape != x.shape:
            raise ValueError(
                f"frames: expected the given frames shaped like x {tuple(x.shape)} with frame_mask"
            )
        keep = frame_mask[:, None, :, None, None]
        out = self.network(torch.where(keep, frames, x), t, frame_mask=frame_mask, **cond)
        c = PathCoefficients.at(self.schedule, t.double(), x.ndim, x.dtype)
        held = convert(frames, "x0", "velocity", x, c)
        return torch.where(keep, held.to(out.dtype), out)


class VideoPipeline(Pipeline):
    """Sampling and saving for one trained video model.

    Args:
        model: the :class:`~diff_video.models.VideoDiT` (predicting the rectified-flow velocity).
        text_encoder: its :class:`~diff_video.models.TextEncoder` (text pipelines).
        vae: the causal 3D VAE (latent pipelines); the model then works on its scaled latents.
        time_shift: the shift of the rectified-flow time the model was trained with (1: none).
        clip_shape: ``(C, T, H, W)`` of the clips it makes (pixels).
        num_classes: classes of a class-conditional model (``class_names`` their names), else 0.
        prompts: example captions (the first training captions), the default prompts of :meth:`sample`.
        shapes: the :class:`~diff_video.data.shapes.ShapesConfig` fields of the moving-shapes set it was trained on
            (None for a folder), which :func:`~diff_video.pipeline.evaluate` draws held-out clips from.
    """

    def __init__(
        self,
        model: VideoDiT,
        text_encoder: TextEncoder | None = None,
        vae: nn.Module | None = None,
        time_shift: float = 1.0,
        clip_shape: Sequence[int] = (3, 16, 32, 32),
        num_classes: int = 0,
        class_names: Sequence[str] = (),
        prompts: Sequence[str] = (),
        shapes: dict[str, Any] | None = None,
    ) -> None:
        if time_shift <= 0:
            raise ValueError(f"time_shift: expected > 0, got {time_shift}")
        if len(clip_shape) != 4:
            raise ValueError(f"clip_shape: expected (C, T, H, W), got {tuple(clip_shape)}")
        self.model, self.text_encoder, self.vae = model, text_encoder, vae
        self.time_shift = float(time_shift)
        self.clip_shape = tuple(int(s) for s in clip_shape)
        self.num_classes, self.class_names = int(num_classes), list(class_names)
        self.prompts = list(prompts)
        self.shapes = dict(shapes) if shapes is not None else None

    # ------------------------------------------------------------------ the network as diffcore sees it

    @property
    def schedule(self) -> Schedule:
        """The (shifted) rectified-flow path."""
        return flow_schedule(self.time_shift)

    @property
    def network(self) -> nn.Module:
        """``net(x_t, t, input_ids= | y=, frames=, frame_mask=)``: the model with its text encoder and the frame
        conditioning."""
        net: nn.Module = self.model
        if self.text_encoder is not None:
            net = TextConditioned(self.model, self.text_encoder)
        return FrameConditioned(net, self.schedule)

    def denoiser(self) -> Denoiser:
        """A :class:`diffcore.Denoiser` of :attr:`network` (velocity prediction on :attr:`schedule`)."""
        return Denoiser(self.network.eval(), self.schedule, "velocity")

    @property
    def conditional(self) -> bool:
        """Whether the model takes captions or classes (so classifier-free guidance applies)."""
        return self.text_encoder is not None or self.num_classes > 0

    def resolve_guidance(self, guidance: float | None) -> float:
        """``guidance``, or (None / 0) :data:`~diff_video.config.DEFAULT_GUIDANCE` on a conditional model and 1 on an
        unconditional one; a scale other than 1 on an unconditional model is an error."""
        if guidance is None or guidance == 0:
            return DEFAULT_GUIDANCE if self.conditional else 1.0
        if guidance != 1.0 and not self.conditional:
            raise ValueError(
                f"guidance: this pipeline is unconditional; got {guidance:g}, expected 1 or 0 (unset)"
            )
        return float(guidance)

    def condition(
        self, n: int, prompts: Sequence[str] | None = None, labels: Sequence[int] | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(cond, uncond)`` keyword arguments for ``n`` clips (prompts or labels cycled to ``n``)."""
        dev = self.device
        if self.text_encoder is not None:
            if labels:
                raise ValueError("labels: this pipeline is text-conditioned; pass prompts")
            chosen = list(prompts or self.prompts or [""])
            chosen = (chosen * -(-n // len(chosen)))[:n]
            ids = self.text_encoder.tokenize(chosen, device=dev)
            return {"input_ids": ids}, {
                "input_ids": self.text_encoder.tokenize([""], device=dev).expand(n, -1)
            }
        if self.num_classes:
            if prompts:
                raise ValueError("prompts: this pipeline is class-conditional; pass labels")
            y = torch.as_tensor(list(labels) if labels else list(range(self.num_classes)), device=dev).long()
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise ValueError(f"labels: expected classes in [0, {self.num_classes - 1}], got {y.tolist()}")
            y = y.repeat(-(-n // len(y)))[:n]
            return {"y": y}, {"y": torch.full_like(y, self.num_classes)}
        if prompts or labels:
            raise ValueError("prompts, labels: this pipeline is unconditional; pass neither")
        return {}, {}

    # ------------------------------------------------------------------ pixels <-> model space

    def model_shape(self, frames: int) -> tuple[int, int, int, int]:
        """``(C, T, H, W)`` of the model's input for clips of ``frames`` frames."""
        c, _, h, w = self.clip_shape
        if self.vae is None:
            return (c, frames, h, w)
        return self.vae.latent_shape((c, frames, h, w))  # type: ignore[operator]

    def encode(self, clips: Tensor) -> Tensor:
        """Clips ``(B, C, T, H, W)`` in [-1, 1] -> the model's space (scaled latents, or the clips)."""
        clips = clips.to(self.device)
        return clips if self.vae is None else self.vae.encode(clips)  # type: ignore[operator]

    def decode(self, x: Tensor) -> Tensor:
        """The model's space -> clips ``(B, C, T, H, W)`` clamped to [-1, 1]."""
        out = x if self.vae is None else self.vae.decode(x)  # type: ignore[operator]
        return out.clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def generate(
        self,
        n: int,
        prompts: Sequence[str] | None = None,
        labels: Sequence[int] | None = None,
        frames: int = 0,
        guidance: float | None = None,
        sampler: str = "euler",
        steps: int = 30,
        generator: torch.Generator | None = None,
        batch_size: int = 16,
        given: Tensor | None = None,
        given_mask: Tensor | None = None,
        decode: bool = True,
        progress: bool = False,
    ) -> Tensor:
        """Draw ``n`` clips ``(n, C, T, H, W)`` in [-1, 1] (``decode=False``: in the model's space).

        Args:
            prompts / labels: the condition, cycled to ``n`` (default: the pipeline's prompts / classes 0, 1, ...).
            frames: clip length (0: the training length).
            guidance: classifier-free guidance scale (Ho & Salimans 2022, Eq. 6); None / 0:
                :meth:`resolve_guidance`.
            sampler, steps: a ``diffcore.sampling.available()`` name and its steps.
            generator: seeds the noise (on the pipeline's device).
            given: frames in the model's space ``(n, C', T', H', W')`` held fixed where ``given_mask`` ``(n, T')``
                is True (image-to-video, continuation).
        """
        if n < 1:
            raise ValueError(f"n: expected >= 1 clips, got {n}")
        shape = self.model_shape(frames or self.clip_shape[1])
        cond, uncond = self.condition(n, prompts, labels)
        if given is not None:
            if given_mask is None or given.shape != (n, *shape) or given_mask.shape != (n, shape[1]):
                raise ValueError(
                    f"given: expected frames {(n, *shape)} and given_mask {(n, shape[1])}, got "
                    f"{tuple(given.shape)} and {None if given_mask is None else tuple(given_mask.shape)}"
                )
            cond.update(frames=given.to(self.device), frame_mask=given_mask.to(self.device).bool())
        den: DenoiserBase = self.denoiser()
        scale = self.resolve_guidance(guidance)
        out = []
        for start in tqdm(range(0, n, batch_size), desc="sampling", disable=not progress, leave=False):
            b = min(batch_size, n - start)
            part = {k: v[start : start + b] for k, v in cond.items()}
            guided = den
            if scale != 1.0:
                guided = ClassifierFreeGuidance(
                    den, scale, {k: v[start : start + b] for k, v in uncond.items()}
                )
            noise = torch.randn((b, *shape), generator=generator, device=self.device)
            x = diffcore_sample(guided, noise, sampler=sampler, steps=steps, cond=part, generator=generator)
            out.append(self.decode(x) if decode else x)
        return torch.cat(out)

    @torch.no_grad()
    def image_to_video(
        self,
        first: Tensor,
        prompts: Sequence[str] | None = None,
        labels: Sequence[int] | None = None,
        frames: int = 0,
        **options: Any,
    ) -> Tensor:
        """Clips ``(B, C, T, H, W)`` that start with the given frames ``first`` ``(B, C, K, H, W)`` in [-1, 1]
        (``K = 1``: an image) and continue as the prompts / labels say; ``options`` go to :meth:`generate`."""
        if first.ndim != 5:
            raise ValueError(f"first: expected given frames (B, C, K, H, W), got {tuple(first.shape)}")
        n, k = first.shape[0], first.shape[2]
        shape = self.model_shape(frames or self.clip_shape[1])
        known = self.encode(first)
        if known.shape[2] > shape[1]:
            raise ValueError(
                f"first: {k} given frames do not fit a clip of {frames or self.clip_shape[1]} frames"
            )
        given = torch.zeros((n, *shape), device=self.device, dtype=known.dtype)
        given[:, :, : known.shape[2]] = known
        mask = torch.zeros((n, shape[1]), dtype=torch.bool, device=self.device)
        mask[:, : known.shape[2]] = True
        return self.generate(n, prompts, labels, frames, given=given, given_mask=mask, **options)

    @torch.no_grad()
    def extend(
        self,
        n: int,
        length: int,
        overlap: int = 4,
        prompts: Sequence[str] | None = None,
        labels: Sequence[int] | None = None,
        first: Tensor | None = None,
        **options: Any,
    ) -> Tensor:
        """Clips of ``length`` frames, longer than one window, by sliding-window extension: the first window is
        generated (from ``first`` frames if given), and each next window is conditioned on the last ``overlap``
        model-space frames of the one before and adds ``window - overlap`` new ones. Returns ``(n, C, T, H, W)``
        in [-1, 1] with ``T >= length`` cut to ``length``. ``options`` go to :meth:`generate`."""
        window = self.clip_shape[1]
        win = self.model_shape(window)
        if not 0 < overlap < win[1]:
            raise ValueError(
                f"overlap: expected 0 < overlap < {win[1]} model frames per window, got {overlap}"
            )
        options = {**options, "decode": False}
        if first is None:
            x = self.generate(n, prompts, labels, window, **options)
        else:
            x = self.image_to_video(first, prompts, labels, window, **options)
        while self.decode_length(x.shape[2]) < length:
            given = torch.zeros((n, *win), device=self.device, dtype=x.dtype)
            given[:, :, :overlap] = x[:, :, -overlap:]
            mask = torch.zeros((n, win[1]), dtype=torch.bool, device=self.device)
            mask[:, :overlap] = True
            new = self.generate(n, prompts, labels, window, given=given, given_mask=mask, **options)
            x = torch.cat([x, new[:, :, overlap:]], dim=2)
        return self.decode(x)[:, :, :length]

    def decode_length(self, model_frames: int) -> int:
        """Pixel frames decoded from ``model_frames`` model-space frames."""
        if self.vae is None:
            return model_frames
        return self.vae.decoded_frames(model_frames)  # type: ignore[operator]

    # ------------------------------------------------------------------ disk (diffcore.pipeline.Pipeline)

    def components(self) -> dict[str, Any]:
        """``model``, ``text_encoder``, ``vae`` (absent parts are None)."""
        return {"model": self.model, "text_encoder": self.text_encoder, "vae": self.vae}

    def pipeline_config(self) -> dict[str, Any]:
        """Time shift, clip shape, classes and example prompts."""
        return {
            "time_shift": self.time_shift,
            "clip_shape": list(self.clip_shape),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "prompts": self.prompts,
            "shapes": self.shapes,
            "prediction": "velocity",
            "schedule": "rectified-flow",
        }

    @classmethod
    def from_parts(cls, config: dict[str, Any], components: dict[str, Any]) -> VideoPipeline:
        """The pipeline of :meth:`pipeline_config`'s ``config`` and the loaded ``components``."""
        if "model" not in components:
            raise ValueError(
                f"components: expected 'model' among the pipeline's parts, got {sorted(components)}"
            )
        return cls(
            components["model"],
            text_encoder=components.get("text_encoder"),
            vae=components.get("vae"),
            time_shift=config["time_shift"],
            clip_shape=config["clip_shape"],
            num_classes=config.get("num_classes", 0),
            class_names=config.get("class_names", []),
            prompts=config.get("prompts", []),
            shapes=config.get("shapes"),
        )

    @classmethod
    def load_component(cls, name: str, folder: Path, device: torch.device) -> Any:
        """Every part is a :class:`~diffcore.pretrained.PretrainedModel`; loaded in eval mode."""
        return load_pretrained(folder, device=device).eval()
