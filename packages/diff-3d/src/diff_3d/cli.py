"""Registration of ``diff-3d`` with the ``diffuse`` command line (entry point ``diffcore.modalities``)."""

from diffcore.modality import Modality, not_implemented_bench

modality = Modality(
    name="3d",
    description="3D diffusion: Gaussian-splat latents and score distillation, rendered through gsplat.",
    bench=not_implemented_bench("3d", "Gaussian-splat latents and SDS through gsplat"),
)
