"""``ImagePipeline``: a trained image diffusion model with everything needed to sample from it.

A pipeline holds the network, its path (a ``diffcore.paths.schedules`` name) and parameterisation, and optionally a
KL autoencoder (latent diffusion), a text encoder and ControlNets. It is a :class:`diffcore.pipeline.Pipeline`, so
on disk it is one folder, written atomically::

    pipeline.json        the class, format and versions; "config": schedule, prediction, sample shape, classes,
                         control kinds; "components": the sub-folders below that exist
    model/               the backbone (config.json + model.safetensors)
    autoencoder/         the AutoencoderKL, when latent
    text_encoder/        the transformers text model + tokenizer, when text-conditioned
    controlnet_<kind>/   one ControlNet per control kind

Folders written by diff-image 0.1 (a flat ``pipeline.json`` of the settings) still load.

Images are ``(B, C, H, W)`` floats in ``[-1, 1]``; time runs from ``t = 1`` (noise) to ``t = 0`` (data).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffcore.guidance.wrappers import ClassifierFreeGuidance
from diffcore.paths.denoiser import Denoiser, DenoiserBase
from diffcore.paths.schedules import get as get_schedule
from diffcore.pipeline import PIPELINE_FILE, Pipeline, read_pipeline_meta
from diffcore.precision.float8 import KEEP_IN_BF16
from diffcore.precision.quantize import Quantization, quantize_weights
from diffcore.pretrained import PretrainedModel, load_pretrained
from diffcore.sampling import sample as diffcore_sample
from torch import Tensor, nn

from diff_image.autoencoder import AutoencoderKL
from diff_image.models import TextConditionedModel, TextEncoder

__all__ = ["PIPELINE_FILE", "ImagePipeline"]

CONTROLNET_PREFIX = "controlnet_"
PREDICTIONS = ("eps", "x0", "v", "velocity", "score")


def _infer_shape(model: nn.Module) -> tuple[int, int, int] | None:
    cfg = getattr(model, "config", None)
    size = getattr(cfg, "input_size", None)
    if size is None or len(size) != 2:
        return None
    return (int(cfg.in_channels), int(size[0]), int(size[1]))


class ImagePipeline(Pipeline):
    """Sampling and saving for one trained model.

    Args:
        model: the backbone (a :class:`~diffcore.pretrained.PretrainedModel`: DiT, U-Net, MMDiT) meeting
            ``model(x_t, t, **cond)``.
        schedule: a registered ``diffcore.paths.schedules`` name (``"vp-cosine"``, ``"rectified-flow"``, ...).
        prediction: what the model predicts (``eps``, ``x0``, ``v``, ``velocity``, ``score``).
        autoencoder: a KL autoencoder; the model then works on its scaled latents.
        text_encoder: a :class:`~diff_image.models.TextEncoder`; the model then takes ``context``/``pooled``.
        sample_shape: ``(C, H, W)`` of the model's input; inferred from DiT/MMDiT configs when omitted.
        num_classes: classes of a class-conditional model (the null class is ``num_classes``), else 0.
        train_text_encoder: whether the text encoder was trained with the model (saved either way).
        controlnets: ControlNets by control kind (:mod:`diff_image.pipeline.control`); the network then takes
            ``control_maps=`` (the kinds' maps concatenated over channels, in this dict's order).
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: str,
        prediction: str,
        autoencoder: AutoencoderKL | None = None,
        text_encoder: TextEncoder | None = None,
        sample_shape: Sequence[int] | None = None,
        num_classes: int = 0,
        train_text_encoder: bool = True,
        controlnets: dict[str, nn.Module] | None = None,
    ) -> None:
        if not isinstance(schedule, str):
            raise TypeError(f"schedule: expected a registered schedule name, got {type(schedule).__name__}")
        get_schedule(schedule)  # raises on an unknown name
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction: expected one of {PREDICTIONS}, got {prediction!r}")
        shape = tuple(int(s) for s in sample_shape) if sample_shape is not None else _infer_shape(model)
        if shape is None or len(shape) != 3:
            raise ValueError(
                f"sample_shape: expected (C, H, W) for this {type(model).__name__}, got {sample_shape}"
            )
        if num_classes < 0:
            raise ValueError(f"num_classes: expected >= 0, got {num_classes}")
        self.model, self.autoencoder, self.text_encoder = model, autoencoder, text_encoder
        self.schedule, self.prediction = schedule, prediction
        self.sample_shape: tuple[int, int, int] = shape  # type: ignore[assignment]
        self.num_classes = int(num_classes)
        self.train_text_encoder = train_text_encoder
        self.controlnets = dict(controlnets or {})
        self.control_scales: dict[str, float] = {}
        """Sampling strength of each ControlNet by kind (missing: 1); not saved with the pipeline."""
        self.quantization: str = "none"  # set on the copies :meth:`quantized` makes

    # ------------------------------------------------------------------ the network as diffcore sees it

    @property
    def network(self) -> nn.Module:
        """The callable network ``net(x_t, t, **cond)``: the backbone, with its ControlNets and text encoder if any."""
        net = self.feature_network
        if self.text_encoder is None:
            return net
        return TextConditionedModel(net, self.text_encoder, train_text_encoder=False)

    @property
    def feature_network(self) -> nn.Module:
        """The network without the text encoder: it takes the text features of :meth:`encode_condition`
        (``context``, ``context_mask``, ``pooled``) rather than token ids; :attr:`network` when there is no text."""
        net: nn.Module = self.model
        if self.controlnets:
            from diffcore.nn import ControlledModel

            from diff_image.pipeline.control import ControlMapsModel

            scales = [self.control_scales.get(kind, 1.0) for kind in self.controlnets]
            net = ControlMapsModel(
                ControlledModel(self.model, list(self.controlnets.values()), scales), list(self.controlnets)
            )
        return net

    def quantized(self, mode: Quantization) -> ImagePipeline:
        """A copy of this pipeline for sampling whose backbone's linear weights are quantised through torchao
        (:func:`diffcore.precision.quantize.quantize_weights`; ``mode``: ``int8-weight``, ``int8``, ``fp8-weight``,
        ``fp8``), embeddings, adaLN modulation and the output layer kept (``KEEP_IN_BF16``); ``none`` returns this
        pipeline. This pipeline is unchanged; the copy shares its other parts and cannot be saved. Quantise on the
        device the copy samples on (``fp8`` needs a GPU of compute capability 8.9+)."""
        if mode == "none":
            return self
        twin = copy.copy(self)
        twin.model = quantize_weights(copy.deepcopy(self.model), mode, keep=KEEP_IN_BF16)
        twin.controlnets = dict(self.controlnets)
        twin.control_scales = dict(self.control_scales)
        twin.quantization = mode
        return twin

    def denoiser(self, network: nn.Module | None = None) -> Denoiser:
        """A :class:`diffcore.Denoiser` of ``network`` (default :attr:`network`) with this schedule and prediction."""
        return Denoiser(network if network is not None else self.network, self.schedule, self.prediction)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the pipeline's output images."""
        if self.autoencoder is None:
            return self.sample_shape
        f = self.autoencoder.config.downsample
        _, h, w = self.sample_shape
        return (self.autoencoder.config.in_channels, h * f, w * f)

    # ------------------------------------------------------------------ conditions

    def condition(
        self,
        n: int,
        y: Sequence[int] | Tensor | None = None,
        prompt: str | Sequence[str] | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(cond, uncond)`` keyword arguments for ``n`` samples (labels or prompts cycle to length ``n``)."""
        dev = self.device
        if self.num_classes:
            if y is None:
                labels = torch.arange(n, device=dev) % self.num_classes
            else:
                labels = torch.as_tensor(y, device=dev, dtype=torch.long).reshape(-1)
                labels = labels.repeat(-(-n // len(labels)))[:n]
            if int(labels.min()) < 0 or int(labels.max()) > self.num_classes:
                raise ValueError(
                    f"y: expected labels in [0, {self.num_classes}] (the last is null), got {labels.tolist()}"
                )
            return {"y": labels}, {"y": torch.full((1,), self.num_classes, device=dev, dtype=torch.long)}
        if self.text_encoder is not None:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt or [""])
            prompts = (prompts * -(-n // len(prompts)))[:n]
            ids = self.text_encoder.tokenize(prompts, device=dev)
            return {"input_ids": ids}, {"input_ids": self.text_encoder.tokenize([""], device=dev)}
        if y is not None or prompt is not None:
            raise ValueError("y, prompt: this pipeline is unconditional; pass neither")
        return {}, {}

    @torch.no_grad()
    def encode_condition(self, cond: dict[str, Tensor]) -> dict[str, Tensor]:
        """``cond`` (of :meth:`condition`) with its token ids ``input_ids`` ``(B, L)`` replaced by the text
        encoder's features: ``context`` ``(B, L, width)``, ``context_mask`` ``(B, L)`` and ``pooled`` ``(B, width)``,
        what :attr:`network` computes from the ids at every step, computed once (for :attr:`feature_network`).
        Other keys are kept; without a text encoder or ids, a copy of ``cond``."""
        out = {k: v for k, v in cond.items() if k != "input_ids"}
        if self.text_encoder is None or "input_ids" not in cond:
            return dict(cond)
        context, mask, pooled = self.text_encoder(cond["input_ids"].to(self.device))
        out.update(context=context, context_mask=mask, pooled=pooled)
        return out

    @property
    def conditional(self) -> bool:
        """Whether the model takes a condition (class labels or captions), i.e. guidance can apply."""
        return bool(self.num_classes) or self.text_encoder is not None

    def resolve_guidance(self, guidance: float | None) -> float:
        """The classifier-free guidance scale to sample with: ``guidance`` as given, or for ``None``
        :data:`~diff_image.config.DEFAULT_GUIDANCE` on a conditional model and 1 (none) on an unconditional one.
        A scale other than 1 on an unconditional model is an error (there is nothing to guide towards)."""
        from diff_image.config import DEFAULT_GUIDANCE

        if guidance is None:
            return DEFAULT_GUIDANCE if self.conditional else 1.0
        if guidance != 1.0 and not self.conditional:
            raise ValueError(
                f"guidance: this pipeline is unconditional (no classes, no text), so classifier-free guidance "
                f"cannot apply; got {guidance:g}, expected 1 or none (leave --guidance unset)"
            )
        return float(guidance)

    def guided(
        self, denoiser: DenoiserBase, uncond: dict[str, Tensor], guidance: float | None
    ) -> DenoiserBase:
        """Wrap ``denoiser`` with classifier-free guidance of scale ``guidance`` (:meth:`resolve_guidance`: an
        error on an unconditional model unless 1 or None; no wrapper at 1)."""
        guidance = self.resolve_guidance(guidance)
        if guidance == 1.0 or not uncond:
            return denoiser
        return ClassifierFreeGuidance(denoiser, scale=guidance, uncond=uncond)

    # ------------------------------------------------------------------ latents <-> images

    def encode(self, images: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` in ``[-1, 1]`` -> the model's space (scaled latents, or the images)."""
        return images if self.autoencoder is None else self.autoencoder.encode(images.to(self.device))

    def decode(self, x: Tensor) -> Tensor:
        """The model's space -> images ``(B, C, H, W)`` clamped to ``[-1, 1]``."""
        out = x if self.autoencoder is None else self.autoencoder.decode(x)
        return out.clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(
        self,
        n: int,
        sampler: str = "dpmpp_2m",
        steps: int = 20,
        guidance: float | None = 1.0,
        y: Sequence[int] | Tensor | None = None,
        prompt: str | Sequence[str] | None = None,
        generator: torch.Generator | None = None,
        batch_size: int = 256,
        cond: dict[str, Any] | None = None,
        **options: Any,
    ) -> Tensor:
        """Draw ``n`` images ``(n, C, H, W)`` in ``[-1, 1]``.

        Args:
            sampler: any ``diffcore.sampling.available()`` name; ``steps`` its grid intervals.
            guidance: classifier-free guidance scale ``w`` (Ho & Salimans 2022, Eq. 6); 1 = conditional model;
                None: :meth:`resolve_guidance` (2 on a conditional model, none on an unconditional one); other
                values on an unconditional model are an error.
            y: class labels (cycled to ``n``; default ``0, 1, ..., num_classes - 1, 0, ...``).
            prompt: one caption or a list (cycled to ``n``) for text-conditioned models.
            generator: seeds the noise (on the pipeline's device).
            cond: extra network keyword arguments for all samples (e.g. ``control_maps``), batch-first tensors.
            options: sampler options (``eta=``, ``grid=`` ...) passed to :func:`diffcore.sample`.
        """
        if n < 1:
            raise ValueError(f"n: expected >= 1, got {n}")
        full_cond, uncond = self.condition(n, y, prompt)
        full_cond.update(cond or {})
        latents = self.sample_latents(
            n, full_cond, uncond, sampler, steps, guidance, generator, batch_size, **options
        )
        return self.decode_batches(latents, batch_size)

    @torch.no_grad()
    def sample_latents(
        self,
        n: int,
        cond: dict[str, Tensor],
        uncond: dict[str, Tensor],
        sampler: str = "dpmpp_2m",
        steps: int = 20,
        guidance: float | None = 1.0,
        generator: torch.Generator | None = None,
        batch_size: int = 256,
        **options: Any,
    ) -> Tensor:
        """``n`` samples ``(n, *sample_shape)`` in the model's space (scaled latents when latent), not decoded:
        the loop of :meth:`sample` given :meth:`condition`'s ``(cond, uncond)`` (batch-first tensors of ``n``
        rows), or the text features of :meth:`encode_condition` of both (then the text encoder is not run at every
        step); noise is drawn ``batch_size`` at a time from ``generator``, as :meth:`sample` draws it. While a
        :func:`diffcore.previews.previewing` listener is set, its previews are the x0 estimates through
        :meth:`decode`."""
        from diffcore import previews

        if n < 1:
            raise ValueError(f"n: expected >= 1, got {n}")
        encoded = self.text_encoder is not None and "context" in cond and "input_ids" not in cond
        net = self.feature_network if encoded else self.network  # text features given: no encoder per step
        den = self.guided(self.denoiser(net.eval()), uncond, guidance)
        out = []
        with previews.preview_decoder(self.decode):
            for start in range(0, n, batch_size):
                b = min(batch_size, n - start)
                noise = torch.randn((b, *self.sample_shape), generator=generator, device=self.device)
                part = {k: v[start : start + b] for k, v in cond.items()}
                out.append(
                    diffcore_sample(
                        den, noise, sampler=sampler, steps=steps, cond=part, generator=generator, **options
                    )
                )
        return torch.cat(out)

    @torch.no_grad()
    def decode_batches(self, latents: Tensor, batch_size: int = 256) -> Tensor:
        """:meth:`decode` of ``latents`` ``(n, *sample_shape)``, ``batch_size`` at a time (as :meth:`sample`
        decodes, so the images are the same bit for bit) -> images ``(n, C, H, W)`` in ``[-1, 1]``."""
        if latents.ndim != 4 or tuple(latents.shape[1:]) != self.sample_shape:
            raise ValueError(
                f"latents: expected (n, {', '.join(map(str, self.sample_shape))}) for this pipeline, "
                f"got {tuple(latents.shape)}"
            )
        latents = latents.to(self.device)
        return torch.cat(
            [self.decode(latents[i : i + batch_size]) for i in range(0, len(latents), batch_size)]
        )

    # ------------------------------------------------------------------ disk (diffcore.pipeline.Pipeline)

    def components(self) -> dict[str, Any]:
        """``model``, ``autoencoder``, ``text_encoder`` and ``controlnet_<kind>`` (absent parts are None)."""
        parts: dict[str, Any] = {
            "model": self.model,
            "autoencoder": self.autoencoder,
            "text_encoder": self.text_encoder,
        }
        parts.update({f"{CONTROLNET_PREFIX}{kind}": net for kind, net in self.controlnets.items()})
        return parts

    def pipeline_config(self) -> dict[str, Any]:
        """Schedule, prediction, sample shape, class count, text-encoder training and the control kinds in order."""
        return {
            "schedule": self.schedule,
            "prediction": self.prediction,
            "sample_shape": list(self.sample_shape),
            "num_classes": self.num_classes,
            "train_text_encoder": self.train_text_encoder,
            "controlnets": list(self.controlnets),
        }

    @classmethod
    def from_parts(cls, config: dict[str, Any], components: dict[str, Any]) -> ImagePipeline:
        """The pipeline of :meth:`pipeline_config`'s ``config`` and the loaded ``components``."""
        kinds = list(config.get("controlnets", []))
        missing = [n for n in ["model", *(CONTROLNET_PREFIX + k for k in kinds)] if n not in components]
        if missing:
            raise ValueError(
                f"components: expected {missing} among the pipeline's parts, got {sorted(components)}"
            )
        return cls(
            components["model"],
            config["schedule"],
            config["prediction"],
            autoencoder=components.get("autoencoder"),
            text_encoder=components.get("text_encoder"),
            sample_shape=config["sample_shape"],
            num_classes=config["num_classes"],
            train_text_encoder=config.get("train_text_encoder", True),
            controlnets={k: components[f"{CONTROLNET_PREFIX}{k}"] for k in kinds},
        )

    @classmethod
    def load_component(cls, name: str, folder: Path, device: torch.device) -> Any:
        """The text encoder through transformers; every other part as a :class:`~diffcore.pretrained.PretrainedModel`."""
        if name == "text_encoder":
            return TextEncoder.from_pretrained(folder).to(device)
        return load_pretrained(folder, device=device)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write the pipeline folder at ``directory`` (see the module docstring), replacing one there atomically."""
        if not isinstance(self.model, PretrainedModel):
            raise TypeError(f"model: expected a PretrainedModel to save, got {type(self.model).__name__}")
        if self.quantization != "none":
            raise ValueError(
                f"save_pretrained: this pipeline's weights are quantised for sampling ({self.quantization!r}); save "
                "the pipeline it was made from"
            )
        if getattr(self.model, "peft_config", None):
            raise ValueError(
                "model: holds LoRA adapters; save them alone with diff_image.lora.save_adapter and load them into "
                "the saved base with diff_image.lora.load_adapters"
            )
        return super().save_pretrained(directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> ImagePipeline:
        """Load a folder written by :meth:`save_pretrained` (or by diff-image 0.1) onto ``device``."""
        meta = read_pipeline_meta(directory)
        if "format" not in meta and "schedule" in meta:
            return cls._from_flat_meta(Path(directory), meta, torch.device(device))
        return super().from_pretrained(directory, device)

    @classmethod
    def _from_flat_meta(cls, folder: Path, meta: dict[str, Any], device: torch.device) -> ImagePipeline:
        """A folder of diff-image 0.1: ``pipeline.json`` holds the settings and flags for the optional parts."""
        names = ["model"] + [n for n in ("autoencoder", "text_encoder") if meta.get(n)]
        names += [f"{CONTROLNET_PREFIX}{k}" for k in meta.get("controlnets", [])]
        for name in names:
            if not (folder / name).is_dir():
                raise FileNotFoundError(
                    f"pipeline: {folder} lists component {name!r} but has no {name}/ folder"
                )
        return cls.from_parts(meta, {name: cls.load_component(name, folder / name, device) for name in names})
