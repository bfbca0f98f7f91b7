"""``FrameStream``: a real-time frame stream (Kodaira et al. 2023, "StreamDiffusion") on any diffcore denoiser.

One call takes one input frame (image-to-image: encoded, noised to the first step's level; text-to-image: fresh
noise) and returns the frame that has just finished all its steps, decoded. Around the
:class:`~diffcore.streaming.batch.StreamBatch` it adds the stochastic similarity filter
(:mod:`diffcore.streaming.filter`), an optional encoder and decoder (a VAE or a tiny autoencoder), and the
accelerations: weights quantised through torchao, parts compiled with ``torch.compile``, and the whole step
(encoder, network, guidance, sampler arithmetic, decoder) replayed as one CUDA graph
(:class:`~diffcore.kernels.cuda_graphs.GraphedInference`).

Frames are ``(B, ...)`` tensors (images ``(B, C, H, W)``, in whatever range ``encode`` takes); outputs are what
``decode`` returns (or the ``x0`` latents without one). After the pipeline fills (``latency`` calls), call
``k`` returns frame ``k - latency``. Time runs from ``t = 1`` (noise) to ``t = 0`` (data).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from diffcore.kernels.cuda_graphs import GraphedInference
from diffcore.paths.denoiser import Denoiser, DenoiserBase
from diffcore.streaming.acceleration import QUANTIZATIONS, Quantization, compiled, quantize_weights
from diffcore.streaming.batch import NOISE_MODES, STEP_RULES, NoiseMode, StepRule, StreamBatch
from diffcore.streaming.filter import SimilarityFilter
from diffcore.streaming.guidance import GUIDANCE_MODES, GuidanceMode
from diffcore.streaming.steps import stream_times

__all__ = ["STREAM_MODES", "FrameStream", "StreamConfig", "StreamMode"]

StreamMode = Literal["img2img", "txt2img"]
STREAM_MODES: tuple[str, ...] = ("img2img", "txt2img")
Codec = Callable[[Tensor], Tensor]


@dataclass
class StreamConfig:
    """A frame stream's settings.

    Attributes:
        mode: ``img2img`` (each call takes an input frame) or ``txt2img`` (each call starts from noise).
        t_index_list: the denoising steps, as indices into the ``num_steps``-interval grid (StreamDiffusion's
            ``t_index_list``): ``(0,)`` of 1 is one step from pure noise; image-to-image starts later, e.g.
            ``(32, 45)`` of 50.
        num_steps: intervals of the grid the steps are picked from.
        grid: a registered time grid (``diffcore.sampling.grids``).
        t_start: where the grid starts (1: pure noise; a consistency student's ``t_max``).
        step_rule: ``consistency`` (jump to x0, re-noise: consistency / LCM / turbo students) or ``ddim``.
        guidance: ``none``, ``full`` (CFG), ``self`` or ``initialize`` (residual CFG).
        guidance_scale: the guidance scale ``w``.
        noise: ``fixed`` (one set of noises reused by every frame: steadier video) or ``fresh`` (new noise at every
            call). Text-to-image frames always start from fresh noise unless a call passes its own.
        batch_size: frames per call.
        similarity_filter: skip inputs similar to the last processed one (image-to-image only).
        filter_threshold: the filter's cosine-similarity threshold ``eta``.
        filter_max_skip: consecutive skips after which an input is processed anyway.
        cuda_graphs: replay each call's GPU work as one CUDA graph (CUDA only; ignored on CPU).
        compile: ``torch.compile`` the network, encoder and decoder.
        quantize: torchao weights of the network: ``none``, ``int8``, ``int8-weight``, ``fp8``, ``fp8-weight``.
    """

    mode: StreamMode = "img2img"
    t_index_list: tuple[int, ...] = (0,)
    num_steps: int = 1
    grid: str = "trailing"
    t_start: float = 1.0
    step_rule: StepRule = "consistency"
    guidance: GuidanceMode = "none"
    guidance_scale: float = 1.0
    noise: NoiseMode = "fixed"
    batch_size: int = 1
    similarity_filter: bool = False
    filter_threshold: float = 0.98
    filter_max_skip: int = 10
    cuda_graphs: bool = False
    compile: bool = False
    quantize: Quantization = "none"

    def __post_init__(self) -> None:
        self.t_index_list = tuple(int(i) for i in self.t_index_list)
        for name, value, allowed in (
            ("mode", self.mode, STREAM_MODES),
            ("step_rule", self.step_rule, STEP_RULES),
            ("guidance", self.guidance, GUIDANCE_MODES),
            ("noise", self.noise, NOISE_MODES),
            ("quantize", self.quantize, QUANTIZATIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")
        if self.similarity_filter and self.mode != "img2img":
            raise ValueError("similarity_filter: compares input frames, so it needs mode 'img2img'")
        if not self.guidance_scale >= 0:
            raise ValueError(f"guidance_scale: expected >= 0, got {self.guidance_scale!r}")


def _network_module(denoiser: DenoiserBase) -> nn.Module:
    fn = getattr(denoiser, "fn", None)
    if not isinstance(fn, nn.Module):
        raise TypeError(
            f"quantize: expected a Denoiser whose network is an nn.Module, got {type(denoiser).__name__} "
            f"of {type(fn).__name__}"
        )
    return fn


class FrameStream:
    """A real-time stream of frames through a denoiser (module docstring).

    Args:
        denoiser: any :class:`~diffcore.paths.denoiser.DenoiserBase`; with ``compile`` or ``quantize``, a plain
            :class:`~diffcore.paths.denoiser.Denoiser` (its network is what gets compiled or quantised).
        config: the :class:`StreamConfig`.
        shape: ``(C, H, W)`` of the diffused tensor (the latent when ``encode`` / ``decode`` are given).
        encode: frame ``(B, ...)`` -> latent ``(B, *shape)`` (image-to-image), e.g. a VAE encoder; None: identity.
        decode: latent -> output frame; None: identity.
        cond, uncond: network keyword arguments shared by every frame (and the unconditional ones for ``full``
            and ``initialize`` guidance), leading batch 1 or ``batch_size``.
        generator: draws the stream's noises (on ``device``).
        filter_generator: draws the similarity filter's decisions (a CPU generator).
        device, dtype: where the stream runs and the dtype of its states (bf16 on a GPU for speed).
    """

    def __init__(
        self,
        denoiser: DenoiserBase,
        config: StreamConfig,
        shape: Sequence[int],
        *,
        encode: Codec | None = None,
        decode: Codec | None = None,
        cond: dict[str, Tensor] | None = None,
        uncond: dict[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
        filter_generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not isinstance(config, StreamConfig):
            raise TypeError(f"config: expected a StreamConfig, got {type(config).__name__}")
        self.config, self.device = config, torch.device(device)
        if config.quantize != "none":
            quantize_weights(_network_module(denoiser), config.quantize)
        if config.compile:
            if not isinstance(denoiser, Denoiser):
                raise TypeError(f"compile: expected a plain Denoiser, got {type(denoiser).__name__}")
            denoiser = Denoiser(compiled(denoiser.fn), denoiser.schedule, denoiser.prediction)
            encode = compiled(encode) if encode is not None else None
            decode = compiled(decode) if decode is not None else None
        self.encode, self.decode = encode, decode
        times = stream_times(
            denoiser.schedule, config.t_index_list, config.num_steps, config.grid, config.t_start
        )
        self.batch = StreamBatch(
            denoiser, times, shape, batch_size=config.batch_size, step_rule=config.step_rule,
            guidance=config.guidance, guidance_scale=config.guidance_scale, cond=cond, uncond=uncond,
            noise=config.noise, generator=generator, device=self.device, dtype=dtype,
        )  # fmt: skip
        self.filter = (
            SimilarityFilter(config.filter_threshold, config.filter_max_skip)
            if config.similarity_filter
            else None
        )
        self.filter_generator = filter_generator
        self._graph = (
            GraphedInference(self._run, state=lambda: list(self.batch.state().values()))
            if config.cuda_graphs and self.device.type == "cuda"
            else None
        )
        self._keys: tuple[str, ...] | None = None
        self.last_output: Tensor | None = None
        self.calls = 0

    @property
    def times(self) -> tuple[float, ...]:
        """The stream's step times ``t_0 > ... > t_{n-1}``."""
        return tuple(p.t for p in self.batch.coef.points[:-1])

    @property
    def latency(self) -> int:
        """Calls before the first input frame comes out (``n - 1`` for ``n`` steps)."""
        return self.batch.n - 1

    @property
    def skipped(self) -> int:
        """Inputs the similarity filter skipped so far."""
        return self.filter.skipped if self.filter is not None else 0

    def _run(self, *tensors: Tensor) -> Tensor:
        """The GPU work of one call: ``(frame?, noise, *per-frame conditions)`` -> output frame."""
        frame, noise, rest = (
            (tensors[0], tensors[1], tensors[2:])
            if self.config.mode == "img2img"
            else (None, tensors[0], tensors[1:])
        )
        latent = None
        if frame is not None:
            latent = self.encode(frame) if self.encode is not None else frame
        x0 = self.batch.step(*self.batch.entry(latent, noise), dict(zip(self._keys or (), rest, strict=True)))
        return self.decode(x0) if self.decode is not None else x0

    @torch.no_grad()
    def __call__(
        self,
        frame: Tensor | None = None,
        *,
        noise: Tensor | None = None,
        frame_cond: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """Feed one frame and return the finished one.

        Args:
            frame: ``(B, ...)`` the input frame (``img2img``); must be None for ``txt2img``.
            noise: ``(B, *shape)`` this frame's entry noise; default: the fixed one (``img2img`` with ``fixed``
                noise) or a fresh draw.
            frame_cond: network keyword arguments that belong to this frame and travel with it through the steps
                (a ControlNet's condition map, a per-frame prompt), leading batch ``B``; the same keys every call.

        Returns:
            the output frame (``decode``'s output; the ``x0`` latent without a decoder). When the filter skips the
            input, the previous output again (the same tensor).
        """
        self.calls += 1
        frame = self._check_frame(frame)
        if self.filter is not None and self.last_output is not None:
            if self.filter.skip(frame, self.filter_generator):
                return self.last_output
        elif self.filter is not None:
            self.filter.skip(
                frame, self.filter_generator
            )  # the first input: processed, becomes the reference
        frame_cond = frame_cond or {}
        if self._keys is None:
            self._keys = tuple(sorted(frame_cond))
        self.batch.ensure_frame_cond(frame_cond)
        self.batch.draw_noise()
        if noise is None:
            noise = self.batch.entry_noise if self.batch.noise_mode == "fixed" and frame is not None else None
            noise = noise if noise is not None else self.batch.randn()
        inputs = ([frame] if frame is not None else []) + [noise] + [frame_cond[k] for k in self._keys]
        out = self._graph(*inputs) if self._graph is not None else self._run(*inputs)
        self.last_output = out.clone() if self._graph is not None else out
        return self.last_output

    def _check_frame(self, frame: Tensor | None) -> Tensor | None:
        if self.config.mode == "txt2img":
            if frame is not None:
                raise ValueError("frame: a txt2img stream starts every frame from noise; pass no frame")
            return None
        if not isinstance(frame, Tensor) or frame.ndim < 1 or frame.shape[0] != self.config.batch_size:
            got = tuple(frame.shape) if isinstance(frame, Tensor) else type(frame).__name__
            raise ValueError(
                f"frame: expected a tensor with a leading batch of {self.config.batch_size} (img2img), got {got}"
            )
        return frame.to(self.device)
