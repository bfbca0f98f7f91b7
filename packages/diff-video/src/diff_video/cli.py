"""Registration of ``diff-video`` with the ``diffuse`` command line (entry point ``diffcore.modalities``)."""

from diffcore.modality import Modality, not_implemented_bench

modality = Modality(
    name="video",
    description="Video diffusion with spacetime patches; decord reader with an imageio/PyAV fallback.",
    bench=not_implemented_bench("video", "spacetime-patch DiT on generated clips"),
)
