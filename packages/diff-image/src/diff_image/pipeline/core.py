"""``ImagePipeline``: a trained image diffusion model with everything needed to sample from it.

A pipeline holds the network, its path (a ``diffcore.paths.schedules`` name) and parameterisation, and optionally a
KL autoencoder (latent diffusion) and a text encoder. On disk it is one folder::

    pipeline.json        schedule, prediction, sample shape, classes, which components exist
    model/               the backbone (config.json + model.safetensors)
    autoencoder/         the AutoencoderKL, when latent
    text_encoder/        the transformers text model + tokenizer, when text-conditioned

Images are ``(B, C, H, W)`` floats in ``[-1, 1]``; time runs from ``t = 1`` (noise) to ``t = 0`` (data).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffcore import Denoiser
from diffcore import sample as diffcore_sample
from diffcore.guidance.wrappers import ClassifierFreeGuidance
from diffcore.paths.denoiser import DenoiserBase
from diffcore.paths.schedules import get as get_schedule
from diffcore.pretrained import PretrainedModel, atomic_write_bytes, load_pretrained
from torch import Tensor, nn

from diff_image.autoencoder import AutoencoderKL
from diff_image.models import TextConditionedModel, TextEncoder, read_folder_meta

__all__ = ["PIPELINE_FILE", "ImagePipeline"]

PIPELINE_FILE = "pipeline.json"
PREDICTIONS = ("eps", "x0", "v", "velocity", "score")


def _infer_shape(model: nn.Module) -> tuple[int, int, int] | None:
    cfg = getattr(model, "config", None)
    size = getattr(cfg, "input_size", None)
    if size is None or len(size) != 2:
        return None
    return (int(cfg.in_channels), int(size[0]), int(size[1]))


class ImagePipeline:
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

    # ------------------------------------------------------------------ the network as diffcore sees it

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> ImagePipeline:
        """Move every component to ``device``."""
        for part in (self.model, self.autoencoder, self.text_encoder, *self.controlnets.values()):
            if part is not None:
                part.to(device)
        return self

    @property
    def network(self) -> nn.Module:
        """The callable network ``net(x_t, t, **cond)``: the backbone, with its ControlNets and text encoder if any."""
        net: nn.Module = self.model
        if self.controlnets:
            from diffcore.nn import ControlledModel

            from diff_image.pipeline.control import ControlMapsModel

            net = ControlMapsModel(
                ControlledModel(self.model, list(self.controlnets.values())), list(self.controlnets)
            )
        if self.text_encoder is None:
            return net
        return TextConditionedModel(net, self.text_encoder, train_text_encoder=False)

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

    def guided(self, denoiser: DenoiserBase, uncond: dict[str, Tensor], guidance: float) -> DenoiserBase:
        """Wrap ``denoiser`` with classifier-free guidance of scale ``guidance`` (none at 1 or without conditions)."""
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
        guidance: float = 1.0,
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
            guidance: classifier-free guidance scale ``w`` (Ho & Salimans 2022, Eq. 6); 1 = conditional model.
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
        den = self.guided(self.denoiser(self.network.eval()), uncond, guidance)
        out = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            noise = torch.randn((b, *self.sample_shape), generator=generator, device=self.device)
            part = {k: v[start : start + b] for k, v in full_cond.items()}
            x = diffcore_sample(
                den, noise, sampler=sampler, steps=steps, cond=part, generator=generator, **options
            )
            out.append(self.decode(x))
        return torch.cat(out)

    # ------------------------------------------------------------------ disk

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``pipeline.json`` and one ``save_pretrained`` subfolder per component into ``directory``."""
        out = Path(directory)
        if not isinstance(self.model, PretrainedModel):
            raise TypeError(f"model: expected a PretrainedModel to save, got {type(self.model).__name__}")
        if getattr(self.model, "peft_config", None):
            raise ValueError(
                "model: holds LoRA adapters; save them alone with diff_image.lora.save_adapter and load them into "
                "the saved base with diff_image.lora.load_adapters"
            )
        self.model.save_pretrained(out / "model")
        if self.autoencoder is not None:
            self.autoencoder.save_pretrained(out / "autoencoder")
        if self.text_encoder is not None:
            self.text_encoder.save_pretrained(out / "text_encoder")
        for kind, net in self.controlnets.items():
            net.save_pretrained(out / f"controlnet_{kind}")
        meta = {
            "schedule": self.schedule,
            "prediction": self.prediction,
            "sample_shape": list(self.sample_shape),
            "num_classes": self.num_classes,
            "autoencoder": self.autoencoder is not None,
            "text_encoder": self.text_encoder is not None,
            "train_text_encoder": self.train_text_encoder,
            "controlnets": list(self.controlnets),
        }
        atomic_write_bytes(out / PIPELINE_FILE, json.dumps(meta, indent=2).encode())
        return out

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> ImagePipeline:
        """Load a folder written by :meth:`save_pretrained`."""
        folder = Path(directory)
        meta = read_folder_meta(folder, PIPELINE_FILE, "a saved ImagePipeline")
        model = load_pretrained(folder / "model", device=device)
        autoencoder = (
            AutoencoderKL.from_pretrained(folder / "autoencoder", device=device)
            if meta["autoencoder"]
            else None
        )
        text_encoder = (
            TextEncoder.from_pretrained(folder / "text_encoder").to(device) if meta["text_encoder"] else None
        )
        controlnets = {
            k: load_pretrained(folder / f"controlnet_{k}", device=device) for k in meta.get("controlnets", [])
        }
        return cls(
            model,
            meta["schedule"],
            meta["prediction"],
            autoencoder=autoencoder,
            text_encoder=text_encoder,
            sample_shape=meta["sample_shape"],
            num_classes=meta["num_classes"],
            train_text_encoder=meta.get("train_text_encoder", True),
            controlnets=controlnets,
        )
