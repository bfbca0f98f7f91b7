"""``SplatPipeline``: a trained splat generator with everything needed to sample from it.

On disk (a :class:`diffcore.pipeline.Pipeline` folder, written atomically)::

    pipeline.json    class, format, versions; "config": representation, budget, conditioning, classes, prompts,
                     the data it was trained on
    autoencoder/     DiffGSAutoencoder or VoxelVAE (config.json + model.safetensors, latent scale included)
    denoiser/        the LatentDiT

Generation: rectified flow (``x_t = (1 - t) x_0 + t eps``, ``t = 0`` data, ``t = 1`` noise) on the autoencoder's
scaled latents; the denoiser predicts the velocity ``eps - x_0``; any diffcore sampler integrates it from ``t = 1`` to
0, with classifier-free guidance (:class:`diffcore.guidance.wrappers.ClassifierFreeGuidance`) on a conditional
model. The latents are then decoded to splat sets (:meth:`SplatPipeline.generate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffcore.guidance.wrappers import ClassifierFreeGuidance
from diffcore.paths.denoiser import Denoiser, DenoiserBase
from diffcore.paths.schedules import Schedule
from diffcore.paths.schedules import get as get_schedule
from diffcore.pipeline import Pipeline
from diffcore.pretrained import load_pretrained
from diffcore.sampling import sample as diffcore_sample
from torch import Tensor, nn

from diff_3d.config import CONDITIONINGS, DEFAULT_GUIDANCE, REPRESENTATIONS
from diff_3d.gaussians import Gaussians
from diff_3d.models import LatentDiT
from diff_3d.pipeline.data import features_to_gaussians

__all__ = ["SplatPipeline"]


class SplatPipeline(Pipeline):
    """Sampling and saving for one trained splat generator.

    Args:
        autoencoder: a :class:`~diff_3d.models.DiffGSAutoencoder` or :class:`~diff_3d.models.VoxelVAE` (with its
            fitted ``latent_scale``).
        denoiser: the :class:`~diff_3d.models.LatentDiT` predicting the rectified-flow velocity of its latents.
        representation: ``diffgs`` or ``l3dg``.
        budget: Gaussians per object it was trained with (the default of :meth:`generate`).
        conditioning: ``none``, ``class`` or ``caption``.
        class_names: names of the classes (class pipelines; also kept for evaluation otherwise).
        prompts: example captions (the first training captions), the default prompts of caption pipelines.
        data: how its training set is drawn again (``dataset``, ``data_path``, ``num_objects``, ``data_seed``), which
            :func:`~diff_3d.pipeline.evaluate` draws reference objects from.
    """

    def __init__(
        self,
        autoencoder: nn.Module,
        denoiser: LatentDiT,
        representation: str = "diffgs",
        budget: int = 1024,
        conditioning: str = "none",
        class_names: Sequence[str] = (),
        prompts: Sequence[str] = (),
        data: dict[str, Any] | None = None,
    ) -> None:
        if representation not in REPRESENTATIONS:
            raise ValueError(
                f"representation: expected one of {', '.join(REPRESENTATIONS)}, got {representation!r}"
            )
        if conditioning not in CONDITIONINGS:
            raise ValueError(
                f"conditioning: expected one of {', '.join(CONDITIONINGS)}, got {conditioning!r}"
            )
        if budget < 1:
            raise ValueError(f"budget: expected >= 1 Gaussians, got {budget}")
        self.autoencoder, self.denoiser = autoencoder, denoiser
        self.representation, self.budget, self.conditioning = representation, int(budget), conditioning
        self.class_names, self.prompts = list(class_names), list(prompts)
        self.data = dict(data or {})

    # ------------------------------------------------------------------ the network as diffcore sees it

    @property
    def schedule(self) -> Schedule:
        """The rectified-flow path."""
        return get_schedule("rectified-flow")

    def diffcore_denoiser(self) -> Denoiser:
        """A :class:`diffcore.Denoiser` of the latent model (velocity prediction on :attr:`schedule`)."""
        return Denoiser(self.denoiser.eval(), self.schedule, "velocity")

    @property
    def conditional(self) -> bool:
        """Whether the model takes classes or captions (so classifier-free guidance applies)."""
        return self.conditioning != "none"

    def resolve_guidance(self, guidance: float | None) -> float:
        """``guidance``, or (None / 0) :data:`~diff_3d.config.DEFAULT_GUIDANCE` on a conditional model and 1 on an
        unconditional one; a scale other than 1 on an unconditional model is an error."""
        if guidance is None or guidance == 0:
            return DEFAULT_GUIDANCE if self.conditional else 1.0
        if guidance != 1.0 and not self.conditional:
            raise ValueError(
                f"guidance: this pipeline is unconditional; got {guidance:g}, expected 1 or 0 (unset)"
            )
        return float(guidance)

    def class_index(self, value: str | int) -> int:
        """A class given by name or index -> its index (an error naming the known classes otherwise)."""
        text = str(value)
        if text.lstrip("-").isdigit():
            i = int(text)
            if not 0 <= i < len(self.class_names):
                raise ValueError(f"classes: expected an index in [0, {len(self.class_names) - 1}], got {i}")
            return i
        if text not in self.class_names:
            raise ValueError(f"classes: {text!r} is not one of {', '.join(self.class_names)}")
        return self.class_names.index(text)

    def condition(
        self, n: int, classes: Sequence[str | int] | None = None, prompts: Sequence[str] | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], list[int]]:
        """``(cond, uncond, labels)`` for ``n`` objects: the network's keyword arguments of both branches, and the
        class index of each object (``-1`` where none was asked for). Classes / prompts are cycled to ``n``."""
        dev = self.device
        if self.conditioning == "class":
            if prompts:
                raise ValueError("prompts: this pipeline is class-conditional; pass classes")
            chosen = [self.class_index(c) for c in classes] if classes else list(range(len(self.class_names)))
            y = torch.tensor((chosen * -(-n // len(chosen)))[:n], device=dev)
            return {"y": y}, {"y": torch.full_like(y, self.denoiser.null_class)}, y.tolist()
        if self.conditioning == "caption":
            if classes:
                raise ValueError("classes: this pipeline is caption-conditional; pass prompts")
            chosen = list(prompts or self.prompts or [""])
            chosen = (chosen * -(-n // len(chosen)))[:n]
            ids = self.denoiser.tokenize(chosen, device=dev)
            return {"caption_ids": ids}, {"caption_ids": torch.zeros_like(ids)}, [-1] * n
        if classes or prompts:
            raise ValueError("classes, prompts: this pipeline is unconditional; pass neither")
        return {}, {}, [-1] * n

    # ------------------------------------------------------------------ sampling

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """One object's latent shape."""
        return tuple(self.autoencoder.latent_shape)  # type: ignore[arg-type]

    @torch.no_grad()
    def sample_latents(
        self,
        n: int,
        classes: Sequence[str | int] | None = None,
        prompts: Sequence[str] | None = None,
        guidance: float | None = None,
        sampler: str = "euler",
        steps: int = 30,
        generator: torch.Generator | None = None,
        batch_size: int = 16,
    ) -> Tensor:
        """Draw ``n`` scaled latents ``(n, *latent_shape)`` (see :meth:`generate` for the arguments)."""
        if n < 1:
            raise ValueError(f"n: expected >= 1 objects, got {n}")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        cond, uncond, _ = self.condition(n, classes, prompts)
        den: DenoiserBase = self.diffcore_denoiser()
        scale = self.resolve_guidance(guidance)
        out = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            part = {k: v[start : start + b] for k, v in cond.items()}
            guided = den
            if scale != 1.0:
                guided = ClassifierFreeGuidance(
                    den, scale, {k: v[start : start + b] for k, v in uncond.items()}
                )
            noise = torch.randn((b, *self.latent_shape), generator=generator, device=self.device)
            out.append(
                diffcore_sample(guided, noise, sampler=sampler, steps=steps, cond=part, generator=generator)
            )
        return torch.cat(out)

    @torch.no_grad()
    def decode(
        self, latents: Tensor, budget: int = 0, generator: torch.Generator | None = None
    ) -> list[Tensor]:
        """Scaled latents -> one feature tensor ``(n_i, 14)`` per object (``budget`` 0: the training budget; diffgs
        gives exactly ``budget`` Gaussians, l3dg at most that many)."""
        return self.autoencoder.decode_latents(latents, budget or self.budget, generator=generator)  # type: ignore[operator]

    @torch.no_grad()
    def generate(
        self,
        n: int,
        classes: Sequence[str | int] | None = None,
        prompts: Sequence[str] | None = None,
        guidance: float | None = None,
        sampler: str = "euler",
        steps: int = 30,
        budget: int = 0,
        generator: torch.Generator | None = None,
        batch_size: int = 16,
    ) -> list[Gaussians]:
        """Draw ``n`` objects as :class:`~diff_3d.gaussians.Gaussians` (SH degree 0, on the CPU).

        Args:
            classes / prompts: the condition, cycled to ``n`` (default: every class in turn / the example prompts).
            guidance: classifier-free guidance scale (Ho & Salimans 2022, Eq. 6); None / 0: :meth:`resolve_guidance`.
            sampler, steps: a ``diffcore.sampling.available()`` name and its steps.
            budget: Gaussians per object (0: the training budget).
            generator: seeds the noise and the extraction (on the pipeline's device).
        """
        z = self.sample_latents(n, classes, prompts, guidance, sampler, steps, generator, batch_size)
        feats = []
        for start in range(0, n, batch_size):
            feats += self.decode(z[start : start + batch_size], budget, generator)
        return [features_to_gaussians(f.cpu()) for f in feats]

    # ------------------------------------------------------------------ disk (diffcore.pipeline.Pipeline)

    def components(self) -> dict[str, Any]:
        """``autoencoder`` and ``denoiser``."""
        return {"autoencoder": self.autoencoder, "denoiser": self.denoiser}

    def pipeline_config(self) -> dict[str, Any]:
        """Representation, budget, conditioning, classes, prompts and the training data's description."""
        return {
            "representation": self.representation,
            "budget": self.budget,
            "conditioning": self.conditioning,
            "class_names": self.class_names,
            "prompts": self.prompts,
            "data": self.data,
            "prediction": "velocity",
            "schedule": "rectified-flow",
        }

    @classmethod
    def from_parts(cls, config: dict[str, Any], components: dict[str, Any]) -> SplatPipeline:
        """The pipeline of :meth:`pipeline_config`'s ``config`` and the loaded components."""
        missing = {"autoencoder", "denoiser"} - set(components)
        if missing:
            raise ValueError(f"components: expected autoencoder and denoiser, missing {sorted(missing)}")
        return cls(
            components["autoencoder"],
            components["denoiser"],
            representation=config["representation"],
            budget=config["budget"],
            conditioning=config.get("conditioning", "none"),
            class_names=config.get("class_names", []),
            prompts=config.get("prompts", []),
            data=config.get("data"),
        )

    @classmethod
    def load_component(cls, name: str, folder: Path, device: torch.device) -> Any:
        """Every part is a :class:`~diffcore.pretrained.PretrainedModel`; loaded in eval mode."""
        return load_pretrained(folder, device=device).eval()
