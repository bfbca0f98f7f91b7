"""Registration of ``diff-language`` with the ``diffuse`` command line (entry point ``diffcore.modalities``)."""

from diffcore.modality import Modality, not_implemented_bench

modality = Modality(
    name="language",
    description="Block diffusion language models (BD3-LM) on diffcore's masked discrete diffusion.",
    bench=not_implemented_bench("language", "BD3-LM block diffusion (the diff-language issue)"),
)
