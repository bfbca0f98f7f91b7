"""Registration of ``diff-image`` with the ``diffuse`` command line (entry point ``diffcore.modalities``)."""

from diffcore.modality import Modality, not_implemented_bench

modality = Modality(
    name="image",
    description="Image diffusion: pixel and latent, class / text / spatial conditioning, LoRA, editing, metrics.",
    bench=not_implemented_bench(
        "image", "class-conditional digits and text-to-image shapes (the diff-image issue)"
    ),
)
