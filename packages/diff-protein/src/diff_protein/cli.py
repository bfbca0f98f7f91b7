"""Registration of ``diff-protein`` with the ``diffuse`` command line (entry point ``diffcore.modalities``)."""

from diffcore.modality import Modality, not_implemented_bench

modality = Modality(
    name="protein",
    description="Protein diffusion: SE(3) frame diffusion for backbones and taxonomy-conditioned sequences.",
    bench=not_implemented_bench(
        "protein", "FrameDiff backbones and TaxDiff sequences (the diff-protein issue)"
    ),
)
