"""``diffuse bench timeseries``: reports honestly that the benchmark is not written yet (issue #29)."""

from diffcore.modality import not_implemented_bench

bench = not_implemented_bench("timeseries", "series diffusion on generated seasonal data")
