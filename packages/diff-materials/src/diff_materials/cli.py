"""Registration of ``diff-materials`` with the ``diffuse`` command line (entry point ``diffcore.modalities``)."""

from diffcore.modality import Modality, not_implemented_bench

modality = Modality(
    name="materials",
    description="Crystal diffusion with property guidance, through pymatgen and torch-geometric.",
    bench=not_implemented_bench("materials", "crystal diffusion with property guidance"),
)
