"""Registration of ``diff-timeseries`` with the ``diffuse`` command line (entry point ``diffcore.modalities``)."""

from diffcore.modality import Modality, not_implemented_bench

modality = Modality(
    name="timeseries",
    description="Text-to-series diffusion for time series.",
    bench=not_implemented_bench("timeseries", "text-to-series diffusion"),
)
